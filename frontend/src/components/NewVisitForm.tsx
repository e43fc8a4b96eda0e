import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { createVisit, NOTE_MAX } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { fieldErrorProps, refusedInput } from '../clinic/fieldErrors.ts'
import { focusLost, requestFocus } from '../clinic/focus.ts'
import { localDay } from '../clinic/format.ts'
import type { Visit } from '../clinic/types.ts'
import { SEXES, SITE_LABELS } from '../content.ts'
import { checkImageForm } from '../format.ts'
import { useFormAction } from '../hooks.ts'
import { REFUSED_TITLE, tooLargeAnswer, useImageUpload } from '../upload.ts'
import { ImageDrop } from './ImageDrop.tsx'
import { PatientFields } from './PatientFields.tsx'
import { Spinner } from './Spinner.tsx'
import { EARLIEST_VISIT_DATE, latestVisitDate, visitDate } from './VisitTimeline.tsx'

/** Whether a failed save refused the date the image was taken (the server names `taken_at`). */
export function dateRefused(err: unknown): boolean {
  return refusedInput(err) && /taken_at|date the image/i.test((err as Error).message)
}

const NO_IMAGE = 'Choose the image of this visit first.'

/** Runs `fn` after the next render is painted (focus on an element once its ARIA is updated). */
function afterRender(fn: () => void): void {
  requestAnimationFrame(() => fn())
}

/** What a new visit's form starts with. The age is never carried over (a visit years later would
 * be stored, and assessed, with the old age); the sex may be, from the latest visit that has one,
 * and the form says from which; the site starts empty: the server then uses the lesion's site
 * (`site_inherited`). */
export interface VisitDefaults {
  age: string
  sex: string
  /** the date of the visit the sex comes from (null: not carried over) */
  sexFrom: string | null
  site: string
}

/** The defaults of a new visit of a lesion whose visits (oldest first) are `visits`. */
export function visitDefaults(visits: Visit[]): VisitDefaults {
  const from = [...visits].reverse().find((v) => v.sex)
  return { age: '', sex: from?.sex ?? '', sexFrom: from ? visitDate(from) : null, site: '' }
}

/** What the carried-over sex says beside the fields, or null when nothing is carried over (or the
 * user changed it). */
export function carriedSexNote(defaults: VisitDefaults, sex: string): string | null {
  if (!defaults.sexFrom || !defaults.sex || sex !== defaults.sex) return null
  const label = SEXES.find((s) => s.value === sex)?.label ?? sex
  return `Sex (${label.toLowerCase()}) is taken from the visit of ${defaults.sexFrom}: check it.`
}

/** The sex the form shows and what it says about it: untouched (`chosen` null), the sex carried
 * over from the current visits (`defaults`, recomputed when visits are deleted or re-dated) and
 * the note naming that visit; chosen by the user, their choice and no note. */
export function sexField(defaults: VisitDefaults, chosen: string | null): { sex: string; note: string | null } {
  if (chosen !== null) return { sex: chosen, note: null }
  return { sex: defaults.sex, note: carriedSexNote(defaults, defaults.sex) }
}

/** The hint about the body site: left empty, the visit takes the lesion's site. */
export function siteHint(lesionSite: string | null): string {
  return lesionSite
    ? `Body site: leave it at “Not stated” to use the lesion’s site (${SITE_LABELS[lesionSite] ?? lesionSite}); choose one only where this photo is more specific.`
    : 'Body site: this lesion has none recorded; choose the site of this photo if known.'
}

/** Whether the form holds work that leaving the page would lose. */
export function hasUnsavedWork(form: { file: File | null; note: string; age: string; takenAt: string; sex: string; site: string }, defaults: VisitDefaults): boolean {
  return (
    form.file !== null ||
    form.note.trim() !== '' ||
    form.age.trim() !== '' ||
    form.takenAt !== '' ||
    form.sex !== defaults.sex ||
    form.site !== defaults.site
  )
}

// --- leaving the page with unsaved work -----------------------------------------------------------
// The app routes by the location hash (no router with a navigation blocker): a reload or closing
// the tab is asked about by `beforeunload`; a click on an in-app link (breadcrumbs, the clinic's
// navigation) is asked about before it is followed; Back / Forward is asked about at `popstate`,
// which comes before the `hashchange` the app's routing listens to: when the user stays, the
// page's address is put back there, so the app reads the address it already shows.

export const LEAVE_MESSAGE = 'The new visit is not saved: the chosen image and what you typed will be lost. Leave this page?'

