import { useEffect, useId, useRef, useState, type KeyboardEvent, type ReactNode, type RefObject } from 'react'
import { API, type LesionClassInfo, type ModelCard } from '../api.ts'
import { cardThresholds, shareBesideCutoffs } from '../card.ts'
import { changeVisitDate, deleteVisit, NOTE_MAX, updateVisitNote } from '../clinic/api.ts'
import { ErrorBox, RiskRoseBadge, TierBadge } from '../clinic/badges.tsx'
import { fieldErrorProps, refusedInput } from '../clinic/fieldErrors.ts'
import { describeChange, formatDelta, formatDays, tierLabel } from '../clinic/format.ts'
import { announce, focusRequested, requestFocus, scrollLeftToShow } from '../clinic/focus.ts'
import { defaultComparePair, resultNotes } from '../clinic/timelineSafety.ts'
import type { Change, Visit } from '../clinic/types.ts'
import { FALLBACK_CLASSES, SUGGESTED_CLASS } from '../content.ts'
import { formatPercent, formatProbability, formatTimestamp } from '../format.ts'
import { useApiData, useFormAction } from '../hooks.ts'
import { FlagList } from './FlagList.tsx'
import { HeatmapViewer } from './HeatmapViewer.tsx'
import { useUnsavedGuard } from './NewVisitForm.tsx'
import { ProbBars } from './ProbBars.tsx'

/** The date a visit's image was taken, as the timeline shows it. */
export function visitDate(v: Visit): string {
  return formatTimestamp(v.taken_at || v.created_at)
}

/** What a visit's "Malignant share" is (a tooltip for a mouse, and a line to open under the
 * timeline for touch and screen-reader users, who do not get tooltips). */
export const MALIGNANT_SHARE_DEFINITION =
  '(MEL + BCC + SCC) / (1 − UNK) for the shipped model: the malignant share among the specific diagnoses, not an absolute probability when UNK dominates'

/** The earliest date a visit may carry (the server's lower bound for `taken_at`). */
export const EARLIEST_VISIT_DATE = '1990-01-01'

/** A visit named so that two of the same date differ (screen readers, confirmations):
 * "visit 2 of 3, 2021-05-06" (`visits`: the lesion's visits, oldest first). */
export function visitName(visit: Visit, visits: Pick<Visit, 'id'>[]): string {
  const i = visits.findIndex((v) => v.id === visit.id)
  return i < 0 ? `visit of ${visitDate(visit)}` : `visit ${i + 1} of ${visits.length}, ${visitDate(visit)}`
}

/** The alt texts of a visit's image and heatmap, named as `visitName` names the visit, so that
 * the images of two visits of one date differ (and match the visit's confirmations):
 * "Image of visit 2 of 3, 2021-05-06". */
export function visitImageAlts(visit: Visit, visits: Pick<Visit, 'id'>[]): { image: string; heatmap: string } {
  const name = visitName(visit, visits)
  return {
    image: `Image of ${name}`,
    heatmap: `Heatmap of the areas the model used, ${name}`,
  }
}

/** The latest date a visit may have: tomorrow in UTC (the server's limit, which allows for a
 * clinic ahead of UTC). */
export function latestVisitDate(now: Date = new Date()): string {
  return new Date(now.getTime() + 86_400_000).toISOString().slice(0, 10)
}

/** Where focus goes once visit `id` is deleted: the visit before it, else the one after, else
 * the timeline's "no visits" line ('none'). */
export function focusAfterDelete(visits: Pick<Visit, 'id'>[], id: number): string {
  const i = visits.findIndex((v) => v.id === id)
  const next = visits[i - 1] ?? visits[i + 1]
  return next && next.id !== id ? String(next.id) : 'none'
}

/** An in-page confirmation (role alertdialog, as the patient page's deletion): focus starts on
 * Cancel, the harmless choice; Escape cancels. The opener restores focus on cancel. */
