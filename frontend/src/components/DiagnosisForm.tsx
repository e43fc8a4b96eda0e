import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { API, ApiError, type LesionClassInfo } from '../api.ts'
import { getLesion, NOTE_MAX, recordDiagnosis, removeDiagnosis, type DiagnosisEntry, type DiagnosisRef } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { fieldErrorProps } from '../clinic/fieldErrors.ts'
import { announce, focusLost, focusRequested, requestFocus } from '../clinic/focus.ts'
import type { Diagnosis } from '../clinic/types.ts'
import { FALLBACK_CLASSES } from '../content.ts'
import { asSentence, formatTimestamp } from '../format.ts'
import { useApiData, useFormAction } from '../hooks.ts'
import { useUnsavedGuard } from './NewVisitForm.tsx'
import { ConfirmBox } from './VisitTimeline.tsx'

/** The nine ISIC codes a confirmed diagnosis may take: the model's classes plus UNK. */
function diagnosisCodes(classes: LesionClassInfo[]): { code: string; name: string }[] {
  const codes = classes.map((c) => ({ code: c.code, name: c.name }))
  if (!codes.some((c) => c.code === 'UNK')) codes.push({ code: 'UNK', name: 'Other / unknown' })
  return codes
}

/** What a correction replaces: the diagnosis the page showed (null: none). */
export function replacesOf(shown: DiagnosisRef | null | undefined): DiagnosisRef | null {
  if (!shown) return null
  return shown.note !== undefined
    ? { code: shown.code, method: shown.method, note: shown.note }
    : { code: shown.code, method: shown.method }
}

/** Whether saving `method` would replace a histopathology diagnosis with a clinical one: the
 * weaker confirmation over the stronger, which the form asks about first. */
export function downgradesHistology(shown: DiagnosisRef | null | undefined, method: string): boolean {
  return shown?.method === 'histopathology' && method === 'clinical'
}

function methodWords(method: string): string {
  return method === 'histopathology' ? 'histopathology' : 'clinical assessment'
}

function diagnosisName(code: string, nameOf: (code: string) => string): string {
  const name = nameOf(code)
  return name === code ? code : `${name} (${code})`
}

/** A diagnosis in one line: "Melanoma (MEL), confirmed by histopathology". */
export function diagnosisLine(d: DiagnosisRef, nameOf: (code: string) => string = (c) => c): string {
  return `${diagnosisName(d.code, nameOf)}, confirmed by ${methodWords(d.method)}`
}

/** The outcome of a save: the recorded diagnosis, or the server's 409 (someone changed the
 * diagnosis since the page showed it): its detail and the diagnosis recorded now (null: none;
 * undefined: it could not be read). */
export type SaveOutcome = { saved: Diagnosis } | { conflict: Conflict }

/** The server's 409: its detail (with what to do next) and the diagnosis recorded now (null:
 * none; undefined: it could not be read). */
export interface Conflict {
  message: string
  current: Diagnosis | null | undefined
}

/** A 409 (`err`) in the form's words: the server's detail, then `next` (what the user may do);
 * the diagnosis recorded now is read so the form can show it. */
async function conflictOf(lesionId: number, err: ApiError, next: string): Promise<Conflict> {
  const current = await getLesion(lesionId).then(
    (d) => d.diagnosis,
    () => undefined,
  )
  // the server's detail names what is recorded now (the form shows it too, once read)
  const reload = current === undefined ? ' Reload the page to see the diagnosis recorded now.' : ''
  return { message: `${asSentence(err.message) || 'The diagnosis was changed meanwhile.'}${reload} ${next}`, current }
}

const is409 = (err: unknown): err is ApiError => err instanceof ApiError && err.status === 409

/** Saves `entry` as a correction of `shown` (what the page showed, sent as `replaces`). A 409
 * is not thrown: it comes back with the diagnosis the lesion has now, so the form can keep what
 * the user typed, show what changed, and replace that one if the user saves again. */
