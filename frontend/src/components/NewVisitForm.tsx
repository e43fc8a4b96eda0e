import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { createVisit } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { requestFocus } from '../clinic/focus.ts'
import { ApiError } from '../api.ts'
import { checkImageForm, describeTooLarge, oversizeUpload, uploadLimitBytes } from '../format.ts'
import { useHealth } from '../health.ts'
import { useFormAction } from '../hooks.ts'
import { ImageDrop, NO_PREVIEW, guessPreview, settlePreview, type Preview } from './ImageDrop.tsx'
import { PatientFields } from './PatientFields.tsx'
import { Spinner } from './Spinner.tsx'

interface Props {
  lesionId: number
  /** the lesion's body site, the default for the visit's site */
  site: string | null
  /** age and sex of the latest visit, as defaults */
  age: number | null
  sex: string | null
  onSaved: () => void
}

/** A new visit of a lesion: image + age/sex/site + note; the server assesses and stores it. */
export function NewVisitForm({ lesionId, site: lesionSite, age: lastAge, sex: lastSex, onSaved }: Props) {
  const ids = useId()
  const [file, setFile] = useState<File | null>(null)
  const [preview, setPreview] = useState<Preview>(NO_PREVIEW)
  const [age, setAge] = useState(lastAge === null ? '' : String(lastAge))
  const [sex, setSex] = useState(lastSex ?? '')
  const [site, setSite] = useState(lesionSite ?? '')
  const [note, setNote] = useState('')
  const [takenAt, setTakenAt] = useState('')
  const { busy, error, setError, submit } = useFormAction()
  const pickRef = useRef(0)
  const ageRef = useRef<HTMLInputElement | null>(null)
  // why the chosen file cannot be sent: not an accepted format, or over the server's size limit
  // (GET /health), said before the upload as the Assess page does
  const maxUploadBytes = uploadLimitBytes(useHealth().data?.max_upload_mb)
  const refused = file ? (preview.refused ?? oversizeUpload(file.size, maxUploadBytes)) : null

  useEffect(() => {
    return () => {
      if (preview.url) URL.revokeObjectURL(preview.url)
    }
  }, [preview.url])

  const chooseFile = (f: File | null | undefined) => {
    if (!f) return
    const pick = ++pickRef.current
    setFile(f)
    setError(null)
    setPreview(guessPreview(f))
    void settlePreview(f).then((p) => {
      if (pickRef.current === pick) setPreview(p)
      else if (p.url) URL.revokeObjectURL(p.url)
    })
  }

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    const checked = checkImageForm(file, age, ageRef.current?.validity.badInput,
      'Choose the image of this visit first.')
    if ('error' in checked) {
      setError(checked.error)
      return
    }
    if (refused) return // the button is disabled
    const image = checked.file
    await submit(async () => {
      const saved = await createVisit(lesionId, { image, age: checked.age, sex: sex || null, site: site || null, note, taken_at: takenAt || null }).catch(
        (err: unknown) => {
          // the limit was not known before sending (health not read): the same words as above
          throw err instanceof ApiError && err.status === 413 ? new Error(describeTooLarge(err.message, image.size)) : err
        },
      )
      pickRef.current++
      setFile(null)
      setPreview(NO_PREVIEW)
      setNote('')
      setTakenAt('')
      requestFocus('visit', String(saved.id))
      onSaved()
    })
  }

  return (
    <form className="new-visit" onSubmit={onSubmit} noValidate data-testid="new-visit-form">
      <div className="two-col">
        <ImageDrop file={file} preview={preview} onFile={chooseFile} />
        <div>
          <PatientFields legend="About the patient at this visit (optional)" age={age} sex={sex} site={site} onAge={setAge} onSex={setSex} onSite={setSite} ageRef={ageRef} bodyMap={false} />
          <div className="field">
            <label htmlFor={`${ids}-date`}>Date the image was taken (optional, default today)</label>
            <input id={`${ids}-date`} type="date" value={takenAt} onChange={(e) => setTakenAt(e.target.value)} data-testid="visit-date" />
          </div>
          <div className="field">
            <label htmlFor={`${ids}-note`}>Clinician note (optional)</label>
            <textarea id={`${ids}-note`} rows={3} maxLength={4000} value={note} onChange={(e) => setNote(e.target.value)} data-testid="visit-note-input" />
          </div>
        </div>
      </div>
      <ErrorBox error={refused} what="This file cannot be assessed." testId="visit-file-refused" />
      <ErrorBox error={error} what="Could not save the visit." />
      {busy && <Spinner label="Assessing and saving the visit…" />}
      <button type="submit" className="btn btn-primary" disabled={!file || busy || refused !== null || preview.pending} data-testid="visit-submit">
        {busy ? 'Saving…' : 'Assess and save visit'}
      </button>
    </form>
  )
}