export function ConfirmBox({
  children,
  confirmLabel,
  onConfirm,
  onCancel,
  busy = false,
  error = null,
  testId,
}: {
  children: ReactNode
  confirmLabel: string
  onConfirm: () => void
  onCancel: () => void
  busy?: boolean
  error?: string | null
  testId: string
}) {
  const ids = useId()
  const cancelRef = useRef<HTMLButtonElement | null>(null)
  useEffect(() => cancelRef.current?.focus(), [])
  const onKey = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && !busy) {
      e.preventDefault()
      onCancel()
    }
  }
  return (
    <div className="confirm-box" role="alertdialog" aria-labelledby={`${ids}-q`} onKeyDown={onKey} data-testid={testId}>
      <div id={`${ids}-q`}>{children}</div>
      <ErrorBox error={error} />
      <div className="result-actions">
        <button type="button" className="btn btn-danger" onClick={onConfirm} disabled={busy} data-testid={`${testId}-yes`}>
          {busy ? 'Working…' : confirmLabel}
        </button>
        <button type="button" className="btn btn-secondary" onClick={onCancel} disabled={busy} ref={cancelRef} data-testid={`${testId}-no`}>
          Cancel
        </button>
      </div>
    </div>
  )
}

function modelText(v: Visit): string {
  return [v.model?.name ?? v.result.model?.name, v.model?.version ?? v.result.model?.version].filter(Boolean).join(' ') || 'unknown model'
}

/** The whole photo, and the same photo with the model's heatmap stretched over all of it. */
function VisitImages({ visit, visits }: { visit: Visit; visits: Visit[] }) {
  const alt = visitImageAlts(visit, visits)
  return (
    <div className="visit-images">
      <img className="visit-img" src={visit.image_url} alt={alt.image} data-testid="visit-image" />
      {visit.heatmap_url ? (
        <div className="visit-stack">
          <img className="visit-img" src={visit.image_url} alt="" />
          <img className="visit-heat" src={visit.heatmap_url} alt={alt.heatmap} data-testid="visit-heatmap" />
        </div>
      ) : (
        <div className="visit-noheat">No heatmap for this visit</div>
      )}
    </div>
  )
}

/** The questions before a visit's edited note or new date is lost (Back, a link, reload,
 * signing out). */
export const NOTE_LEAVE_MESSAGE = 'A visit’s note is not saved: the text you typed will be lost. Leave this page?'
export const DATE_LEAVE_MESSAGE = 'A visit’s new date is not saved: the date you entered will be lost. Leave this page?'

/** Whether an open editor (`open`) holds a value other than the saved one: unsaved work. */
export function editorUnsaved(open: boolean, value: string, saved: string | null | undefined): boolean {
  return open && value !== (saved ?? '')
}

/** The question before a note typed in the editor is dropped (Cancel, Escape). */
export const NOTE_DISCARD_MESSAGE = 'Discard the changes to this visit’s note? The text you typed will be lost.'

/** What is announced once a visit's note is saved (`name`: see `visitName`). */
export function noteSavedMessage(name: string): string {
  return `Note saved, ${name}.`
}

/** A visit's note, and its editor. Opening it puts focus in the text; Cancel or Escape closes it
 * (asking first when the typed text differs from the saved note) and focus goes back to "Edit
 * note"; after a save focus goes back there too and "Note saved" is announced. A save error is
 * tied to the text (aria-describedby), which takes focus again. */
