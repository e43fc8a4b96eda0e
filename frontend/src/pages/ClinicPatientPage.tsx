import { createContext, useContext, useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react'
import { ApiError } from '../api.ts'
import { createLesion, deleteLesion, deletePatient, getPatient, patientExportUrl, updateLesion, updatePatientRef } from '../clinic/api.ts'
import { ClinicNotice, ErrorBox, RetakeBadge, RiskRoseBadge, TierBadge } from '../clinic/badges.tsx'
import { announce, focusLost } from '../clinic/focus.ts'
import { assessedOn, clinicHref, lesionPlace, RETAKE_LABEL, retakeNote } from '../clinic/format.ts'
import { useClinic, useLoad } from '../clinic/session.ts'
import type { Lesion, MapPoint as LesionMapPoint, Side } from '../clinic/types.ts'
import type { LesionChange } from '../clinic/api.ts'
import {
  BodyMap,
  describePoint,
  FIGURE,
  markSide,
  patientSideOf,
  pointOnSide,
  pointPart,
  pointSide,
  regionAt,
  siteFitsPoint,
  stepPosition,
  type ArrowDirection,
  type MapPoint,
  type Pin,
} from '../components/BodyMap.tsx'
import { ChoiceField } from '../components/ChoiceField.tsx'
import { setAppHash, useUnsavedGuard } from '../components/NewVisitForm.tsx'
import { SITE_CHOICES, SITE_LABELS } from '../content.ts'
import { formatTimestamp } from '../format.ts'
import { useFormAction } from '../hooks.ts'
import { EmptyRow, TableWrap } from '../components/TableWrap.tsx'

const SIDES: { value: Side; label: string }[] = [
  { value: 'left', label: 'Left' },
  { value: 'right', label: 'Right' },
  { value: 'midline', label: 'Midline' },
]

const round3 = (v: number) => Math.min(1, Math.max(0, Math.round(v * 1000) / 1000))

/** A Side field's value as the API's side: '' (not stated) and anything else unknown is null. */
export function asSide(v: string): Side | null {
  return v === 'left' || v === 'right' || v === 'midline' ? v : null
}

/** A lesion's pin (`map`, fractions of the figure, as the API keeps it) moved to the same place on
 * the patient's `side` (see pointOnSide), when it is on an arm, leg, hand, foot or side of the
 * trunk of the other side; null when it stays where it is (no pin, no such side, or already there). */
export function mirroredMap(map: LesionMapPoint | null, side: string): { map: LesionMapPoint; part: string } | null {
  if (!map || (side !== 'left' && side !== 'right')) return null
  const x = map.x * FIGURE.width
  const y = map.y * FIGURE.height
  const at = regionAt(map.view, x, y)
  if (!at) return null
  const point: MapPoint = { view: map.view, x, y, site: at.site }
  const moved = pointOnSide(point, side)
  if (moved === point) return null
  return { map: { view: map.view, x: round3(moved.x / FIGURE.width), y: map.y }, part: pointPart(moved) }
}

/** Where a lesion's pin (`map`, fractions of the figure) will be once saved with `side`: moved to
 * that side where mirroredMap moves it; null without a pin (or off the body). */
export function pinPoint(map: LesionMapPoint | null, side: string): MapPoint | null {
  if (!map) return null
  const moved = mirroredMap(map, side)?.map ?? map
  const x = moved.x * FIGURE.width
  const y = moved.y * FIGURE.height
  const at = regionAt(moved.view, x, y)
  return at ? { view: moved.view, x, y, site: at.site } : null
}

/** The warning under a Side field (see sideWarning): always in the page, empty when there is
 * nothing to say, so that a warning that comes is said (a live region) and seen. */
function SideWarning({ text, testId, id }: { text: string; testId: string; id?: string }) {
  return (
    <p className={text ? 'status-warning' : 'visually-hidden'} role="status" id={id} data-testid={testId}>
      {text}
    </p>
  )
}

/** What saving a lesion's "Edit location" says: what changed (location, side) and, when the side
 * moved the pin, where it is now. */
export function lesionEditText(n: number, changed: { location: boolean; side: boolean }, pinPart: string | null): string {
  const what = [changed.location && 'location', changed.side && 'side'].filter(Boolean).join(' and ')
  const saved = what ? `Lesion ${n}: ${what} saved.` : `Lesion ${n}: nothing changed.`
  return pinPart !== null ? `${saved} Its pin on the body map moved to ${pinPart || 'the other side'} to match the side.` : saved
}

/** What leaving the page asks while "Correct reference" holds a reference typed and not saved. */
export const REF_LEAVE_MESSAGE = 'The corrected reference is not saved. Leave this page?'

/** What leaving the page asks while a lesion's "Edit location" holds changes not saved. */
export const LESION_EDIT_LEAVE_MESSAGE = 'The lesion’s edited location is not saved. Leave this page?'

/** The caption of a patient's lesion table: whose lesions, and how many. */
export function lesionListCaption(ref: string, n: number): string {
  return `Lesions of patient ${ref}: ${n === 0 ? 'none yet' : `${n} lesion${n === 1 ? '' : 's'}`}`
}

/** What leaving the patient page asks while the new lesion's form holds unsaved work. */
export const NEW_LESION_LEAVE_MESSAGE = 'The new lesion is not saved: where you placed it and what you typed will be lost. Leave this page?'

/** What the new lesion's placement hint says: where the mark is, in words (see describePoint),
 * and what last changed it or the fields beside it (`note`). After an arrow key (`moved`) it also
 * says how far the mark is from the middle of its part, in steps (see stepPosition): each press
 * changes what the live region says, so each is heard. */
export function placementText(point: MapPoint | null, note: string, moved = false): string {
  const where = point ? `Placed on the ${describePoint(point)}${moved ? `; ${stepPosition(point)}` : ''}.` : 'Not placed on the map yet.'
  return note ? `${note} ${where}` : where
}

/** What an arrow key that could not move the mark says (`presses`: how many times in a row it was
 * pressed there): the count makes each press change the live region, so each is heard. */
export function edgeText(point: MapPoint, direction: ArrowDirection, presses: number): string {
  const part = pointPart(point) || SITE_LABELS[point.site] || point.site
  // left and right in the patient's sides, as the rest of the page says them (the arrow keys move
  // the mark left and right on the screen: on the front view that is the patient's other side)
  const way =
    direction === 'left' || direction === 'right'
      ? `towards the patient’s ${patientSideOf(point.view, direction === 'left')}`
      : direction
  return `The mark is at the edge of ${part}: it cannot move further ${way}${presses > 1 ? ` (pressed ${presses} times)` : ''}.`
}

const SIDE_WORDS: Record<string, string> = { left: 'Left', right: 'Right', midline: 'Midline' }

/** The warning shown under a Side field whose value contradicts where the mark (or the lesion's
 * pin) is on the body map: Left or Right with the mark on the patient's other side (see markSide:
 * the trunk's and head's outer thirds too), or Midline with the mark on an arm, leg, hand, foot or
 * side of the trunk. '' when they agree, or when either says nothing. Saving is not blocked. */
export function sideWarning(point: MapPoint | null, side: string, what = 'the mark on the body map'): string {
  if (!point || !SIDE_WORDS[side]) return ''
  const at = markSide(point)
  if (side === 'midline') {
    const shapeSided = pointSide(point)
    return shapeSided ? `Check the side: ${what} is on ${pointPart(point)}, but Side is Midline.` : ''
  }
  if (!at || at === side) return ''
  return `Check the side: ${what} is on the patient’s ${at} side, but Side is ${SIDE_WORDS[side]}.`
}

/** The elements Tab stops at inside `box`, in order. */
function tabStops(box: HTMLElement): HTMLElement[] {
  const all = box.querySelectorAll<HTMLElement>(
    'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])',
  )
  return Array.from(all).filter((el) => el.tabIndex >= 0)
}

/** Keeps Tab inside a confirm box (role="alertdialog"): Tab on its last stop goes to its first,
 * Shift+Tab on its first to its last (Escape closes it). From the box itself or a message the
 * focus was put on (tabindex -1, no Tab stop), Tab goes to the next stop in the box, Shift+Tab to
 * the one before it, wrapping round too. */
export function trapTab(e: KeyboardEvent<HTMLElement>): void {
  if (e.key !== 'Tab') return
  const stops = tabStops(e.currentTarget)
  if (stops.length === 0) return
  const first = stops[0]
  const last = stops[stops.length - 1]
  const active = document.activeElement
  const at = stops.findIndex((s) => s === active)
  if (at === -1) {
    // Node.DOCUMENT_POSITION_FOLLOWING: the stop comes after the focused element
    const follows = (s: HTMLElement) => active !== null && (active.compareDocumentPosition(s) & 4) !== 0
    const next = e.shiftKey ? [...stops].reverse().find((s) => !follows(s)) : stops.find(follows)
    e.preventDefault()
    ;(next ?? (e.shiftKey ? last : first)).focus()
  } else if (e.shiftKey && at === 0) {
    e.preventDefault()
    last.focus()
  } else if (!e.shiftKey && at === stops.length - 1) {
    e.preventDefault()
    first.focus()
  }
}

/** A status line that says each message, the same one twice too: it is emptied, then filled a
 * moment later (a live region whose text does not change says nothing). */
export function useRepeatableStatus(delayMs = 100): [string, (message: string) => void] {
  const [text, setText] = useState('')
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null)
  useEffect(
    () => () => {
      if (timer.current !== null) clearTimeout(timer.current)
    },
    [],
  )
  const say = (message: string) => {
    if (timer.current !== null) clearTimeout(timer.current)
    setText('')
    timer.current = setTimeout(() => {
      timer.current = null
      setText(message)
    }, delayMs)
  }
  return [text, say]
}

