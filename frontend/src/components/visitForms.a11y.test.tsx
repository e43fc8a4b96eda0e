// Findings of the WCAG 2.2 AA audit of the lesion page's forms: a New visit refused (an age out of
// range, a date the server refuses) says so at the field, marked invalid, which takes focus; while
// it saves, the busy line is said and the submit button keeps focus; a saved visit is announced.
// A visit's "Edit note" opens into the text, closes with Cancel or Escape (asking before typed text
// is dropped) back onto the button, announces the save and ties its error to the text. An empty
// confirmed diagnosis ties its error to the field, which takes focus. The timeline scrolls the card
// that takes focus into view; the Compare view names its two opacity sliders apart and says the
// change when another visit is chosen; the spinner is a status.
//
// No DOM here (no jsdom, no testing library): a component runs in a one-component host
// (src/testing/hookHost.ts) that keeps React's contract for its hooks; the test reads the element
// tree it renders (child components stay unrendered elements, their props read) and acts as a
// browser would. Elements a handler focuses are stand-ins put in the refs the component gives them.

import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import * as clinicApi from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { focusRequested, onAnnounce } from '../clinic/focus.ts'
import { makeVisit } from '../clinic/testVisits.ts'
import type { Visit } from '../clinic/types.ts'
import { byTestId, has, walk, type El } from '../testing/tree.ts'
import * as upload from '../upload.ts'
import { DiagnosisForm } from './DiagnosisForm.tsx'
import { HeatmapViewer } from './HeatmapViewer.tsx'
import { NewVisitForm, visitDefaults } from './NewVisitForm.tsx'
import { Spinner } from './Spinner.tsx'
import { CompareVisits, NOTE_DISCARD_MESSAGE, showFocusedVisit, VisitNote, visitSavedMessage, VisitTimeline } from './VisitTimeline.tsx'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())

vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  createVisit: vi.fn(),
  updateVisitNote: vi.fn(),
  recordDiagnosis: vi.fn(),
}))
const api = vi.mocked(clinicApi)

// the image: chosen and read (the upload's own checks are tested in upload.test.ts)
vi.mock('../upload.ts', async (original) => ({
  ...(await original<typeof import('../upload.ts')>()),
  useImageUpload: vi.fn(),
}))

vi.mock('../hooks.ts', async (original) => ({
  ...(await original<typeof import('../hooks.ts')>()),
  useApiData: () => ({ data: null, error: null, loading: false }),
}))

// --- reading and using the rendered tree ------------------------------------------------------

/** The (first) element of component `fn` (`where` it is so). */
function byComponent(tree: unknown, fn: unknown, where: (el: El) => boolean = () => true): El {
  const hit = [...walk(tree)].find(({ el }) => el.type === fn && where(el))
  if (!hit) throw new Error('no such component')
  return hit.el
}

/** A stand-in for a focusable element; `focused` says whether it has focus. */
function fakeEl() {
  const el = {
    isConnected: true,
    validity: { badInput: false },
    focus: vi.fn(() => {
      ;(document as unknown as { activeElement: unknown }).activeElement = el
    }),
  }
  return el
}
/** Put `el` in the ref that the element `id` gives (the ref object lasts across renders). */
function attach(tree: unknown, id: string, el: unknown) {
  const ref = byTestId(tree, id).el.props.ref as { current: unknown } | undefined
  if (!ref || typeof ref !== 'object') throw new Error(`${id} has no ref`)
  ref.current = el
}

/** Submit the form around `id`, as pressing its submit button (or Enter in a field) does. */
function submitFormOf(render: () => unknown, id: string) {
  const form = [...byTestId(render(), id).above].reverse().find((a) => a.type === 'form')
  ;(form?.props.onSubmit as (e: unknown) => void)({ preventDefault: () => {} })
  render()
}
/** Press the button `id` as a browser does: nothing when disabled; else its onClick. */
function press(render: () => unknown, id: string) {
  const { el } = byTestId(render(), id)
  if (el.props.disabled) return
  ;(el.props.onClick as (e: unknown) => void)({ preventDefault: () => {} })
  render()
}
function type(render: () => unknown, id: string, value: string) {
  ;(byTestId(render(), id).el.props.onChange as (e: unknown) => void)({ target: { value } })
  render()
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0))