export function VisitNote({
  visit,
  visits,
  onSaved,
  ask = (m) => window.confirm(m),
}: {
  visit: Visit
  visits: Visit[]
  onSaved: () => void
  /** asks before typed text is dropped (a test gives its own) */
  ask?: (message: string) => boolean
}) {
  const ids = useId()
  const [editing, setEditing] = useState(false)
  const [text, setText] = useState(visit.note ?? '')
  const { busy, error, setError, submit } = useFormAction()
  // whether the server refused the text itself (not e.g. a lost connection)
  const [invalid, setInvalid] = useState(false)
  const editBtn = useRef<HTMLButtonElement | null>(null)
  const area = useRef<HTMLTextAreaElement | null>(null)
  const name = visitName(visit, visits)
  const errorId = `${ids}-note-error`
  useUnsavedGuard(editorUnsaved(editing, text, visit.note), NOTE_LEAVE_MESSAGE)
  // after a save the lesion reloads: "Edit note" takes focus once shown again
  useEffect(() => {
    if (!editing && focusRequested('note', String(visit.id))) editBtn.current?.focus()
  })

  const open = () => {
    setText(visit.note ?? '')
    setError(null)
    setInvalid(false)
    setEditing(true)
    window.setTimeout(() => area.current?.focus(), 0)
  }
  const cancel = () => {
    if (busy) return
    if (editorUnsaved(true, text, visit.note) && !ask(NOTE_DISCARD_MESSAGE)) {
      area.current?.focus() // kept: back to the text
      return
    }
    setEditing(false)
    setError(null)
    setInvalid(false)
    setText(visit.note ?? '')
    window.setTimeout(() => editBtn.current?.focus(), 0)
  }
  const save = () => {
    if (busy) return
    return submit(
      async () => {
        setInvalid(false)
        try {
          await updateVisitNote(visit.id, text)
        } catch (err) {
          setInvalid(refusedInput(err))
          throw err
        }
        setEditing(false)
        requestFocus('note', String(visit.id))
        announce(noteSavedMessage(name), window.location.hash)
        onSaved()
      },
      // after the render that ties the error to the text, so that it is read out with it
      () => requestAnimationFrame(() => area.current?.focus()),
    )
  }
  const onKey = (e: KeyboardEvent) => {
    // not the Escape that ends an input method's composition (Japanese, Chinese… typing)
    if (e.key === 'Escape' && !e.nativeEvent.isComposing) {
      e.preventDefault()
      cancel()
    }
  }
  if (!editing) {
    return (
      <p className="visit-note">
        <span data-testid="visit-note">{visit.note?.trim() || <span className="muted">No note.</span>}</span>{' '}
        <button type="button" className="btn-link" onClick={open} ref={editBtn} aria-label={`Edit note of ${name}`} data-testid="visit-note-edit">
          Edit note
        </button>
      </p>
    )
  }
  return (
    <div className="visit-note" onKeyDown={onKey} data-testid="visit-note-editor">
      <textarea
        value={text}
        rows={3}
        maxLength={NOTE_MAX}
        ref={area}
        onChange={(e) => {
          setText(e.target.value)
          setInvalid(false)
        }}
        aria-label={`Clinician note of ${name}`}
        {...fieldErrorProps(error ? errorId : null, Boolean(error) && invalid)}
        data-testid="visit-note-text"
      />
      <ErrorBox error={error} what="Could not save the note." id={errorId} testId="visit-note-error" />
      <div className="result-actions">
        <button type="button" className="btn btn-secondary" onClick={() => void save()} aria-disabled={busy || undefined} data-testid="visit-note-save">
          {busy ? 'Saving…' : 'Save note'}
        </button>
        <button type="button" className="btn btn-ghost" onClick={cancel} aria-disabled={busy || undefined} data-testid="visit-note-cancel">
          Cancel
        </button>
      </div>
    </div>
  )
}

/** The "Change date" editor of a visit: the date field, its error tied to it (aria-describedby,
 * and aria-invalid when the date itself was refused: `invalid`), Save and Cancel. */
export function VisitDateEditor({
  id,
  when,
  date,
  onDate,
  error,
  invalid,
  busy,
  onSave,
  onCancel,
  onKeyDown,
  inputRef,
}: {
  id: string
  when: string
  date: string
  onDate: (value: string) => void
  error: string | null
  invalid: boolean
  busy: boolean
  onSave: () => void
  onCancel: () => void
  onKeyDown?: (e: KeyboardEvent) => void
  inputRef?: RefObject<HTMLInputElement | null>
}) {
  const errorId = `${id}-error`
  return (
    <div className="field" role="group" aria-labelledby={`${id}-label`} onKeyDown={onKeyDown} data-testid="visit-date-editor">
      <label htmlFor={id} id={`${id}-label`}>
        Date this visit’s image was taken (now {when})
      </label>
      <input
        id={id}
        type="date"
        ref={inputRef}
        min={EARLIEST_VISIT_DATE}
        max={latestVisitDate()}
        value={date}
        onChange={(e) => onDate(e.target.value)}
        {...fieldErrorProps(error ? errorId : null, Boolean(error) && invalid)}
        data-testid="visit-date-edit"
      />
      <ErrorBox error={error} what="Could not change the date." id={errorId} />
      <div className="result-actions">
        <button type="button" className="btn btn-secondary" onClick={onSave} disabled={busy} data-testid="visit-date-save">
          {busy ? 'Saving…' : 'Save date'}
        </button>
        <button type="button" className="btn btn-ghost" onClick={onCancel} disabled={busy} data-testid="visit-date-cancel">
          Cancel
        </button>
      </div>
    </div>
  )
}