/** How a clinic page gives the tab its own title while shown ("Patient not found": see
 * RecordNotFound), instead of the route's: the app provides it (null: none, the title is not
 * the app's to keep, and the page writes document.title itself). */
export const PageTitleContext = createContext<((title: string | null) => void) | null>(null)

/** The message of an error, after what failed (`what`): "Could not delete lesion 2: Database is locked". */
function failed(what: string, err: unknown): Error {
  return new Error(`${what}: ${(err as Error).message}`)
}

/** Whether a page's load failed because there is no such record: not found (404), or an id no
 * record can have (422, e.g. 0). */
export function notFound(error: Error | null): boolean {
  return error instanceof ApiError && (error.status === 404 || error.status === 422)
}

/** A patient's or lesion's page when there is none at that address: a heading that says so (it
 * takes the focus when the focus is nowhere), a plain sentence, the way back to the patients and a
 * title that says the same. */
export function RecordNotFound({ what }: { what: 'Patient' | 'Lesion' }) {
  const headingRef = useRef<HTMLHeadingElement | null>(null)
  const title = `${what} not found`
  const setPageTitle = useContext(PageTitleContext)
  useEffect(() => {
    if (focusLost()) headingRef.current?.focus()
    if (setPageTitle) {
      // the app's title logic puts it in the tab's title while the page is shown (not while it is
      // hidden under the sign-in form, and again after signing in)
      setPageTitle(title)
      return () => setPageTitle(null)
    }
    const before = document.title
    document.title = `${title} · dermsight`
    return () => {
      document.title = before
    }
  }, [title, setPageTitle])
  return (
    <div className="clinic-page" data-testid="record-not-found">
      <h1 className="page-title" ref={headingRef} tabIndex={-1}>
        {title}
      </h1>
      <p>
        There is no {what.toLowerCase()} at this address. It may have been deleted, or the link may be mistyped or out
        of date.
      </p>
      <p>
        <a href={clinicHref.patients} data-testid="record-not-found-patients">
          Back to the patient list
        </a>
      </p>
    </div>
  )
}