function deferred<T>() {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

// what runs "after the render" (setTimeout 0, requestAnimationFrame): run when the test says so,
// once it has rendered and put the stand-ins in place
let later: (() => void)[] = []
const runLater = () => {
  const due = later
  later = []
  due.forEach((fn) => fn())
}

const announced: string[] = []
let unsubscribe: () => void = () => {}
let unmount: (() => void) | null = null
const body = { isConnected: true }

beforeEach(() => {
  vi.resetAllMocks()
  later = []
  announced.length = 0
  unsubscribe = onAnnounce((a) => announced.push(a.text))
  vi.stubGlobal('requestAnimationFrame', (fn: FrameRequestCallback) => {
    later.push(() => fn(0))
    return 0
  })
  vi.stubGlobal('document', { body, activeElement: body, addEventListener: () => {}, removeEventListener: () => {} })
  vi.stubGlobal('window', {
    confirm: vi.fn(() => true),
    setTimeout: (fn: () => void) => {
      later.push(fn)
      return 0
    },
    clearTimeout: () => {},
    location: { hash: '#/clinic/lesions/70', href: 'http://x/#/clinic/lesions/70' },
    addEventListener: () => {},
    removeEventListener: () => {},
  })
  vi.mocked(upload.useImageUpload).mockReturnValue({
    file: new File(['x'], 'lesion.jpg', { type: 'image/jpeg' }),
    preview: null,
    refused: null,
    ready: true,
    choose: vi.fn(),
    clear: vi.fn(),
  } as unknown as ReturnType<typeof upload.useImageUpload>)
})

afterEach(() => {
  unmount?.()
  unmount = null
  unsubscribe()
  vi.unstubAllGlobals()
})

function mount<T>(render: () => T): () => T {
  const m = host.mount(render)
  unmount = m.unmount
  return m.result
}

const visits: Visit[] = [makeVisit(11, '2026-01-05'), makeVisit(12, '2026-06-05', { note: 'looks darker' }, { risk: 'high', malignant_probability: 0.712 })]

// --- New visit ----------------------------------------------------------------------------------

function newVisitForm() {
  const onSaved = vi.fn()
  const render = mount(() => NewVisitForm({ lesionId: 70, lesionSite: null, defaults: visitDefaults(visits), onSaved }))
  return { render, onSaved }
}
/** The age field's props (PatientFields renders it: `ageError` marks it invalid, tied to the message). */
const patientFields = (tree: unknown) => [...walk(tree)].find(({ el }) => typeof el.type === 'function' && el.type.name === 'PatientFields')!.el

describe('New visit: a refused age or date', () => {
  it('says an age out of range at the age field, which is marked invalid and takes focus', () => {
    const { render } = newVisitForm()
    const age = fakeEl()
    ;(patientFields(render()).props.ageRef as { current: unknown }).current = age
    ;(patientFields(render()).props.onAge as (v: string) => void)('250')
    render()
    submitFormOf(render, 'visit-submit')
    const tree = render()
    expect(patientFields(tree).props.ageError).toBe('Age must be a number of years from 0 to 120 (e.g. 45, or 1.5 for 18 months).')
    expect([...walk(tree)].some(({ el }) => el.type === ErrorBox && el.props.error)).toBe(false) // said once, at the field
    expect(api.createVisit).not.toHaveBeenCalled()
    expect(age.focus).not.toHaveBeenCalled() // after the render that ties the message to it
    runLater()
    expect(age.focus).toHaveBeenCalledTimes(1)
    // typing again clears it
    ;(patientFields(render()).props.onAge as (v: string) => void)('45')
    expect(patientFields(render()).props.ageError).toBeNull()
  })

  it('marks the date invalid, tied to the message, and focuses it when the server refuses the date', async () => {
    const { render } = newVisitForm()
    const date = fakeEl()
    attach(render(), 'visit-date', date)
    type(render, 'visit-date', '2030-01-01')
    api.createVisit.mockRejectedValue(new ApiError(422, "the date the image was taken (taken_at) '2030-01-01' lies in the future"))
    submitFormOf(render, 'visit-submit')
    await settle()
    const tree = render()
    const box = byComponent(tree, ErrorBox, (el) => Boolean(el.props.error))
    const input = byTestId(tree, 'visit-date').el
    expect(input.props['aria-invalid']).toBe(true)
    expect(input.props['aria-describedby']).toBe(box.props.id)
    expect(box.props.id).toBeTruthy()
    runLater()
    expect(date.focus).toHaveBeenCalledTimes(1)
    // another date: no longer marked
    type(render, 'visit-date', '2026-01-01')
    expect(byTestId(render(), 'visit-date').el.props['aria-invalid']).toBeUndefined()
  })

  it('puts focus on the message after another failure when focus was lost, else leaves it where it is', async () => {
    const { render } = newVisitForm()
    api.createVisit.mockRejectedValue(new ApiError(503, 'The server is busy.'))
    submitFormOf(render, 'visit-submit')
    await settle()
    let tree = render()
    expect(byTestId(tree, 'visit-date').el.props['aria-invalid']).toBeUndefined()
    const box = [...walk(tree)].find(({ el }) => el.props.tabIndex === -1 && [...walk(el.props.children)].some(({ el: c }) => c.type === ErrorBox))!.el
    const boxEl = fakeEl()
    ;(box.props.ref as { current: unknown }).current = boxEl
    runLater() // focus on <body>: the message takes it
    expect(boxEl.focus).toHaveBeenCalledTimes(1)

    const button = fakeEl()
    button.focus()
    submitFormOf(render, 'visit-submit')
    await settle()
    tree = render()
    runLater() // focus still on the button: left there (the message is an alert)
    expect(boxEl.focus).toHaveBeenCalledTimes(1)
    expect(document.activeElement).toBe(button)
  })
})

describe('New visit: while saving, and once saved', () => {
  it('keeps the submit button focusable while saving (aria-disabled) and ignores a second press', async () => {
    const { render, onSaved } = newVisitForm()
    const request = deferred<Visit>()
    api.createVisit.mockReturnValue(request.promise)
    // the busy status is in the page before its text is
    const idle = byTestId(render(), 'visit-busy-status').el
    expect(idle.props.role).toBe('status')
    expect(has(idle, 'spinner') || [...walk(idle.props.children)].some(({ el }) => el.type === Spinner)).toBe(false)

    submitFormOf(render, 'visit-submit')
    const busy = render()
    const button = byTestId(busy, 'visit-submit').el
    expect(button.props.disabled).toBeFalsy() // a disabled button would drop focus to the page
    expect(button.props['aria-disabled']).toBe(true)
    const status = byTestId(busy, 'visit-busy-status').el
    expect(status.props.role).toBe('status')
    const spinner = byComponent(status.props.children, Spinner)
    expect(spinner.props.label).toBe('Assessing and saving the visit…')
    expect(spinner.props.live).toBe(false) // inside the status: said once

    submitFormOf(render, 'visit-submit') // pressed again while saving
    expect(api.createVisit).toHaveBeenCalledTimes(1)

    const saved = makeVisit(13, '2026-12-01', {}, { risk: 'high', malignant_probability: 0.5 })
    request.resolve(saved)
    await settle()
    expect(onSaved).toHaveBeenCalledWith(saved)
    // the timeline focuses the new card and announces the save
    expect(focusRequested('visit', '13', false)).toBe(true)
    expect(focusRequested('visit-saved', '13')).toBe(true)
    expect(focusRequested('visit', '13')).toBe(true)
  })

  it('names the saved visit, its tier and malignant share in the announcement', () => {
    const saved = makeVisit(13, '2026-12-01', {}, { risk: 'high', malignant_probability: 0.712 })
    expect(visitSavedMessage(saved, [...visits, saved])).toMatch(/^Visit 3 of 3, .+, saved: High risk, malignant share 71\.2%\.$/)
    const refused = makeVisit(14, '2026-12-01', {}, { risk: 'cannot_assess' }) // its stored share is not said
    expect(visitSavedMessage(refused, [refused])).toMatch(/^Visit 1 of 1, .+, saved: Cannot assess\.$/)
  })
})

// --- a visit's note -----------------------------------------------------------------------------

function visitNote(ask: (m: string) => boolean = () => true) {
  const onSaved = vi.fn()
  const render = mount(() => VisitNote({ visit: visits[1], visits, onSaved, ask }))
  const editBtn = fakeEl()
  attach(render(), 'visit-note-edit', editBtn)
  return { render, onSaved, editBtn }
}
/** Open the editor ("Edit note"), with `area` as its text field. */
function openNote(render: () => unknown, area = fakeEl()) {
  press(render, 'visit-note-edit')
  attach(render(), 'visit-note-text', area)
  runLater()
  return area
}
const escape = (render: () => unknown, isComposing = false) => {
  const e = { key: 'Escape', preventDefault: vi.fn(), nativeEvent: { isComposing } }
  ;(byTestId(render(), 'visit-note-editor').el.props.onKeyDown as (e: unknown) => void)(e)
  render()
  return e
}

describe('a visit’s note', () => {
  it('names "Edit note" by its visit, as its neighbours are named', () => {
    const { render } = visitNote()
    expect(byTestId(render(), 'visit-note-edit').el.props['aria-label']).toMatch(/^Edit note of visit 2 of 2, /)
  })

  it('puts focus in the text when opened; Escape closes it, focus back on "Edit note"', () => {
    const { render, editBtn } = visitNote()
    const area = openNote(render)
    expect(area.focus).toHaveBeenCalledTimes(1)
    expect(byTestId(render(), 'visit-note-text').el.props.value).toBe('looks darker')
    const e = escape(render)
    expect(e.preventDefault).toHaveBeenCalled()
    expect(has(render(), 'visit-note-editor')).toBe(false)
    attach(render(), 'visit-note-edit', editBtn)
    runLater()
    expect(editBtn.focus).toHaveBeenCalledTimes(1)
  })

  it('leaves the editor open on the Escape that ends an input method’s composition (IME)', () => {
    const ask = vi.fn(() => true)
    const { render } = visitNote(ask)
    openNote(render)
    type(render, 'visit-note-text', 'looks darker, 大きい')
    const e = escape(render, true) // Japanese typing: Escape cancels the composition, not the note
    expect(e.preventDefault).not.toHaveBeenCalled()
    expect(ask).not.toHaveBeenCalled()
    expect(has(render(), 'visit-note-editor')).toBe(true)
    expect(byTestId(render(), 'visit-note-text').el.props.value).toBe('looks darker, 大きい')
    escape(render) // a plain Escape still cancels (asking first)
    expect(ask).toHaveBeenCalledTimes(1)
    expect(has(render(), 'visit-note-editor')).toBe(false)
  })

  it('asks before Escape or Cancel drops typed text; kept when the user says no', () => {
    const ask = vi.fn(() => false)
    const { render } = visitNote(ask)
    openNote(render)
    type(render, 'visit-note-text', 'looks darker, larger')
    escape(render)
    expect(ask).toHaveBeenCalledWith(NOTE_DISCARD_MESSAGE)
    expect(byTestId(render(), 'visit-note-text').el.props.value).toBe('looks darker, larger')
    press(render, 'visit-note-cancel')
    expect(ask).toHaveBeenCalledTimes(2)
    expect(has(render(), 'visit-note-editor')).toBe(true)
    ask.mockReturnValue(true)
    press(render, 'visit-note-cancel')
    expect(has(render(), 'visit-note-editor')).toBe(false)
    expect(api.updateVisitNote).not.toHaveBeenCalled()
  })

  it('after a save: focus on "Edit note", and "Note saved" announced', async () => {
    const { render, onSaved, editBtn } = visitNote()
    const area = openNote(render)
    type(render, 'visit-note-text', 'flat now')
    api.updateVisitNote.mockResolvedValue(visits[1])
    press(render, 'visit-note-save')
    await settle()
    render() // the button is back; the render's effect gives it focus
    expect(onSaved).toHaveBeenCalledTimes(1)
    expect(api.updateVisitNote).toHaveBeenCalledWith(12, 'flat now')
    expect(editBtn.focus).toHaveBeenCalledTimes(1)
    expect(document.activeElement).toBe(editBtn)
    expect(area.focus).toHaveBeenCalledTimes(1) // only when opened
    expect(announced).toEqual([expect.stringMatching(/^Note saved, visit 2 of 2, /)])
  })

  it('ties a save error to the text, which takes focus again; Save keeps focus while saving', async () => {
    const { render } = visitNote()
    const area = openNote(render)
    const request = deferred<Visit>()
    api.updateVisitNote.mockReturnValue(request.promise)
    press(render, 'visit-note-save')
    const save = byTestId(render(), 'visit-note-save').el
    expect(save.props.disabled).toBeFalsy()
    expect(save.props['aria-disabled']).toBe(true)
    press(render, 'visit-note-save') // ignored while saving
    expect(api.updateVisitNote).toHaveBeenCalledTimes(1)
    request.reject(new ApiError(422, 'the note is too long'))
    await settle()
    const tree = render()
    const box = byTestId(tree, 'visit-note-error').el
    const text = byTestId(tree, 'visit-note-text').el
    expect(text.props['aria-describedby']).toBe(box.props.id)
    expect(text.props['aria-invalid']).toBe(true)
    runLater()
    expect(area.focus).toHaveBeenCalledTimes(2)
    expect(announced).toEqual([])
  })
})

// --- confirmed diagnosis ------------------------------------------------------------------------

describe('confirmed diagnosis', () => {
  it('ties "Choose the confirmed diagnosis." to the diagnosis field, which takes focus', () => {
    const render = mount(() => DiagnosisForm({ lesionId: 70, diagnosis: null, onSaved: vi.fn() }))
    const select = fakeEl()
    attach(render(), 'diagnosis-code', select)
    submitFormOf(render, 'diagnosis-submit')
    const tree = render()
    const box = byComponent(tree, ErrorBox, (el) => Boolean(el.props.error))
    const field = byTestId(tree, 'diagnosis-code').el
    expect(box.props.error).toBe('Choose the confirmed diagnosis.')
    expect(field.props['aria-invalid']).toBe(true)
    expect(field.props['aria-describedby']).toBe(box.props.id)
    expect(box.props.id).toBeTruthy()
    runLater()
    expect(select.focus).toHaveBeenCalledTimes(1)
    expect(api.recordDiagnosis).not.toHaveBeenCalled()
    type(render, 'diagnosis-code', 'MEL')
    expect(byTestId(render(), 'diagnosis-code').el.props['aria-invalid']).toBeUndefined()
  })
})

// --- the timeline at 320 px, the Compare view, the spinner -------------------------------------

describe('the timeline scrolls the card that takes focus into view', () => {
  /** A timeline 320 px wide (scrolled to `scrollLeft`) and a card at `left`, 280 px wide. */
  function timeline(scrollLeft: number, left: number, keyboard = true) {
    const card = { getBoundingClientRect: () => ({ left, width: 280 }) }
    const item = { querySelector: () => card }
    const list = {
      scrollLeft,
      clientLeft: 0,
      clientWidth: 320,
      getBoundingClientRect: () => ({ left: 0, width: 320 }),
      contains: (x: unknown) => x === item,
    }
    const button = {
      closest: (sel: string) => (sel === '.timeline-item' ? item : null),
      matches: (sel: string) => sel === ':focus-visible' && keyboard, // a focus ring: focused by keyboard
    }
    return { list, button }
  }

  it('scrolls just far enough to show the whole card of the focused "Delete visit"', () => {
    const { list, button } = timeline(0, 300) // visit 2's card: 20 px of it in view
    showFocusedVisit(list as unknown as HTMLElement, button as unknown as EventTarget)
    expect(list.scrollLeft).toBe(260)
    const shown = timeline(100, 20) // already wholly in view: left where it is
    showFocusedVisit(shown.list as unknown as HTMLElement, shown.button as unknown as EventTarget)
    expect(shown.list.scrollLeft).toBe(100)
  })

  it('leaves the timeline where it is when a button is pressed with a mouse or finger', () => {
    const { list, button } = timeline(0, 300, false) // the card moving under the pointer would lose the click
    showFocusedVisit(list as unknown as HTMLElement, button as unknown as EventTarget)
    expect(list.scrollLeft).toBe(0)
  })

  it('leaves it where it is when a text or date field in it is clicked into (it shows a focus ring all the same)', () => {
    const doc = Object.assign(new EventTarget(), { body, activeElement: body })
    vi.stubGlobal('document', doc)
    const render = mount(() => VisitTimeline({ visits, changes: [], onChanged: vi.fn() }))
    const ol = byTestId(render(), 'timeline').el
    doc.dispatchEvent(new Event('pointerdown')) // a click into the note's text
    const clicked = timeline(0, 300) // a textarea: :focus-visible even when clicked
    ;(ol.props.onFocus as (e: unknown) => void)({ currentTarget: clicked.list, target: clicked.button })
    expect(clicked.list.scrollLeft).toBe(0)
    doc.dispatchEvent(new Event('keydown')) // then Tab
    const tabbed = timeline(0, 300)
    ;(ol.props.onFocus as (e: unknown) => void)({ currentTarget: tabbed.list, target: tabbed.button })
    expect(tabbed.list.scrollLeft).toBe(260)
  })

  it('does so on focus within the timeline', () => {
    const render = mount(() => VisitTimeline({ visits, changes: [], onChanged: vi.fn() }))
    const ol = byTestId(render(), 'timeline').el
    const { list, button } = timeline(0, 300)
    ;(ol.props.onFocus as (e: unknown) => void)({ currentTarget: list, target: button })
    expect(list.scrollLeft).toBe(260)
  })
})

describe('the Compare view', () => {
  it('names the two opacity sliders by their side, and says the change when it changes', () => {
    const render = mount(() => CompareVisits({ visits, crop: 'none' }))
    const tree = render()
    const labels = [...walk(tree)].filter(({ el }) => el.type === HeatmapViewer).map(({ el }) => el.props.sliderLabel)
    expect(labels).toEqual(['Heatmap opacity, left image', 'Heatmap opacity, right image'])
    const delta = byTestId(tree, 'compare-delta').el
    expect(delta.props['aria-live']).toBe('polite')
    expect(delta.props['aria-atomic']).toBe('true')
  })

  it('gives the slider the name asked for (default "Heatmap opacity")', () => {
    const html = (label?: string) =>
      host.mount(() =>
        renderToStaticMarkup(
          HeatmapViewer({ imageSrc: '/a.jpg', heatmapSrc: '/h.png', crop: 'none', opacity: 50, onOpacity: () => {}, sliderLabel: label }),
        ),
      ).first
    expect(html('Heatmap opacity, left image')).toMatch(/<label for="[^"]+">Heatmap opacity, left image<\/label>/)
    expect(html()).toMatch(/<label for="[^"]+">Heatmap opacity<\/label>/)
  })
})

describe('the spinner', () => {
  it('is a status by itself, not where a live region around it says it', () => {
    expect(renderToStaticMarkup(Spinner({ label: 'Loading…' }))).toContain('role="status"')
    expect(renderToStaticMarkup(Spinner({ label: 'Loading…', live: false }))).not.toContain('role=')
  })
})