export async function saveDiagnosis(
  lesionId: number,
  entry: Omit<DiagnosisEntry, 'replaces'>,
  shown: DiagnosisRef | null,
): Promise<SaveOutcome> {
  try {
    return { saved: await recordDiagnosis(lesionId, { ...entry, replaces: replacesOf(shown) }) }
  } catch (err) {
    if (!is409(err)) throw err
    return { conflict: await conflictOf(lesionId, err, 'Your entry is kept: check it and save again to replace the diagnosis recorded now, or cancel.') }
  }
}

/** Removes the diagnosis `shown` (what the page showed, sent with the DELETE). A 409 (another
 * diagnosis is recorded by now) removes nothing and comes back with the diagnosis recorded now. */
export async function removeShownDiagnosis(lesionId: number, shown: DiagnosisRef): Promise<{ removed: true } | { conflict: Conflict }> {
  try {
    await removeDiagnosis(lesionId, { code: shown.code, method: shown.method })
    return { removed: true }
  } catch (err) {
    if (!is409(err)) throw err
    return { conflict: await conflictOf(lesionId, err, 'Nothing was removed: check the diagnosis recorded now, and confirm again only to remove that one, or cancel.') }
  }
}

/** The hint under the correction form: what saving replaces (the diagnosis above, or after a
 * 409 the one recorded now). */
export function replacesHint(afterConflict: boolean): string {
  return `Saving a correction replaces the diagnosis ${afterConflict ? 'recorded now (not the one above)' : 'above'} (the change is written to the audit log).`
}

/** The line saying what was recorded meanwhile (after a 409), and what the next action does. */
export function recordedMeanwhile(current: Diagnosis | null, nameOf: (code: string) => string, then: string): string {
  return current
    ? `Recorded meanwhile: ${diagnosisLine(current, nameOf)}${current.recorded_by ? `, by ${current.recorded_by}` : ''} · ${formatTimestamp(current.recorded_at)}. ${then}`
    : 'The diagnosis was removed meanwhile.'
}

/** The question before a typed, unsaved diagnosis is lost (Back, a link, reload, signing out). */
export const DIAGNOSIS_LEAVE_MESSAGE =
  'The confirmed diagnosis is not saved: the diagnosis, method and note you entered will be lost. Leave this page?'

/** Whether the diagnosis form holds unsaved work: open (`editing`) with a diagnosis, method or
 * note other than the one shown (`shown`: the recorded diagnosis, null when there is none). */
