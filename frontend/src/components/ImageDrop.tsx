import { useId, useState, type ChangeEvent, type DragEvent, type Ref } from 'react'
import { formatBytes } from '../format.ts'
import type { Preview } from '../upload.ts'
import { IconCamera, IconUpload } from './Icons.tsx'

const ACCEPT = 'image/*,.dcm,.dicom,.tif,.tiff,application/dicom'

interface Props {
  file: File | null
  preview: Preview
  onFile: (f: File | null | undefined) => void
  inputRef?: Ref<HTMLInputElement>
}

/** Drop zone + "Choose image" + "Take photo" for one lesion image (Assess page and clinic visits). */
export function ImageDrop({ file, preview, onFile, inputRef }: Props) {
  const [dragOver, setDragOver] = useState(false)
  // several files dropped at once: only the first is used, and the page says so
  const [dropped, setDropped] = useState<{ count: number; first: string } | null>(null)
  const formatsId = useId()

  const onInput = (e: ChangeEvent<HTMLInputElement>) => {
    setDropped(null)
    onFile(e.target.files?.[0])
    e.target.value = '' // allow choosing the same file again
  }

  const onDrop = (e: DragEvent) => {
    e.preventDefault()
    setDragOver(false)
    const files = e.dataTransfer.files
    setDropped(files && files.length > 1 ? { count: files.length, first: files[0].name } : null)
    onFile(files?.[0])
  }

  return (
    <div
      className={`dropzone${dragOver ? ' is-over' : ''}${file ? ' has-file' : ''}`}
      data-testid="dropzone"
      onDragEnter={(e) => {
        e.preventDefault()
        setDragOver(true)
      }}
      onDragOver={(e) => {
        e.preventDefault()
        e.dataTransfer.dropEffect = 'copy'
      }}
      onDragLeave={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDragOver(false)
      }}
      onDrop={onDrop}
    >
      {file ? (
        <Thumb key={preview.url ?? ''} preview={preview} file={file} />
      ) : (
        <div className="drop-empty">
          <IconUpload size={36} />
          <p>
            <strong>Drag and drop</strong> an image here, paste it, or
          </p>
        </div>
      )}
      <div className="drop-actions">
        <label className="btn btn-primary file-btn">
          <input
            type="file"
            className="visually-hidden"
            accept={ACCEPT}
            onChange={onInput}
            ref={inputRef}
            data-testid="file-input"
            aria-describedby={formatsId}
          />
          {file ? 'Choose another image' : 'Choose image'}
        </label>
        <label className="btn btn-secondary file-btn camera-btn">
          <input
            type="file"
            className="visually-hidden"
            accept="image/*"
            capture="environment"
            onChange={onInput}
            data-testid="camera-input"
          />
          <IconCamera /> Take photo
        </label>
      </div>
      <p className="hint" id={formatsId}>
        JPEG, PNG, WebP, BMP, TIFF or DICOM.
      </p>
      {dropped && file && file.name === dropped.first && (
        <p className="hint" role="status" data-testid="dropped-several">
          {dropped.count} files were dropped: only the first, “{dropped.first}”, is used. One image of one lesion at a
          time.
        </p>
      )}
    </div>
  )
}

function Thumb({ preview, file }: { preview: Preview; file: File }) {
  const [failed, setFailed] = useState(false)
  return (
    <div className="thumb">
      {preview.refused ? (
        <div className="thumb-none thumb-refused" data-testid="file-refused">
          Not an image that can be assessed. Choose another file.
        </div>
      ) : preview.dicom ? (
        <div className="thumb-none" data-testid="dicom-placeholder">
          DICOM file: preview not available in the browser. The server can still read it.
        </div>
      ) : preview.url && !failed ? (
        <img src={preview.url} alt={`Preview of the chosen image, ${file.name || 'no file name'}`} onError={() => setFailed(true)} />
      ) : preview.url ? (
        <div className="thumb-none">No preview for this format; the server can still read it.</div>
      ) : (
        <div className="thumb-none" aria-hidden="true" />
      )}
      <p className="thumb-name">
        <span className="filename">{file.name || 'image'}</span> · {formatBytes(file.size)}
      </p>
    </div>
  )
}