type Correcting = 'none' | 'date' | 'delete'

/** A wrongly filed visit: its date changed, or the visit deleted (after a confirmation naming its
 * date). Focus: into the date field / onto Cancel when opened, back to the button on cancel, onto
 * the visit (its new place in the timeline) after a new date, onto a neighbour after deleting. */
function VisitCorrections({ visit, visits, onChanged }: { visit: Visit; visits: Visit[]; onChanged: () => void }) {
  const ids = useId()
  const [mode, setMode] = useState<Correcting>('none')
  const [date, setDate] = useState(visit.taken_at?.slice(0, 10) ?? '')
  const { busy, error, setError, submit: run } = useFormAction()
  // whether the error is about the date typed (the server refused it), not e.g. a lost connection
  const [dateInvalid, setDateInvalid] = useState(false)
  useUnsavedGuard(editorUnsaved(mode === 'date', date, visit.taken_at?.slice(0, 10)), DATE_LEAVE_MESSAGE)
  const dateBtn = useRef<HTMLButtonElement | null>(null)
  const deleteBtn = useRef<HTMLButtonElement | null>(null)
  const dateInput = useRef<HTMLInputElement | null>(null)
  const when = visitDate(visit)
  const name = visitName(visit, visits) // "visit 2 of 3, 2021-05-06": visits of one date differ

  const open = (m: Correcting) => {
    setError(null)
    setDateInvalid(false)
    setMode(m)
    if (m === 'date') window.setTimeout(() => dateInput.current?.focus(), 0)
  }
  const close = () => {
    const back = mode === 'date' ? dateBtn : deleteBtn
    setMode('none')
    setError(null)
    setDateInvalid(false)
    setDate(visit.taken_at?.slice(0, 10) ?? '')
    window.setTimeout(() => back.current?.focus(), 0)
  }
  const saveDate = () =>
    run(
      async () => {
        setDateInvalid(false)
        if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) {
          setDateInvalid(true)
          throw new Error('Enter the date the image was taken.')
        }
        try {
          await changeVisitDate(visit.id, date)
        } catch (err) {
          setDateInvalid(refusedInput(err))
          throw err
        }
        setMode('none')
        requestFocus('visit', String(visit.id))
        onChanged()
      },
      // after the render that ties the error to the field, so that it is read out with it
      () => requestAnimationFrame(() => dateInput.current?.focus()),
    )
  const remove = () =>
    run(async () => {
      await deleteVisit(visit.id)
      requestFocus('visit', focusAfterDelete(visits, visit.id))
      announce(`The ${name} was deleted.`, window.location.hash)
      onChanged()
    })
  const onDateKey = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && !busy) {
      e.preventDefault()
      close()
    }
  }

  return (
    <div className="visit-corrections" data-testid="visit-corrections">
      {mode === 'none' && (
        <p className="result-actions">
          <button type="button" className="btn-link" onClick={() => open('date')} ref={dateBtn} aria-label={`Change date of ${name}`} data-testid="visit-change-date">
            Change date
          </button>{' '}
          <button type="button" className="btn-link visit-delete" onClick={() => open('delete')} ref={deleteBtn} aria-label={`Delete ${name}`} data-testid="visit-delete">
            Delete visit
          </button>
        </p>
      )}
      {mode === 'date' && (
        <VisitDateEditor
          id={`${ids}-date`}
          when={when}
          date={date}
          onDate={(value) => {
            setDate(value)
            setDateInvalid(false)
          }}
          error={error}
          invalid={dateInvalid}
          busy={busy}
          onSave={saveDate}
          onCancel={close}
          onKeyDown={onDateKey}
          inputRef={dateInput}
        />
      )}
      {mode === 'delete' && (
        <ConfirmBox confirmLabel="Delete this visit" onConfirm={remove} onCancel={close} busy={busy} error={error} testId="visit-delete-confirm">
          <p>
            <strong>Delete the {name}?</strong> Its image, heatmap, result and note are deleted, and this cannot
            be undone. The deletion is written to the audit log.
          </p>
        </ConfirmBox>
      )}
    </div>
  )
}