export function diagnosisUnsaved(
  editing: boolean,
  form: { code: string; method: string; note: string },
  shown: Pick<Diagnosis, 'code' | 'method' | 'note'> | null,
): boolean {
  if (!editing) return false
  return (
    form.code !== (shown?.code ?? '') ||
    form.method !== (shown?.method ?? 'histopathology') ||
    form.note.trim() !== (shown?.note ?? '').trim()
  )
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
  // Back, a link, reload, signing out: asked about first while a typed diagnosis is unsaved
  useUnsavedGuard(diagnosisUnsaved(editing, { code, method, note }, diagnosis), DIAGNOSIS_LEAVE_MESSAGE)
  const nameOf = (c: string) => codes.find((x) => x.code === c)?.name ?? c
  // The diagnosis a save replaces: the one the page showed, or after a 409 the one recorded now
  // (shown in the form), so that saving again is a deliberate replacement of what the user saw.
  const [current, setCurrent] = useState<Diagnosis | null | undefined>(undefined)
  const base = current === undefined ? diagnosis : current
  const [askDowngrade, setAskDowngrade] = useState(false)
  const [removing, setRemoving] = useState(false)
  const [removeBusy, setRemoveBusy] = useState(false)
  const [removeError, setRemoveError] = useState<string | null>(null)
  const shownRef = useRef<HTMLParagraphElement | null>(null)
  const noneRef = useRef<HTMLParagraphElement | null>(null)
  const codeRef = useRef<HTMLSelectElement | null>(null)
  const methodRef = useRef<HTMLSelectElement | null>(null)
  const editRef = useRef<HTMLButtonElement | null>(null)
  const removeRef = useRef<HTMLButtonElement | null>(null)
  const currentRef = useRef<HTMLParagraphElement | null>(null)
  const errorRef = useRef<HTMLDivElement | null>(null)
  const errorId = `${ids}-error`
  // the error is about the diagnosis field (none chosen): tied to it, which takes focus
  const [codeMissing, setCodeMissing] = useState(false)
  // a save from the confirm box failed: the box is gone (focus would fall to the page's body), so
  // focus goes to what the user must read: the diagnosis recorded meanwhile, else the error
  // (after the render that shows them)
  const [focusProblem, setFocusProblem] = useState(false)
  useEffect(() => {
    if (!focusProblem) return
    setFocusProblem(false)
    ;(currentRef.current ?? errorRef.current)?.focus()
  }, [focusProblem])
  // Just recorded (the form asked before the lesion reloaded): say so and move focus onto it.
  const [justSaved] = useState(() => diagnosis !== null && focusRequested('diagnosis', String(lesionId), false))
  useEffect(() => {
    if (justSaved && focusRequested('diagnosis', String(lesionId))) shownRef.current?.focus()
  }, [justSaved, lesionId])
  // Just removed: focus the line that says there is none now.
  useEffect(() => {
    if (diagnosis === null && focusRequested('diagnosis', `removed:${lesionId}`)) noneRef.current?.focus()
  }, [diagnosis, lesionId])

  const startEditing = () => {
    setEditing(true)
    setError(null)
    setCodeMissing(false)
    window.setTimeout(() => codeRef.current?.focus(), 0)
  }
  const cancelEditing = () => {
    setEditing(false)
    setError(null)
    setCodeMissing(false)
    setAskDowngrade(false)
    setCode(diagnosis?.code ?? '')
    setMethod(diagnosis?.method ?? 'histopathology')
    setNote(diagnosis?.note ?? '')
    window.setTimeout(() => editRef.current?.focus(), 0)
  }

  const save = async (fromConfirm = false) => {
    setAskDowngrade(false)
    await submit(async () => {
      const outcome = await saveDiagnosis(lesionId, { code, method, note: note.trim() }, base ?? null)
      if ('conflict' in outcome) {
        // keep what was typed; the next save replaces what is recorded now (when it could be read)
        if (outcome.conflict.current !== undefined) setCurrent(outcome.conflict.current)
        throw new Error(outcome.conflict.message)
      }
      requestFocus('diagnosis', String(lesionId))
      setEditing(false)
      onSaved()
    }, () => {
      // from the form itself too: its button was disabled while saving, so focus may have fallen
      if (fromConfirm || focusLost()) setFocusProblem(true)
    })
  }

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    if (!code) {
      setError('Choose the confirmed diagnosis.')
      setCodeMissing(true)
      // after the render that ties the message to the field, so that it is read with it
      requestAnimationFrame(() => codeRef.current?.focus())
      return
    }
    setCodeMissing(false)
    if (downgradesHistology(base, method)) {
      setError(null)
      setAskDowngrade(true) // ConfirmBox takes focus
      return
    }
    await save()
  }
  const keepHistology = () => {
    setAskDowngrade(false)
    window.setTimeout(() => methodRef.current?.focus(), 0)
  }

  const openRemove = () => {
    setRemoveError(null)
    setRemoving(true)
  }
  const cancelRemove = () => {
    setRemoving(false)
    setRemoveError(null)
    window.setTimeout(() => removeRef.current?.focus(), 0)
  }
  const remove = async () => {
    setRemoveBusy(true)
    setRemoveError(null)
    try {
      if (!base) {
        // removed meanwhile (a 409 said so): nothing is left to remove; show the lesion as it is
        setRemoving(false)
        onSaved()
        return
      }
      const outcome = await removeShownDiagnosis(lesionId, base)
      if ('conflict' in outcome) {
        // nothing removed: the box says what is recorded now; confirming again removes that one
        if (outcome.conflict.current !== undefined) setCurrent(outcome.conflict.current)
        setRemoveError(outcome.conflict.message)
        return
      }
      requestFocus('diagnosis', `removed:${lesionId}`)
      announce('The confirmed diagnosis was removed.', window.location.hash)
      setRemoving(false)
      onSaved()
    } catch (err) {
      setRemoveError((err as Error).message)
    } finally {
      setRemoveBusy(false)
    }
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
          {!editing && !removing && (
            <>
              <button type="button" className="btn-link" onClick={startEditing} ref={editRef} data-testid="diagnosis-edit">
                Correct
              </button>{' '}
              <button type="button" className="btn-link" onClick={openRemove} ref={removeRef} data-testid="diagnosis-remove">
                Remove diagnosis
              </button>
            </>
          )}
        </p>
      )}
      {diagnosis && removing && (
        <ConfirmBox confirmLabel="Remove diagnosis" onConfirm={remove} onCancel={cancelRemove} busy={removeBusy} error={removeError} testId="diagnosis-remove-confirm">
          <p>
            <strong>Remove the confirmed diagnosis {diagnosisLine(base ?? diagnosis, nameOf)}?</strong> The lesion is then
            without a confirmed diagnosis and leaves this clinic’s figures on the dashboard. The removal is written to the
            audit log.
          </p>
          {current !== undefined && (
            <p className="carried-note" data-testid="diagnosis-remove-current">
              {recordedMeanwhile(current, nameOf, 'Confirming removes it.')}
            </p>
          )}
        </ConfirmBox>
      )}
      {!diagnosis && (
        <p className="muted" ref={noneRef} tabIndex={-1} data-testid="diagnosis-none">
          No confirmed diagnosis is recorded for this lesion.
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
              <select
                id={`${ids}-code`}
                ref={codeRef}
                value={code}
                onChange={(e) => {
                  setCode(e.target.value)
                  setCodeMissing(false)
                }}
                {...fieldErrorProps(error && codeMissing ? errorId : null, Boolean(error) && codeMissing)}
                data-testid="diagnosis-code"
              >
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
              <select id={`${ids}-method`} ref={methodRef} value={method} onChange={(e) => setMethod(e.target.value)} data-testid="diagnosis-method">
                <option value="histopathology">Histopathology</option>
                <option value="clinical">Clinical assessment</option>
              </select>
            </div>
          </div>
          <div className="field">
            <label htmlFor={`${ids}-note`}>Note (optional)</label>
            <input id={`${ids}-note`} value={note} maxLength={NOTE_MAX} onChange={(e) => setNote(e.target.value)} data-testid="diagnosis-note" />
          </div>
          {error && (
            <div ref={errorRef} tabIndex={-1}>
              <ErrorBox error={error} what="Could not record the diagnosis." id={errorId} />
            </div>
          )}
          {current !== undefined && (
            <p className="carried-note" role="status" ref={currentRef} tabIndex={-1} data-testid="diagnosis-current">
              {current ? recordedMeanwhile(current, nameOf, 'Saving replaces it.') : 'The diagnosis was removed meanwhile. Saving records yours.'}
            </p>
          )}
          {base && (
            <p className="hint" data-testid="diagnosis-replaces-hint">
              {replacesHint(current !== undefined)}
            </p>
          )}
          {askDowngrade && base && (
            <ConfirmBox confirmLabel="Replace with the clinical diagnosis" onConfirm={() => void save(true)} onCancel={keepHistology} busy={busy} testId="diagnosis-downgrade-confirm">
              <p>
                <strong>The diagnosis recorded, {diagnosisName(base.code, nameOf)}, was confirmed by histopathology.</strong>{' '}
                Replace it with one confirmed only by clinical assessment? Histopathology is the stronger confirmation: keep
                it unless the histopathology result itself was wrong or belongs to another lesion.
              </p>
            </ConfirmBox>
          )}
          <div className="form-actions">
            <button type="submit" className="btn btn-primary" disabled={busy || askDowngrade} data-testid="diagnosis-submit">
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