interface AnchorLike {
  href: string
  target?: string
  hasAttribute?: (name: string) => boolean
}

export interface ClickLike {
  defaultPrevented: boolean
  button: number
  metaKey: boolean
  ctrlKey: boolean
  shiftKey: boolean
  altKey: boolean
  target: EventTarget | { closest?: (selector: string) => unknown } | null
}

/** The address a click would take this page to within the app (another hash of this document),
 * or null: not a plain left click on a link, a link opening elsewhere (new tab, download), or
 * one to another document (which `beforeunload` asks about). */
export function inAppLinkTarget(e: ClickLike, here: string): string | null {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return null
  const target = e.target as { closest?: (selector: string) => unknown } | null
  const a = (target?.closest?.('a[href]') ?? null) as AnchorLike | null
  if (!a || (a.target !== undefined && a.target !== '' && a.target !== '_self') || a.hasAttribute?.('download') === true) return null
  const to = new URL(a.href, here)
  const now = new URL(here)
  if (to.origin !== now.origin || to.pathname !== now.pathname || to.search !== now.search) return null
  return to.hash !== now.hash ? to.href : null
}

// Work that leaving would lose, for what the app does itself (signing out) and for the leave
// guard: each shown form (a new visit, a diagnosis, a visit's note or date) registers whether it
// has unsaved work and what leaving would lose; `confirmDiscardUnsaved` asks once before it is lost.
interface UnsavedForm {
  isDirty: () => boolean
  message: string
}
const unsavedForms = new Set<UnsavedForm>()

/** The question when more than one shown form has unsaved work. */
export const LEAVE_MESSAGE_SEVERAL = 'Some of your work on this page is not saved (in more than one form): what you typed will be lost. Leave this page?'

/** Registers a form's `isDirty` and the question to ask before its work is lost (by default the
 * new visit's); returns the unregistering. */
export function registerUnsaved(isDirty: () => boolean, message: string = LEAVE_MESSAGE): () => void {
  const form = { isDirty, message }
  unsavedForms.add(form)
  return () => {
    unsavedForms.delete(form)
  }
}

/** Whether some shown form has unsaved work. */
export function hasUnsavedForms(): boolean {
  return [...unsavedForms].some((f) => f.isDirty())
}

/** The question to ask before unsaved work is lost: the dirty form's own, one for several, or
 * null when nothing is unsaved. */
export function unsavedMessage(): string | null {
  const dirty = new Set([...unsavedForms].filter((f) => f.isDirty()).map((f) => f.message))
  if (dirty.size === 0) return null
  return dirty.size === 1 ? [...dirty][0] : LEAVE_MESSAGE_SEVERAL
}

/** Asks (`ask`) once whether to discard unsaved work, where there is some: true to go on. */
export function confirmDiscardUnsaved(ask: (message: string) => boolean): boolean {
  const message = unsavedMessage()
  return message === null || ask(message)
}

// An address the app itself goes to (after signing out): the guard lets it pass without asking.
let appTarget: string | null = null

/** Sets the location hash on behalf of the app (the user already agreed, or nothing is unsaved):
 * the leave guard does not ask about it. */
export function setAppHash(win: { location: { href: string; hash: string }; addEventListener: EventTarget['addEventListener'] }, hash: string): void {
  const to = new URL(hash, win.location.href).href
  if (to === win.location.href) return
  appTarget = to
  // once there, a later Back / Forward to the same address is the user's again
  win.addEventListener('hashchange', () => (appTarget = null), { once: true })
  win.location.hash = hash
}

export interface GuardWindow {
  addEventListener: EventTarget['addEventListener']
  removeEventListener: EventTarget['removeEventListener']
  location: { href: string }
  history: { pushState: (data: unknown, unused: string, url: string) => void }
}

/** Asks (`ask`, e.g. `window.confirm`, with `message()`) before the page is left while
 * `isDirty()`: see above. Returns the cleanup. */