/** What the placement hint says when a body site chosen in the list (`site`) does not fit the
 * mark (`point`), which is taken off the map (and put back if the list comes back to it). */
export function takenOffNote(point: MapPoint, site: string): string {
  return `The mark on the map was taken off: it was on ${SITE_LABELS[point.site] ?? point.site}, and the body site is now ${
    site ? SITE_LABELS[site] ?? site : 'not stated'
  }.`
}

/** A lesion's pin label: its number, where it is and, when the model's risk rose, that too (the
 * pin's red and triangle say it to the eye). */
export function pinLabel(n: number, place: string, riskRose: boolean): string {
  return `Lesion ${n}: ${place}${riskRose ? ', risk rose' : ''}`
}

/** Whether the new lesion's form holds work that leaving the page would lose: a point placed on
 * the map, a body site or side chosen, or a location typed. */
export function newLesionUnsaved(form: { point: MapPoint | null; site: string; side: string; location: string }): boolean {
  return form.point !== null || form.site !== '' || form.side !== '' || form.location.trim() !== ''
}

/** What deleting a lesion takes with it, said in its confirm box before anything is deleted:
 * the lesion (its number and place), its visits with their images, its confirmed diagnosis. */
export function lesionDeleteText(n: number, place: string, nVisits: number, diagnosis: { code: string; method: string } | null): string {
  const parts = [`lesion ${n} (${place})`]
  if (nVisits > 0) parts.push(`its ${nVisits} visit${nVisits === 1 ? '' : 's'} with their images`)
  if (diagnosis) parts.push(`its confirmed diagnosis (${diagnosis.code}, ${diagnosis.method})`)
  const what = parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`
  return `This deletes ${what}. It cannot be undone; the patient and their other lesions stay.`
}

/** "Correct reference": the patient's reference typed again (a name typed into it by mistake, a
 * wrong record number). The server keeps the rules of a new patient (409: another patient's). */
export function RefCorrection({ id, current, onSaved }: { id: number; current: string; onSaved: (ref: string) => void }) {
  const ids = useId()
  const [open, setOpen] = useState(false)
  const [ref, setRef] = useState(current)
  const { busy, error, setError, submit } = useFormAction()
  const inputRef = useRef<HTMLInputElement | null>(null)
  const openRef = useRef<HTMLButtonElement | null>(null)
  const [toggled, setToggled] = useState(false)
  useEffect(() => {
    if (!toggled) return
    if (open) inputRef.current?.focus()
    else openRef.current?.focus()
  }, [open, toggled])
  // a refused save (a 409: another patient's reference): back to the input, which says it is
  // invalid, so the focus is not left on <body> while the Save button is disabled; the error is
  // read with the input (its description), so it is no alert too (it would be read twice)
  useEffect(() => {
    if (error) inputRef.current?.focus()
  }, [error])
  useUnsavedGuard(open && ref.trim() !== current, REF_LEAVE_MESSAGE)
  const close = () => {
    setToggled(true)
    setOpen(false)
    setError(null)
  }
  const onSave = async (e: FormEvent) => {
    e.preventDefault()
    const next = ref.trim()
    if (!next) {
      setError('Type the reference (1 to 64 characters).')
      return
    }
    await submit(async () => {
      try {
        await updatePatientRef(id, next)
      } catch (err) {
        throw failed('Could not save the reference', err)
      }
      close()
      onSaved(next)
    })
  }
  if (!open)
    return (
      <button
        type="button"
        className="btn btn-link"
        ref={openRef}
        onClick={() => {
          setRef(current)
          setToggled(true)
          setOpen(true)
        }}
        data-testid="ref-correct"
      >
        Correct reference…
      </button>
    )
  return (
    <form className="confirm-box" onSubmit={onSave} noValidate onKeyDown={(e) => e.key === 'Escape' && close()} data-testid="ref-correct-form">
      <div className="field">
        <label htmlFor={`${ids}-ref`}>Patient reference</label>
        <input
          id={`${ids}-ref`}
          ref={inputRef}
          value={ref}
          maxLength={64}
          onChange={(e) => setRef(e.target.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? `${ids}-ref-hint ${ids}-ref-error` : `${ids}-ref-hint`}
          data-testid="ref-correct-input"
        />
        <p className="hint" id={`${ids}-ref-hint`}>
          The clinic’s own pseudonymous reference (e.g. the record number): no names. The old reference is removed
          from the database; the change is written to the audit log.
        </p>
      </div>
      <ErrorBox quiet error={error} id={`${ids}-ref-error`} />
      <div className="result-actions">
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="ref-correct-save">
          Save reference
        </button>
        <button type="button" className="btn btn-secondary" onClick={close} data-testid="ref-correct-cancel">
          Cancel
        </button>
      </div>
    </form>
  )
}

/** One lesion's correction, opened from its row: its location and side edited, or the lesion
 * deleted after a confirm naming what goes. The body site is not edited: its visits were
 * assessed with it. */
export function LesionCorrection({ lesion, n, mode, onDone, onCancel }: { lesion: Lesion; n: number; mode: 'edit' | 'delete'; onDone: (said: string) => void; onCancel: () => void }) {
  const ids = useId()
  const [location, setLocation] = useState(lesion.location ?? '')
  const [side, setSide] = useState<string>(lesion.side ?? '')
  const { busy, error, submit } = useFormAction()
  const firstRef = useRef<HTMLElement | null>(null)
  // the first field or button takes the focus: the delete button; in the edit form its first
  // field in the page's order, Side (the list ChoiceField draws in `sideRowRef`)
  const sideRowRef = useRef<HTMLDivElement | null>(null)
  useEffect(() => {
    const first = mode === 'edit' ? sideRowRef.current?.querySelector('select') : firstRef.current
    first?.focus()
  }, [mode, lesion.id])
  // a failed save or delete: the focus goes to what went wrong (the button pressed is disabled
  // while it ran, which dropped the focus to <body>); it is read as the focus arrives, so it is no
  // alert too (read twice)
  const errorRef = useRef<HTMLDivElement | null>(null)
  useEffect(() => {
    if (error) errorRef.current?.focus()
  }, [error])
  const changed = { location: location.trim() !== (lesion.location ?? ''), side: asSide(side) !== (lesion.side ?? null) }
  // the pin as it will be saved: moved to a new side (onSave), else where it is saved now, so that
  // a saved pin that contradicts the saved side is warned about when the form opens
  const editWarning = sideWarning(pinPoint(lesion.map, changed.side ? side : ''), side, 'the lesion’s pin on the body map')
  useUnsavedGuard(mode === 'edit' && (changed.location || changed.side), LESION_EDIT_LEAVE_MESSAGE)
  const errorBox = error && (
    <div ref={errorRef} tabIndex={-1} id={`${ids}-error`} data-testid="lesion-correction-error">
      <ErrorBox quiet error={error} />
    </div>
  )
  const place = lesionPlace(lesion, SITE_LABELS)
  const onKey = (e: KeyboardEvent<HTMLElement>) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      onCancel()
    }
  }
  if (mode === 'delete')
    return (
      <div
        className="confirm-box"
        role="alertdialog"
        aria-labelledby={`${ids}-what`}
        aria-describedby={error ? `${ids}-error` : undefined}
        onKeyDown={(e) => {
          onKey(e)
          trapTab(e)
        }}
        data-testid="lesion-delete-box"
      >
        <p id={`${ids}-what`}>
          <strong data-testid="lesion-delete-text">{lesionDeleteText(n, place, lesion.n_visits, lesion.diagnosis)}</strong>
        </p>
        {errorBox}
        <div className="result-actions">
          <button
            type="button"
            className="btn btn-danger"
            disabled={busy}
            ref={(el) => {
              firstRef.current = el
            }}
            onClick={() => submit(async () => {
              try {
                await deleteLesion(lesion.id)
              } catch (err) {
                // gone already (another tab, another user): its row goes with a reload
                if (err instanceof ApiError && err.status === 404) {
                  onDone(`Lesion ${n} had already been deleted.`)
                  return
                }
                throw failed(`Could not delete lesion ${n}`, err)
              }
              onDone(`Lesion ${n} deleted.`)
            })}
            data-testid="lesion-delete-confirm"
          >
            Delete lesion {n} permanently
          </button>
          <button type="button" className="btn btn-secondary" onClick={onCancel} data-testid="lesion-delete-cancel">
            Cancel
          </button>
        </div>
      </div>
    )
  const onSave = async (e: FormEvent) => {
    e.preventDefault()
    // a new side moves the pin to match it (as the new lesion's form moves its mark): the side
    // and the pin never say different things
    const moved = changed.side ? mirroredMap(lesion.map, side) : null
    if (!changed.location && !changed.side) {
      onDone(lesionEditText(n, changed, null))
      return
    }
    const change: LesionChange = { location: location.trim() || null, side: asSide(side) }
    if (moved) change.map = moved.map
    await submit(async () => {
      try {
        await updateLesion(lesion.id, change)
      } catch (err) {
        throw failed(`Could not save the location of lesion ${n}`, err)
      }
      onDone(lesionEditText(n, changed, moved ? moved.part : null))
    })
  }
  return (
    <form className="confirm-box" onSubmit={onSave} noValidate onKeyDown={onKey} aria-labelledby={`${ids}-edit`} data-testid="lesion-edit-form">
      <p id={`${ids}-edit`}>
        <strong>Edit the location of lesion {n}</strong>
      </p>
      <p className="hint">
        The body site ({lesion.body_site ? (SITE_LABELS[lesion.body_site] ?? lesion.body_site) : 'not stated'}) is not changed here:
        its visits were assessed with it. A lesion recorded at the wrong site is added again at the right one, its
        photos uploaded there, and this one deleted.
      </p>
      <div className="field-row" ref={sideRowRef} data-testid="lesion-edit-side-row">
        <ChoiceField
          id={`${ids}-side`}
          label="Side"
          value={side}
          onChange={setSide}
          choices={SIDES}
          testId="lesion-edit-side"
          describedBy={editWarning ? `${ids}-side-warning` : undefined}
        >
          <SideWarning text={editWarning} id={`${ids}-side-warning`} testId="lesion-edit-side-warning" />
        </ChoiceField>
      </div>
      <div className="field">
        <label htmlFor={`${ids}-loc`}>Location (free text)</label>
        <input
          id={`${ids}-loc`}
          value={location}
          maxLength={200}
          onChange={(e) => setLocation(e.target.value)}
          data-testid="lesion-edit-location"
        />
      </div>
      {errorBox}
      <div className="result-actions">
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="lesion-edit-save">
          Save location
        </button>
        <button type="button" className="btn btn-secondary" onClick={onCancel} data-testid="lesion-edit-cancel">
          Cancel
        </button>
      </div>
    </form>
  )
}

/** One patient: the lesion map (pins), the list of lesions, a new lesion, export and delete. */
export function ClinicPatientPage({ id }: { id: number }) {
  const { session } = useClinic()
  const patient = useLoad(() => getPatient(id), String(id))
  const ids = useId()
  const [point, setPoint] = useState<MapPoint | null>(null)
  const [site, setSite] = useState('')
  const [side, setSide] = useState('')
  const [location, setLocation] = useState('')
  // what last changed the mark or the fields beside it, said with where the mark is (a live region)
  const [mapNote, setMapNote] = useState('')
  // whether an arrow key last moved the mark (the placement then says how far from the middle)
  const [moved, setMoved] = useState(false)
  // the arrow key that last could not move the mark, and how many times in a row
  const blockedRef = useRef<{ key: string; presses: number } | null>(null)
  // a mark taken off because the body site chosen in the list no longer fits it: put back if the
  // list comes back to a site that fits (the list is browsed with the arrow keys, one change a step)
  const setAsideRef = useRef<MapPoint | null>(null)
  // whether the Side shown was filled in by the map (a mark on an arm, leg…), not chosen by the
  // user: cleared again when the mark is put where there is no side (the trunk's middle, the head)
  const sideFromMapRef = useRef(false)
  const { busy, error, setError, submit } = useFormAction()
  // a failed delete: said in the confirm box, where the user is (not in the new lesion's form)
  const [deleteError, setDeleteError] = useState<string | null>(null)
  const deleteErrorRef = useRef<HTMLDivElement | null>(null)
  useEffect(() => {
    if (deleteError) deleteErrorRef.current?.focus()
  }, [deleteError])
  useUnsavedGuard(newLesionUnsaved({ point, site, side, location }), NEW_LESION_LEAVE_MESSAGE)
  const [confirming, setConfirming] = useState(false)
  const [confirmRef, setConfirmRef] = useState('')
  const deleteRef = useRef<HTMLButtonElement | null>(null)
  const confirmInputRef = useRef<HTMLInputElement | null>(null)
  // the confirm box was opened here: its input takes focus; closed without deleting: the button
  // that opened it does (it is shown again), so focus is not left on <body>
  const [boxToggled, setBoxToggled] = useState(false)
  useEffect(() => {
    if (!boxToggled) return
    if (confirming) confirmInputRef.current?.focus()
    else deleteRef.current?.focus()
  }, [confirming, boxToggled])
  const openConfirm = () => {
    setBoxToggled(true)
    setConfirming(true)
  }
  const closeConfirm = () => {
    setBoxToggled(true)
    setConfirming(false)
    setConfirmRef('')
    setDeleteError(null)
  }
  const onConfirmKey = (e: KeyboardEvent<HTMLElement>) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      closeConfirm()
    }
    trapTab(e)
  }

  const p = patient.data
  const isAdmin = session?.user.role === 'admin'
  // the lesion being corrected (its row's "Edit location" / "Delete lesion…"), and what the last
  // correction did (a live region)
  const [correcting, setCorrecting] = useState<{ id: number; mode: 'edit' | 'delete' } | null>(null)
  const [corrected, setCorrected] = useRepeatableStatus()
  const actionRefs = useRef(new Map<string, HTMLButtonElement | null>())
  const lesionsHeadingRef = useRef<HTMLHeadingElement | null>(null)
  const closeCorrection = () => {
    const was = correcting
    setCorrecting(null)
    if (was) actionRefs.current.get(`${was.mode}-${was.id}`)?.focus()
  }

  const pins: Pin[] = (p?.lesions ?? [])
    .filter((l) => l.map)
    .map((l, i) => ({
      id: l.id,
      view: l.map!.view,
      x: l.map!.x * FIGURE.width, // the API keeps map points as fractions of the figure
      y: l.map!.y * FIGURE.height,
      label: pinLabel(i + 1, lesionPlace(l, SITE_LABELS), l.risk_rose),
      alert: l.risk_rose,
    }))
  // the new lesion's mark: a tap on or near it places it again (it opens nothing)
  if (point) pins.push({ id: 0, view: point.view, x: point.x, y: point.y, label: 'New lesion (not saved yet)', selected: true, inert: true })

  // the mark, the Body site and the Side say the same: a mark placed sets the site (and the side,
  // on an arm, leg, hand, foot or side of the trunk); a side chosen moves a mark on the other
  // side's arm (leg…) to the same place on this side's; a site chosen that the mark's region does
  // not fit takes the mark off (and says so)
  const onPoint = (pt: MapPoint, how?: 'move') => {
    setAsideRef.current = null
    blockedRef.current = null
    setMoved(how === 'move')
    setPoint(pt)
    setSite(pt.site)
    const ptSide = pointSide(pt)
    if (ptSide && ptSide !== side) {
      sideFromMapRef.current = true
      setSide(ptSide)
      setMapNote(`Side set to ${ptSide === 'left' ? 'Left' : 'Right'}.`)
    } else if (!ptSide && side && sideFromMapRef.current) {
      // the map said the side, and this place has none: not left saying the old one (a side the
      // user chose is never cleared)
      sideFromMapRef.current = false
      setSide('')
      setMapNote(`Side cleared: it was filled in from the map (${SIDES.find((o) => o.value === side)?.label ?? side}); choose a side if one applies.`)
    } else setMapNote('')
  }
  const onSide = (v: string) => {
    sideFromMapRef.current = false // the user's choice
    blockedRef.current = null
    setMoved(false)
    setSide(v)
    if (!point || (v !== 'left' && v !== 'right')) return
    const moved = pointOnSide(point, v)
    if (moved === point) return
    setPoint(moved)
    setMapNote(`The mark moved to ${pointPart(moved)} to match the side.`)
  }
  const onSite = (v: string) => {
    setSite(v)
    blockedRef.current = null
    setMoved(false)
    const aside = setAsideRef.current
    if (point && !siteFitsPoint(v, point)) {
      setAsideRef.current = point
      setPoint(null)
      setMapNote(takenOffNote(point, v))
    } else if (!point && aside && siteFitsPoint(v, aside)) {
      setAsideRef.current = null
      setPoint(aside)
      setMapNote('The mark is back on the map.')
    } else if (!point && aside) {
      // still set aside, and the list moved on (arrowing through it): the note says the site now
      setMapNote(takenOffNote(aside, v))
    }
  }
  const onMoveBlocked = (pt: MapPoint, direction: ArrowDirection) => {
    const key = `${pt.view} ${pt.x} ${pt.y} ${direction}`
    const presses = blockedRef.current?.key === key ? blockedRef.current.presses + 1 : 1
    blockedRef.current = { key, presses }
    setMoved(false)
    setMapNote(edgeText(pt, direction, presses))
  }
  const newSideWarning = sideWarning(point, side)

  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    if (!point && !site && !location.trim()) {
      setError('Tap the body map, choose a body site or describe where the lesion is.')
      return
    }
    await submit(async () => {
      const l = await createLesion(id, {
        body_site: site || null,
        side: asSide(side),
        location: location.trim() || null,
        map: point ? { view: point.view, x: round3(point.x / FIGURE.width), y: round3(point.y / FIGURE.height) } : null,
      })
      setAppHash(window, clinicHref.lesion(l.id)) // saved: the leave guard has nothing to ask
    })
  }

  const onDelete = async () => {
    setDeleteError(null)
    try {
      await deletePatient(id)
      // said on the patient list, where this page goes (and focus with it, to the page)
      if (p) announce(`Patient ${p.ref} deleted.`, clinicHref.patients)
      setAppHash(window, clinicHref.patients) // the patient is gone: so is any unsaved new lesion
    } catch (err) {
      setDeleteError((err as Error).message)
    }
  }

  if (notFound(patient.error)) return <RecordNotFound what="Patient" />
  if (patient.error) return <ErrorBox error={patient.error} what="Could not load the patient." />
  if (!p) return <p className="muted">Loading…</p>

  return (
    <div className="clinic-page" data-testid="patient-page" data-patient-id={p.id}>
      <p className="crumbs">
        <a href={clinicHref.patients}>Patients</a> ›
      </p>
      <h1 className="page-title">
        Patient <span data-testid="patient-ref">{p.ref}</span>
      </h1>
      <p className="muted">Added {formatTimestamp(p.created_at)}</p>
      <RefCorrection
        id={p.id}
        current={p.ref}
        onSaved={(ref) => {
          setCorrected(`Reference corrected to ${ref}.`)
          patient.reload()
        }}
      />
      <p className="visually-hidden" role="status" data-testid="correction-status">
        {corrected}
      </p>

      <div className="two-col clinic-map-grid">
        <section className="card-block" aria-labelledby={`${ids}-map`}>
          <h2 id={`${ids}-map`}>Lesion map</h2>
          <p className="hint">
            Pins show this patient’s lesions (red, in a triangle: the model’s risk rose between visits). Tap a pin
            to open the lesion; tap the body to place a new one. On a touch screen, a tap just beside a pin asks
            whether you meant that lesion or a new one there.
          </p>
          <p className="hint" id={`${ids}-map-keys`} data-testid="bodymap-keys-hint">
            With a keyboard: Tab to a part of the body and press Enter to place the new lesion in its middle (on
            the side chosen under Side, if it has one). Press Enter again for its next part: the other arm, leg or
            side, hands then feet, mouth then genital area, head then neck. Then the arrow keys move the mark
            within that part (Shift and an arrow key: bigger steps). The New lesion form says where the mark is.
          </p>
          <div data-testid="lesion-map">
            <BodyMap
              value={site}
              onChange={setSite}
              pins={pins}
              onPoint={onPoint}
              onPinSelect={(lid) => {
                if (lid) window.location.hash = clinicHref.lesion(lid)
              }}
              point={point}
              side={side}
              onMoveBlocked={onMoveBlocked}
              describedBy={`${ids}-map-keys`}
            />
          </div>
        </section>

        <section className="card-block" aria-labelledby={`${ids}-new`}>
          <h2 id={`${ids}-new`}>New lesion</h2>
          <form onSubmit={onCreate} noValidate data-testid="new-lesion-form">
            {/* a live region: a mark placed, moved or taken off by key or list is said */}
            <p className="hint" role="status" data-testid="new-lesion-point">
              {placementText(point, mapNote, moved)}
            </p>
            <div className="field-row">
              <ChoiceField id={`${ids}-site`} label="Body site" value={site} onChange={onSite} choices={SITE_CHOICES} testId="lesion-site" />
              <ChoiceField
                id={`${ids}-side`}
                label="Side"
                value={side}
                onChange={onSide}
                choices={SIDES}
                testId="lesion-side"
                describedBy={newSideWarning ? `${ids}-side-warning` : undefined}
              >
                <SideWarning text={newSideWarning} id={`${ids}-side-warning`} testId="lesion-side-warning" />
              </ChoiceField>
            </div>
            <div className="field">
              <label htmlFor={`${ids}-loc`}>Location (free text)</label>
              <input
                id={`${ids}-loc`}
                value={location}
                maxLength={200}
                placeholder="e.g. 3 cm below the left scapula"
                onChange={(e) => setLocation(e.target.value)}
                data-testid="lesion-location"
              />
            </div>
            <ErrorBox error={error} />
            <button type="submit" className="btn btn-primary" disabled={busy} data-testid="new-lesion-submit">
              Add lesion
            </button>
          </form>
        </section>
      </div>

      <section aria-labelledby={`${ids}-list`}>
        <h2 id={`${ids}-list`} ref={lesionsHeadingRef} tabIndex={-1}>
          Lesions
        </h2>
        <TableWrap>
          <table className="data-table clinic-table stack-narrow" data-testid="lesion-list">
            <caption data-testid="lesion-list-caption">{lesionListCaption(p.ref, p.lesions.length)}</caption>
            <thead>
              <tr>
                <th scope="col">Lesion</th>
                <th scope="col">Last assessed result</th>
                <th scope="col">Confirmed diagnosis</th>
                <th scope="col">Visits</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {p.lesions.length === 0 && <EmptyRow columns={5} text="No lesions yet." />}
              {p.lesions.map((l, i) => (
                <tr key={l.id} data-testid={`lesion-row-${l.id}`}>
                  <th scope="row">
                    <a href={clinicHref.lesion(l.id)} data-testid="lesion-link">
                      Lesion {i + 1}
                    </a>{' '}
                    <span className="muted">{lesionPlace(l, SITE_LABELS)}</span>
                  </th>
                  <td data-label="Last assessed result">
                    {l.latest_risk ? <TierBadge risk={l.latest_risk} p={l.latest_malignant_probability} testId="lesion-tier" /> : <span className="muted">no visit yet</span>}{' '}
                    <RiskRoseBadge rose={l.risk_rose} /> <RetakeBadge text={retakeNote(l) && RETAKE_LABEL} note={retakeNote(l)} />
                    {assessedOn(l) && (
                      <span className="muted" data-testid="lesion-assessed-on">
                        {' '}
                        ({assessedOn(l)})
                      </span>
                    )}
                  </td>
                  <td data-label="Confirmed diagnosis">{l.diagnosis ? `${l.diagnosis.code} (${l.diagnosis.method})` : <span className="muted">none recorded</span>}</td>
                  <td data-label="Visits">{l.n_visits}</td>
                  {/* not in the row's header: its name stays "Lesion 1 …", not the buttons' labels too */}
                  <td data-label="Actions">
                    <span className="lesion-row-actions">
                      <button
                        type="button"
                        className="btn btn-link"
                        ref={(el) => {
                          actionRefs.current.set(`edit-${l.id}`, el)
                        }}
                        onClick={() => setCorrecting({ id: l.id, mode: 'edit' })}
                        aria-label={`Edit location of lesion ${i + 1}`}
                        data-testid="lesion-edit"
                      >
                        Edit location
                      </button>{' '}
                      <button
                        type="button"
                        className="btn btn-link"
                        ref={(el) => {
                          actionRefs.current.set(`delete-${l.id}`, el)
                        }}
                        onClick={() => setCorrecting({ id: l.id, mode: 'delete' })}
                        aria-label={`Delete lesion ${i + 1}…`}
                        data-testid="lesion-delete"
                      >
                        Delete lesion…
                      </button>
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
        {(() => {
          const i = p.lesions.findIndex((l) => l.id === correcting?.id)
          if (!correcting || i < 0) return null
          return (
            <LesionCorrection
              key={`${correcting.mode}-${correcting.id}`}
              lesion={p.lesions[i]}
              n={i + 1}
              mode={correcting.mode}
              onCancel={closeCorrection}
              onDone={(said) => {
                setCorrecting(null)
                setCorrected(said)
                patient.reload()
                // an edited lesion's row stays: back to its button; a deleted one's is gone
                if (correcting.mode === 'edit') actionRefs.current.get(`edit-${correcting.id}`)?.focus()
                else lesionsHeadingRef.current?.focus()
              }}
            />
          )
        })()}
      </section>

      <section className="card-block" aria-labelledby={`${ids}-rights`}>
        <h2 id={`${ids}-rights`}>Patient data</h2>
        <p className="hint">
          The export holds everything stored about this patient: a JSON file and the images (stored without their
          metadata). Exports and deletions are written to the audit log.
        </p>
        <div className="result-actions">
          <a className="btn btn-secondary" href={patientExportUrl(p.id)} download data-testid="patient-export">
            Export this patient (ZIP)
          </a>
          {isAdmin && !confirming && (
            <button type="button" className="btn btn-danger" onClick={openConfirm} ref={deleteRef} data-testid="patient-delete">
              Delete this patient…
            </button>
          )}
        </div>
        {isAdmin && confirming && (
          <div
            className="confirm-box"
            role="alertdialog"
            aria-labelledby={`${ids}-confirm`}
            aria-describedby={deleteError ? `${ids}-delete-error` : undefined}
            onKeyDown={onConfirmKey}
            data-testid="delete-confirm-box"
          >
            <p id={`${ids}-confirm`}>
              <strong>This deletes the patient, every lesion, visit and image, and cannot be undone.</strong> Type the
              reference <code>{p.ref}</code> to confirm.
            </p>
            <input
              ref={confirmInputRef}
              value={confirmRef}
              onChange={(e) => setConfirmRef(e.target.value)}
              aria-label="Patient reference"
              data-testid="delete-confirm-input"
            />
            {deleteError && (
              // the focus moves here, so that it is read where the user is (in this box): no
              // role="alert" too (it would be read twice)
              <div ref={deleteErrorRef} tabIndex={-1} id={`${ids}-delete-error`} className="error-message" data-testid="delete-error">
                Could not delete the patient: {deleteError}
              </div>
            )}
            <div className="result-actions">
              <button type="button" className="btn btn-danger" disabled={confirmRef !== p.ref} onClick={onDelete} data-testid="delete-confirm">
                Delete permanently
              </button>
              <button type="button" className="btn btn-secondary" onClick={closeConfirm} data-testid="delete-cancel">
                Cancel
              </button>
            </div>
          </div>
        )}
      </section>
      <ClinicNotice />
    </div>
  )
}
