import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { API, type LesionClassInfo } from '../api.ts'
import { recordDiagnosis } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { focusRequested, requestFocus } from '../clinic/focus.ts'
import type { Diagnosis } from '../clinic/types.ts'
import { FALLBACK_CLASSES } from '../content.ts'
import { formatTimestamp } from '../format.ts'
import { useApiData, useFormAction } from '../hooks.ts'

/** The nine ISIC codes a confirmed diagnosis may take: the model's classes plus UNK. */
function diagnosisCodes(classes: LesionClassInfo[]): { code: string; name: string }[] {
  const codes = classes.map((c) => ({ code: c.code, name: c.name }))
  if (!codes.some((c) => c.code === 'UNK')) codes.push({ code: 'UNK', name: 'Other / unknown' })
  return codes
}

/** The lesion's confirmed diagnosis, and the form that records (or corrects) it. */
export function DiagnosisForm({ lesionId, diagnosis, onSaved }: { lesionId: number; diagnosis: Diagnosis | null; onSaved: () => void }) {
  const ids = useId()
  const classesQ = useApiData<LesionClassInfo[]>(`${API}/classes`)
  const classes = Array.isArray(classesQ.data) && classesQ.data.length ? classesQ.data : FALLBACK_CLASSES
  const codes = diagnosisCodes(classes)
  const [editing, setEditing] = useState(diagnosis === null)
  const [code, setCode] = useState(diagnosis?.code ?? '')
  const [method, setMethod] = useState<string>(diagnosis?.method ?? 'histopathology')
  const [note, setNote] = useState(diagnosis?.note ?? '')
  const { busy, error, setError, submit } = useFormAction()
  const nameOf = (c: string) => codes.find((x) => x.code === c)?.name ?? c
  const shownRef = useRef<HTMLParagraphElement | null>(null)
  const codeRef = useRef<HTMLSelectElement | null>(null)
  const editRef = useRef<HTMLButtonElement | null>(null)
  // Just recorded (the form asked before the lesion reloaded): say so and move focus onto it.
  const [justSaved] = useState(() => diagnosis !== null && focusRequested('diagnosis', String(lesionId), false))
  useEffect(() => {
    if (justSaved && focusRequested('diagnosis', String(lesionId))) shownRef.current?.focus()
  }, [justSaved, lesionId])

  const startEditing = () => {
    setEditing(true)
    setError(null)
    window.setTimeout(() => codeRef.current?.focus(), 0)
  }
  const cancelEditing = () => {
    setEditing(false)
    setError(null)
    setCode(diagnosis?.code ?? '')
    setMethod(diagnosis?.method ?? 'histopathology')
    setNote(diagnosis?.note ?? '')
    window.setTimeout(() => editRef.current?.focus(), 0)
  }

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    if (!code) {
      setError('Choose the confirmed diagnosis.')
      return
    }
    await submit(async () => {
      await recordDiagnosis(lesionId, { code, method, note: note.trim() })
      requestFocus('diagnosis', String(lesionId))
      setEditing(false)
      onSaved()
    })
  }

  return (
    <div data-testid="diagnosis-section">
      {diagnosis && (
        <p data-testid="diagnosis" data-code={diagnosis.code} ref={shownRef} tabIndex={-1}>
          {justSaved && (
            <span className="visually-hidden" data-testid="diagnosis-saved">
              Diagnosis recorded:{' '}
            </span>
          )}
          <strong>
            {nameOf(diagnosis.code)} ({diagnosis.code})
          </strong>
          , confirmed by {diagnosis.method === 'histopathology' ? 'histopathology' : 'clinical assessment'}
          {diagnosis.recorded_by ? ` · recorded by ${diagnosis.recorded_by}` : ''} · {formatTimestamp(diagnosis.recorded_at)}
          {diagnosis.note ? <> · {diagnosis.note}</> : null}{' '}
          {!editing && (
            <button type="button" className="btn-link" onClick={startEditing} ref={editRef} data-testid="diagnosis-edit">
              Correct
            </button>
          )}
        </p>
      )}
      {editing && (
        <form onSubmit={onSubmit} noValidate className="diagnosis-form">
          <p className="hint">
            Record the final diagnosis once it is known. Confirmed lesions feed this clinic’s own figures on the
            dashboard; histopathology is the stronger confirmation.
          </p>
          <div className="field-row">
            <div className="field">
              <label htmlFor={`${ids}-code`}>Diagnosis</label>
              <select id={`${ids}-code`} ref={codeRef} value={code} onChange={(e) => setCode(e.target.value)} data-testid="diagnosis-code">
                <option value="">Choose…</option>
                {codes.map((c) => (
                  <option key={c.code} value={c.code}>
                    {c.name} ({c.code})
                  </option>
                ))}
              </select>
            </div>
            <div className="field">
              <label htmlFor={`${ids}-method`}>Confirmed by</label>
              <select id={`${ids}-method`} value={method} onChange={(e) => setMethod(e.target.value)} data-testid="diagnosis-method">
                <option value="histopathology">Histopathology</option>
                <option value="clinical">Clinical assessment</option>
              </select>
            </div>
          </div>
          <div className="field">
            <label htmlFor={`${ids}-note`}>Note (optional)</label>
            <input id={`${ids}-note`} value={note} maxLength={2000} onChange={(e) => setNote(e.target.value)} data-testid="diagnosis-note" />
          </div>
          <ErrorBox error={error} what="Could not record the diagnosis." />
          {diagnosis && <p className="hint">Saving a correction replaces the diagnosis above (the change is written to the audit log).</p>}
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy} data-testid="diagnosis-submit">
              {busy ? 'Saving…' : diagnosis ? 'Save correction' : 'Record diagnosis'}
            </button>
            {diagnosis && (
              <button type="button" className="btn btn-ghost" onClick={cancelEditing} disabled={busy} data-testid="diagnosis-cancel">
                Cancel
              </button>
            )}
          </div>
        </form>
      )}
    </div>
  )
}