export function installLeaveGuard(
  win: GuardWindow,
  doc: Pick<EventTarget, 'addEventListener' | 'removeEventListener'>,
  isDirty: () => boolean,
  ask: (message: string) => boolean,
  message: () => string = () => LEAVE_MESSAGE,
): () => void {
  let here = win.location.href // the page's address, put back when the user stays
  let confirmed = false // a link click the user already agreed to: its navigation passes
  const onBeforeUnload = (e: Event) => {
    if (!isDirty()) return
    e.preventDefault()
    ;(e as BeforeUnloadEvent).returnValue = '' // older browsers
  }
  const onClick = (e: Event) => {
    if (!isDirty() || !inAppLinkTarget(e as unknown as ClickLike, win.location.href)) return
    if (ask(message())) confirmed = true
    else e.preventDefault()
  }
  const onPopState = () => {
    if (appTarget !== null && appTarget === win.location.href) {
      appTarget = null // the app's own navigation (the user agreed, or nothing was unsaved)
      return
    }
    if (confirmed || win.location.href === here || !isDirty() || ask(message())) return
    win.history.pushState(null, '', here) // stay: the hash change that follows finds this address
  }
  const onHashChange = () => {
    confirmed = false
    here = win.location.href
  }
  win.addEventListener('beforeunload', onBeforeUnload)
  win.addEventListener('popstate', onPopState)
  win.addEventListener('hashchange', onHashChange)
  doc.addEventListener('click', onClick, true)
  return () => {
    win.removeEventListener('beforeunload', onBeforeUnload)
    win.removeEventListener('popstate', onPopState)
    win.removeEventListener('hashchange', onHashChange)
    doc.removeEventListener('click', onClick, true)
  }
}

// One leave guard on this window while some form is registered (so that two forms on a page ask
// once, with `unsavedMessage`'s question), however many forms use it.
let guardUsers = 0
let uninstallGuard: (() => void) | null = null

/** While the component is shown: registers its unsaved work (`dirty`, and `message`, the question
 * to ask before it is lost) for signing out and switching user (`confirmDiscardUnsaved`), and
 * asks before a reload, a link or Back / Forward loses it (`installLeaveGuard`). */
export function useUnsavedGuard(dirty: boolean, message: string = LEAVE_MESSAGE): void {
  const dirtyRef = useRef(dirty)
  dirtyRef.current = dirty
  useEffect(() => {
    const unregister = registerUnsaved(() => dirtyRef.current, message)
    if (guardUsers++ === 0) {
      uninstallGuard = installLeaveGuard(window, document, hasUnsavedForms, (m) => window.confirm(m), () => unsavedMessage() ?? message)
    }
    return () => {
      unregister()
      if (--guardUsers === 0) {
        uninstallGuard?.()
        uninstallGuard = null
      }
    }
  }, [message])
}

interface Props {
  lesionId: number
  /** the lesion's body site: what the visit takes when its own site is left empty */
  lesionSite: string | null
  /** what the form starts with (see `visitDefaults`) */
  defaults: VisitDefaults
  onSaved: (visit: Visit) => void
}

