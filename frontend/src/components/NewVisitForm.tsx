import { useId, useRef, useState, type FormEvent } from 'react'
import { createVisit } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { requestFocus } from '../clinic/focus.ts'
import { ageFieldText, checkImageForm } from '../format.ts'
import { useFormAction } from '../hooks.ts'
import { REFUSED_TITLE, tooLargeAnswer, useImageUpload } from '../upload.ts'
import { ImageDrop } from './ImageDrop.tsx'
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
  // the image, and why it cannot be sent (format, size against GET /health's limit): checked
  // before the upload as the Assess page does
  const upload = useImageUpload()
  const { file, preview, refused } = upload
  const [age, setAge] = useState(ageFieldText(lastAge))
  const [sex, setSex] = useState(lastSex ?? '')
  const [site, setSite] = useState(lesionSite ?? '')
  const [note, setNote] = useState('')
  const [takenAt, setTakenAt] = useState('')
  const { busy, error, setError, submit } = useFormAction()
  const ageRef = useRef<HTMLInputElement | null>(null)

  const chooseFile = (f: File | null | undefined) => {
    if (!f) return
    setError(null)
    upload.choose(f)
  }

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    const checked = checkImageForm(file, age, ageRef.current?.validity.badInput,
      'Choose the image of this visit first.')
    if ('error' in checked) {
      setError(checked.error)
      return
    }
    if (!upload.ready) return // the button is disabled: refused, or not read yet
    const image = checked.file
    await submit(async () => {
      const saved = await createVisit(lesionId, { image, age: checked.age, sex: sex || null, site: site || null, note, taken_at: takenAt || null }).catch(
        (err: unknown) => {
          // the limit was not known before sending (health not read): the same words as above
          const tooLarge = tooLargeAnswer(err, image)
          throw tooLarge ? new Error(tooLarge) : err
        },
      )
      upload.clear()
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
      <ErrorBox error={refused} what={REFUSED_TITLE} testId="visit-file-refused" />
      <ErrorBox error={error} what="Could not save the visit." />
      {busy && <Spinner label="Assessing and saving the visit…" />}
      <button type="submit" className="btn btn-primary" disabled={busy || !upload.ready} data-testid="visit-submit">
        {busy ? 'Saving…' : 'Assess and save visit'}
      </button>
    </form>
  )
}
