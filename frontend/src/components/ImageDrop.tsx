import { useId, useState, type ChangeEvent, type DragEvent, type Ref } from 'react'
import { DICOM_HEAD_BYTES, isDicom } from '../format.ts'
import { IconCamera, IconUpload } from './Icons.tsx'

const ACCEPT = 'image/*,.dcm,.dicom,.tif,.tiff,application/dicom'

/** How the chosen file can be shown: a blob: URL, or none (DICOM, which no browser displays). */
export interface Preview {
  url: string | null
  dicom: boolean
}

export const NO_PREVIEW: Preview = { url: null, dicom: false }

/** A first guess from the file's name and type, before its bytes are read. */
export function guessPreview(f: File): Preview {
  return { url: null, dicom: isDicom(f.name, f.type) }
}

/** The file's first bytes decide (DICOM: "DICM" at byte 128); a blob: URL for anything else. */
export async function settlePreview(f: File): Promise<Preview> {
  let dicom: boolean
  try {
    dicom = isDicom(f.name, f.type, new Uint8Array(await f.slice(0, DICOM_HEAD_BYTES).arrayBuffer()))
  } catch {
    dicom = isDicom(f.name, f.type)
  }
  return { url: dicom ? null : URL.createObjectURL(f), dicom }
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

interface Props {
  file: File | null
  preview: Preview
  onFile: (f: File | null | undefined) => void
  inputRef?: Ref<HTMLInputElement>
}

/** Drop zone + "Choose image" + "Take photo" for one lesion image (Assess page and clinic visits). */
export function ImageDrop({ file, preview, onFile, inputRef }: Props) {
  const [dragOver, setDragOver] = useState(false)
  const formatsId = useId()

  const onInput = (e: ChangeEvent<HTMLInputElement>) => {
    onFile(e.target.files?.[0])
    e.target.value = '' // allow choosing the same file again
  }

  const onDrop = (e: DragEvent) => {
    e.preventDefault()
    setDragOver(false)
    onFile(e.dataTransfer.files?.[0])
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
    </div>
  )
}

function Thumb({ preview, file }: { preview: Preview; file: File }) {
  const [failed, setFailed] = useState(false)
  return (
    <div className="thumb">
      {preview.dicom ? (
        <div className="thumb-none" data-testid="dicom-placeholder">
          DICOM file: preview not available in the browser. The server can still read it.
        </div>
      ) : preview.url && !failed ? (
        <img src={preview.url} alt="Preview of the chosen image" onError={() => setFailed(true)} />
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