/** A new visit of a lesion: image + age/sex/site + note; the server assesses and stores it. */
export function NewVisitForm({ lesionId, lesionSite, defaults, onSaved }: Props) {
  const ids = useId()
  // the image, and why it cannot be sent (format, size against GET /health's limit): checked
  // before the upload as the Assess page does
  const upload = useImageUpload()
  const { file, preview, refused } = upload
  // age and site start empty; the sex follows the current visits until the user chooses one
  const [age, setAge] = useState(defaults.age)
  const [chosenSex, setChosenSex] = useState<string | null>(null)
  const { sex, note: carried } = sexField(defaults, chosenSex)
  const [site, setSite] = useState(defaults.site)
  const [note, setNote] = useState('')
  const [takenAt, setTakenAt] = useState('')
  const { busy, error, setError, submit } = useFormAction()
  // the form's own mistake about the age: said under the field, which is marked invalid
  const [ageError, setAgeError] = useState<string | null>(null)
  // whether the server refused the date typed (the error below is tied to the date field)
  const [dateInvalid, setDateInvalid] = useState(false)
  const ageRef = useRef<HTMLInputElement | null>(null)
  const dateRef = useRef<HTMLInputElement | null>(null)
  const errorRef = useRef<HTMLDivElement | null>(null)
  // set at once on submit (state is only read at the next render): a second press while saving is ignored
  const busyRef = useRef(false)
  const errorId = `${ids}-error`
  useUnsavedGuard(hasUnsavedWork({ file, note, age, takenAt, sex, site }, defaults))

  const chooseFile = (f: File | null | undefined) => {
    if (!f) return
    setError(null)
    upload.choose(f)
  }

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    if (busyRef.current) return // saving: the button says so (aria-disabled), and keeps focus
    setAgeError(null)
    setDateInvalid(false)
    if (!file) {
      setError(NO_IMAGE)
      afterRender(() => errorRef.current?.focus())
      return
    }
    const checked = checkImageForm(file, age, ageRef.current?.validity.badInput, NO_IMAGE)
    if ('error' in checked) {
      // the age (the one field checked here): said at the field, which takes focus once it is
      // tied to the message, so that the message is read with it
      setError(null)
      setAgeError(checked.error)
      afterRender(() => ageRef.current?.focus())
      return
    }
    if (!upload.ready) return // the button is disabled: refused, or not read yet
    const image = checked.file
    busyRef.current = true
    let badDate = false
    await submit(
      async () => {
        const saved = await createVisit(lesionId, { image, age: checked.age, sex: sex || null, site: site || null, note, taken_at: takenAt || localDay() }).catch(
          (err: unknown) => {
            // the limit was not known before sending (health not read): the same words as above;
            // any other refusal (a note too long) in its own words
            const tooLarge = tooLargeAnswer(err, image)
            if (tooLarge) throw new Error(tooLarge)
            badDate = dateRefused(err)
            setDateInvalid(badDate)
            throw err
          },
        )
        upload.clear()
        setNote('')
        setTakenAt('')
        setAge('')
        setChosenSex(null)
        setSite(defaults.site)
        requestFocus('visit', String(saved.id))
        requestFocus('visit-saved', String(saved.id)) // the timeline says it was saved, and its result
        onSaved(saved)
      },
      // not saved: focus on the date the server refused, else on the message (when focus was
      // lost meanwhile), after the render that shows the message
      () =>
        afterRender(() => {
          if (badDate) dateRef.current?.focus()
          else if (focusLost()) errorRef.current?.focus()
        }),
    )
    busyRef.current = false
  }

  return (
    <form className="new-visit" onSubmit={onSubmit} noValidate data-testid="new-visit-form">
      <div className="two-col">
        <ImageDrop file={file} preview={preview} onFile={chooseFile} />
        <div>
          <PatientFields
            legend="About the patient at this visit (optional)"
            age={age}
            sex={sex}
            site={site}
            onAge={(v) => {
              setAge(v)
              setAgeError(null)
            }}
            onSex={setChosenSex}
            onSite={setSite}
            ageRef={ageRef}
            ageError={ageError}
            bodyMap={false}
          >
            <p className="hint" data-testid="visit-age-hint">
              Age: enter the patient’s age today (it is not taken from earlier visits).
            </p>
            {carried && (
              <p className="carried-note" role="status" data-testid="visit-sex-carried">
                {carried}
              </p>
            )}
            <p className="hint" data-testid="visit-site-hint">
              {siteHint(lesionSite)}
            </p>
          </PatientFields>
          <div className="field">
            <label htmlFor={`${ids}-date`}>Date the image was taken (optional, default today)</label>
            <input
              id={`${ids}-date`}
              type="date"
              ref={dateRef}
              min={EARLIEST_VISIT_DATE}
              max={latestVisitDate()}
              value={takenAt}
              onChange={(e) => {
                setTakenAt(e.target.value)
                setDateInvalid(false)
              }}
              {...fieldErrorProps(error && dateInvalid ? errorId : null, Boolean(error) && dateInvalid)}
              data-testid="visit-date"
            />
          </div>
          <div className="field">
            <label htmlFor={`${ids}-note`}>Clinician note (optional)</label>
            <textarea
              id={`${ids}-note`}
              rows={3}
              maxLength={NOTE_MAX}
              value={note}
              onChange={(e) => setNote(e.target.value)}
              aria-describedby={`${ids}-note-hint`}
              data-testid="visit-note-input"
            />
            <p className="hint" id={`${ids}-note-hint`} data-testid="visit-note-count">
              {note.length.toLocaleString('en')} of {NOTE_MAX.toLocaleString('en')} characters at most.
            </p>
          </div>
        </div>
      </div>
      <ErrorBox error={refused} what={REFUSED_TITLE} testId="visit-file-refused" />
      {error && (
        <div ref={errorRef} tabIndex={-1}>
          <ErrorBox error={error} what="Could not save the visit." id={errorId} />
        </div>
      )}
      {/* a polite status present before the busy line is put in it, so that it is said */}
      <div role="status" data-testid="visit-busy-status">
        {busy && <Spinner label="Assessing and saving the visit…" live={false} />}
      </div>
      {/* while saving the button keeps focus (aria-disabled, not disabled: a disabled button
          drops it to the page); a press then does nothing */}
      <button type="submit" className="btn btn-primary" disabled={!busy && !upload.ready} aria-disabled={busy || undefined} data-testid="visit-submit">
        {busy ? 'Saving…' : 'Assess and save visit'}
      </button>
    </form>
  )
}