/** The tier cut-offs that applied to a stored visit: the model card's, only when the card on the
 * server is the one of the model that recorded the visit (same name and version); else null (a
 * later model's cut-offs were never this visit's). */
export function visitCutoffs(visit: Pick<Visit, 'model' | 'result'>, card: ModelCard | null): { refer: number | null; monitor: number | null } | null {
  const t = cardThresholds(card)
  if (!t || (t.refer === null && t.monitor === null) || !cardIsVisitModel(visit, card)) return null
  return t
}

/** Whether `card` is the card of the model that recorded `visit` (same name and version). */
function cardIsVisitModel(visit: Pick<Visit, 'model' | 'result'>, card: ModelCard | null): boolean {
  const name = visit.model?.name ?? visit.result.model?.name
  const version = visit.model?.version ?? visit.result.model?.version
  return Boolean(card && name && version && card.name === name && card.version === version)
}

/** Why a stored visit's details show no tier cut-offs (`visitCutoffs` null). */
function noCutoffsReason(visit: Visit, card: ModelCard | null): string {
  if (!card) return 'the model card is not available'
  if (cardIsVisitModel(visit, card)) return 'the model card states none'
  const now = [card.name, card.version].filter(Boolean).join(' ') || 'another model'
  return `this visit was recorded with ${modelText(visit)}, the server now runs ${now}`
}

/** A stored visit's model result in full, as the Assess page shows a result to a clinician: the
 * suggested class with the rule that chose it, the malignant share beside the tier cut-offs, and
 * the probability of each class. Nothing for a visit the model could not assess (as on the Assess
 * page: no class, no probabilities). `classes`, `card`: the server's (GET /classes, /model). */
export function VisitDetails({
  visit,
  visits,
  classes,
  card,
}: {
  visit: Visit
  visits: Pick<Visit, 'id'>[]
  classes: LesionClassInfo[]
  card: ModelCard | null
}) {
  const r = visit.result
  const probs = r.probabilities && typeof r.probabilities === 'object' ? r.probabilities : null
  if (r.risk === 'cannot_assess' || !probs || Object.keys(probs).length === 0) return null
  const byCode = new Map(classes.map((c) => [c.code, c]))
  const predictionName = r.prediction_name ?? (r.prediction ? byCode.get(r.prediction)?.name ?? r.prediction : undefined)
  const p = typeof r.malignant_probability === 'number' ? r.malignant_probability : null
  const cutoffs = visitCutoffs(visit, card)
  const shown = p !== null && cutoffs ? shareBesideCutoffs(p, cutoffs.refer, cutoffs.monitor, r.risk) : null
  return (
    <details className="visit-details" data-testid="visit-details">
      <summary data-testid="visit-details-toggle">
        Details<span className="visually-hidden"> of {visitName(visit, visits)}</span>
      </summary>
      <dl className="visit-facts visit-details-facts">
        {predictionName && (
          <div>
            <dt>{SUGGESTED_CLASS}</dt>
            <dd data-testid="visit-suggested-class">
              {predictionName}
              {r.prediction && ` (${r.prediction})`}
              {r.decision_rule && (
                <span className="muted" data-testid="visit-decision-rule">
                  {' '}
                  — chosen as: {r.decision_rule}
                </span>
              )}
            </dd>
          </div>
        )}
        {p !== null && (
          <div>
            <dt title={MALIGNANT_SHARE_DEFINITION}>Malignant share</dt>
            <dd data-testid="visit-thresholds">
              <strong>{shown?.share ?? formatProbability(p)}</strong>
              {cutoffs ? (
                <span className="muted">
                  {' '}
                  (refer ≥ {shown?.refer ?? formatPercent(cutoffs.refer)}, monitor ≥ {shown?.monitor ?? formatPercent(cutoffs.monitor)})
                </span>
              ) : (
                <span className="muted">
                  {' '}
                  (tier cut-offs not shown: {noCutoffsReason(visit, card)})
                </span>
              )}
            </dd>
          </div>
        )}
      </dl>
      <ProbBars probabilities={probs} classes={classes} prediction={r.prediction} audience="clinician" />
    </details>
  )
}

function VisitCard({
  visit,
  index,
  visits,
  onChanged,
  classes,
  card,
}: {
  visit: Visit
  index: number
  visits: Visit[]
  onChanged: () => void
  classes: LesionClassInfo[]
  card: ModelCard | null
}) {
  const r = visit.result
  const cannot = r.risk === 'cannot_assess'
  // as on the Assess page: why it could not be assessed, or the warnings that go with a result;
  // a safety warning (the photo may be of another lesion) beside the reason too (`resultNotes`)
  const { reasons, warnings } = resultNotes(r.flags, cannot)
  return (
    <article className="visit-card" data-testid={`visit-${visit.id}`}>
      <header>
        <h3>
          Visit {index + 1} · <time dateTime={visit.taken_at}>{visitDate(visit)}</time>
        </h3>
      </header>
      <VisitImages visit={visit} visits={visits} />
      <dl className="visit-facts">
        <div>
          <dt>Tier</dt>
          <dd>
            <TierBadge risk={r.risk} testId="visit-tier" />
          </dd>
        </div>
        <div>
          <dt title={MALIGNANT_SHARE_DEFINITION}>Malignant share</dt>
          <dd data-testid="visit-malignant">{cannot ? 'not assessed' : formatPercent(r.malignant_probability)}</dd>
        </div>
        <div>
          <dt>Model</dt>
          <dd>{modelText(visit)}</dd>
        </div>
        {visit.created_by && (
          <div>
            <dt>Recorded by</dt>
            <dd>{visit.created_by}</dd>
          </div>
        )}
      </dl>
      <FlagList flags={[...reasons, ...warnings]} className="risk-warnings" testId="visit-flags" />
      <VisitDetails visit={visit} visits={visits} classes={classes} card={card} />
      <VisitNote visit={visit} visits={visits} onSaved={onChanged} />
      <VisitCorrections visit={visit} visits={visits} onChanged={onChanged} />
    </article>
  )
}

function ChangeArrow({ change }: { change: Change }) {
  return (
    <div
      className={`visit-change${change.risk_rose ? ' is-rose' : ''}`}
      data-testid={`change-${change.from_visit}-${change.to_visit}`}
      data-risk-rose={change.risk_rose}
      title={describeChange(change)}
    >
      <span className="visit-change-arrow" aria-hidden="true">
        →
      </span>
      <strong>{formatDelta(change.malignant_delta)}</strong>
      <span className="muted">{formatDays(change.days)}</span>
      <RiskRoseBadge rose={change.risk_rose} testId="change-risk-rose" />
      <span className="visually-hidden">{describeChange(change)}</span>
    </div>
  )
}

/** The visit the timeline scrolls into view: the one focus was asked for (a visit just saved,
 * or whose date changed, or the neighbour of one deleted), else, when the timeline is first shown,
 * the newest (the last: oldest first); else none (the timeline stays where the user put it). */
export function visitToShow(visits: Pick<Visit, 'id'>[], requested: number | undefined, firstShown: boolean): number | undefined {
  if (requested !== undefined && visits.some((v) => v.id === requested)) return requested
  return firstShown ? visits[visits.length - 1]?.id : undefined
}

/** What is announced once a new visit is saved and shown in the timeline (`visits`: the lesion's
 * visits, oldest first): "Visit 3 of 3, 2021-05-06, saved: High risk, malignant share 71.2%." */
export function visitSavedMessage(visit: Visit, visits: Pick<Visit, 'id'>[]): string {
  const r = visit.result
  const share = r.risk !== 'cannot_assess' && typeof r.malignant_probability === 'number' ? `, malignant share ${formatPercent(r.malignant_probability)}` : ''
  const name = visitName(visit, visits)
  return `${name.charAt(0).toUpperCase()}${name.slice(1)}, saved: ${tierLabel(r.risk)}${share}.`
}

/** Scroll the timeline `list` sideways until the card of `item` (a timeline item) is wholly in
 * view; `page`: the page too, up or down as far as needed (after a save lower on the page). */
function showVisit(list: HTMLElement, item: HTMLElement, page: boolean): void {
  const card = item.querySelector<HTMLElement>('.visit-card') ?? item
  const view = list.getBoundingClientRect()
  const box = card.getBoundingClientRect()
  list.scrollLeft = scrollLeftToShow({ left: view.left + list.clientLeft, width: list.clientWidth }, list.scrollLeft, box)
  if (page) card.scrollIntoView({ block: 'nearest', inline: 'nearest' })
}

/** How the user last acted on the page: a key, or a press (mouse, finger, pen); null before either. */
let lastInput: 'key' | 'pointer' | null = null

/** Record how the user last acted on the page (`keydown`, `pointerdown`), heard by the timeline
 * while it is shown (see `showFocusedVisit`). */
export function noteInput(e: { type: string }): void {
  lastInput = e.type === 'keydown' ? 'key' : 'pointer'
}

/** Focus moved to `target` inside the timeline `list` (tabbing through a card's buttons): that
 * card is scrolled wholly into view, so that the focused control is not left clipped at the edge
 * (the browser scrolls just far enough to show the control's start). Not for a press with a
 * mouse or finger: the card would move under the pointer between press and release, and the
 * click would be lost. A press is told by the last input (`noteInput`), as a text field or a date
 * field clicked into shows a focus ring (`:focus-visible`) all the same; and by the focus ring
 * (none after a press on a button). */
export function showFocusedVisit(list: HTMLElement, target: EventTarget | null): void {
  const el = target as Partial<Element> | null
  if (lastInput === 'pointer') return
  if (el?.matches && !el.matches(':focus-visible')) return
  const item = el?.closest?.('.timeline-item') as HTMLElement | null | undefined
  if (item && list.contains(item)) showVisit(list, item, false)
}

/** Visits side by side (oldest first), with the change between each pair. */
export function VisitTimeline({ visits, changes, onChanged }: { visits: Visit[]; changes: Change[]; onChanged: () => void }) {
  const listRef = useRef<HTMLOListElement | null>(null)
  // each visit's details name the classes and the tier cut-offs (cached: the lesion page asks too)
  const classesQ = useApiData<LesionClassInfo[]>(`${API}/classes`)
  const cardQ = useApiData<ModelCard>(`${API}/model`)
  const classes = Array.isArray(classesQ.data) && classesQ.data.length ? classesQ.data : FALLBACK_CLASSES
  // how focus comes into the timeline: by key (scrolled into view) or by a press (left alone)
  useEffect(() => {
    const opts = { capture: true, passive: true }
    document.addEventListener('keydown', noteInput, opts)
    document.addEventListener('pointerdown', noteInput, opts)
    return () => {
      document.removeEventListener('keydown', noteInput, opts)
      document.removeEventListener('pointerdown', noteInput, opts)
    }
  }, [])
  // A visit just saved (NewVisitForm asked): focus it, so that a keyboard or screen-reader user
  // lands on the answer instead of on <body> when the form is replaced.
  // The same after a visit's date changed (its place in the timeline may change), or after a
  // visit was deleted (its neighbour, or the "no visits" line when it was the only one).
  // Its card is scrolled wholly into view (focus alone may leave its end clipped); when the
  // timeline is first shown, the newest visit's card is (not visit 1's, far from the latest).
  const noneRef = useRef<HTMLParagraphElement | null>(null)
  const shownRef = useRef(false)
  const visitsRef = useRef(visits)
  useEffect(() => {
    const reloaded = visitsRef.current !== visits
    visitsRef.current = visits
    if (visits.length === 0) {
      if (focusRequested('visit', 'none')) noneRef.current?.focus()
      return
    }
    const list = listRef.current
    if (!list) return
    const saved = visits.find((v) => focusRequested('visit', String(v.id), false))
    const first = !shownRef.current
    shownRef.current = true
    const id = visitToShow(visits, saved?.id, first)
    const el = id === undefined ? null : list.querySelector<HTMLElement>(`[data-visit-id="${id}"]`)
    if (el) {
      const focus = saved !== undefined && focusRequested('visit', String(saved.id))
      if (focus) el.focus({ preventScroll: true })
      showVisit(list, el, focus)
      // a new visit (NewVisitForm asked): its result said, not only its card focused
      if (saved && focusRequested('visit-saved', String(saved.id))) announce(visitSavedMessage(saved, visits), window.location.hash)
    } else if (reloaded && document.activeElement?.parentElement === list) {
      // the visit with focus stays in view when the reloaded lesion moves it (a new date)
      showVisit(list, document.activeElement as HTMLElement, false)
    }
  })
  if (visits.length === 0)
    return (
      <p className="muted" ref={noneRef} tabIndex={-1} data-testid="no-visits">
        No visits yet. Add the first image below.
      </p>
    )
  return (
    <>
      <ol className="timeline" data-testid="timeline" ref={listRef} onFocus={(e) => showFocusedVisit(e.currentTarget, e.target)}>
        {visits.map((v, i) => {
          const change = i > 0 ? changes.find((c) => c.to_visit === v.id) : undefined
          return (
            <li key={v.id} className="timeline-item" data-visit-id={v.id} tabIndex={-1}>
              {change && <ChangeArrow change={change} />}
              <VisitCard visit={v} index={i} visits={visits} onChanged={onChanged} classes={classes} card={cardQ.data} />
            </li>
          )
        })}
      </ol>
      {/* a tooltip is out of reach on a touch screen: the definition, one tap away */}
      <details className="timeline-help" data-testid="malignant-share-help">
        <summary>What “Malignant share” means</summary>
        <p>{MALIGNANT_SHARE_DEFINITION}</p>
      </details>
      {changes.length > 0 && (
        <ul className="plain-list change-list" data-testid="change-list">
          {changes.map((c) => (
            <li key={`${c.from_visit}-${c.to_visit}`} className={c.risk_rose ? 'is-rose' : undefined}>
              {describeChange(c)}
            </li>
          ))}
        </ul>
      )}
    </>
  )
}

/** Two chosen visits side by side, large, with the heatmap opacity shared by both (each image's
 * slider, named for its side, moves both). */
export function CompareVisits({ visits, crop }: { visits: Visit[]; crop: string }) {
  const ids = useId()
  // the last two assessed visits (a visit that could not be assessed has no share to compare)
  const [first, last] = defaultComparePair(visits)
  const [a, setA] = useState(first)
  const [b, setB] = useState(last)
  const [opacity, setOpacity] = useState(50)
  if (visits.length < 2) return <p className="muted">Compare needs two visits.</p>
  const pick = (id: number) => visits.find((v) => v.id === id) ?? visits[0]
  const va = pick(a)
  const vb = pick(b)
  const delta =
    typeof va.result.malignant_probability === 'number' && typeof vb.result.malignant_probability === 'number'
      ? vb.result.malignant_probability - va.result.malignant_probability
      : null
  const choose = (value: number, set: (v: number) => void, label: string, testId: string) => (
    <div className="field">
      <label htmlFor={`${ids}-${testId}`}>{label}</label>
      <select id={`${ids}-${testId}`} value={value} onChange={(e) => set(Number(e.target.value))} data-testid={testId}>
        {visits.map((v, i) => (
          <option key={v.id} value={v.id}>
            Visit {i + 1} · {visitDate(v)}
          </option>
        ))}
      </select>
    </div>
  )
  return (
    <div className="compare" data-testid="compare-view">
      <div className="field-row">
        {choose(a, setA, 'Left', 'compare-a')}
        {choose(b, setB, 'Right', 'compare-b')}
      </div>
      {/* said again when another visit is chosen on either side */}
      <p aria-live="polite" aria-atomic="true" data-testid="compare-delta">
        Malignant share (among the specific diagnoses) from left to right: <strong>{formatDelta(delta)}</strong>
      </p>
      <div className="compare-grid">
        {[va, vb].map((v, i) => (
          <figure key={`${i}-${v.id}`} className="compare-side">
            <figcaption>
              <strong>
                Visit {visits.findIndex((x) => x.id === v.id) + 1} · {visitDate(v)}
              </strong>{' '}
              <TierBadge risk={v.result.risk} p={v.result.malignant_probability ?? null} />
            </figcaption>
            <HeatmapViewer
              imageSrc={v.image_url}
              imageName={visitName(v, visits)}
              heatmapSrc={v.heatmap_url}
              crop={crop}
              opacity={opacity}
              onOpacity={setOpacity}
              sliderLabel={`Heatmap opacity, ${i === 0 ? 'left' : 'right'} image`}
            />
          </figure>
        ))}
      </div>
    </div>
  )
}
