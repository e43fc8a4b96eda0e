// A screen-reader and keyboard-only audit of the clinic's patient and lesion pages (a blind
// clinician): the body map said the trunk's side from the drawing ("right of the figure", the
// patient's left on the front view) and nothing questioned a Side that contradicted the mark; arrow
// keys were mostly silent (the same words after a small move, one word for many presses at an
// edge); the same correction message twice was said once; "Edit location" focused its second
// field; errors were read twice (focused and role="alert") and lacked what failed; Tab left the
// delete confirmations; a patient or lesion that does not exist had no heading; the audience
// switch's name did not hold the word "View" the prompt tells people to look for.
//
// No DOM here: the components run in the one-component host (src/testing/hookHost.ts); the test
// reads the element tree and calls its handlers as a browser would.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import * as clinicApi from '../clinic/api.ts'
import { clinicHref } from '../clinic/format.ts'
import { ClinicContext } from '../clinic/session.ts'
import type { Lesion, Patient, User } from '../clinic/types.ts'
import { BodyMap, describePoint, FIGURE, keyboardPoint, movePoint, STEP, type MapPoint } from '../components/BodyMap.tsx'
import { AudienceSwitch } from '../components/ClinicNav.tsx'
import { AUDIENCE_PROMPT_HINT } from '../components/AudiencePrompt.tsx'
import { byTestId, text, walk, type El, type Props } from '../testing/tree.ts'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())
vi.mock('react', async (original) => {
  const react = await original<typeof import('react')>()
  // the body map measures itself in a layout effect: an effect here (no layout without a DOM)
  return { ...react, ...host.hooks, useLayoutEffect: host.hooks.useEffect }
})

const loaded = vi.hoisted(() => new Map<string, unknown>())
const failures = vi.hoisted(() => new Map<string, Error>())
vi.mock('../clinic/session.ts', async (original) => ({
  ...(await original<typeof import('../clinic/session.ts')>()),
  useLoad: (_load: unknown, key: string) => ({
    data: loaded.get(key) ?? null,
    error: failures.get(key) ?? null,
    loading: !loaded.has(key) && !failures.has(key),
    reload: () => undefined,
  }),
}))
vi.mock('../components/NewVisitForm.tsx', async (original) => ({
  ...(await original<typeof import('../components/NewVisitForm.tsx')>()),
  useUnsavedGuard: () => undefined, // its leave guard needs a window
  setAppHash: vi.fn(),
}))
vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  deletePatient: vi.fn(),
}))
vi.mock('../hooks.ts', async (original) => ({
  ...(await original<typeof import('../hooks.ts')>()),
  useApiData: () => ({ data: null, error: null, loading: true }), // the lesion page's model card
}))
const api = vi.mocked(clinicApi)

const page = await import('./ClinicPatientPage.tsx')
const { ClinicPatientPage, LesionCorrection, RefCorrection } = page
const { ClinicLesionPage } = await import('./ClinicLesionPage.tsx')

const admin: User = { id: 1, username: 'ana', role: 'admin' }

function lesion(over: Partial<Lesion> = {}): Lesion {
  return {
    id: 71,
    body_site: 'anterior torso',
    side: 'right',
    location: 'below the collarbone',
    map: null,
    n_visits: 1,
    latest_risk: 'low',
    latest_malignant_probability: 0.1,
    latest_risk_taken_at: '2025-02-01',
    latest_visit_risk: 'low',
    risk_rose: false,
    diagnosis: null,
    ...over,
  } as Lesion
}

let unmount: (() => void) | null = null
beforeEach(() => {
  vi.resetAllMocks()
  loaded.clear()
  failures.clear()
  host.contexts.set(ClinicContext, { session: { user: admin, csrf_token: 'x' }, setSession: () => {} })
})
afterEach(() => {
  unmount?.()
  unmount = null
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

function mountPage(lesions: Lesion[] = []) {
  loaded.set('8', { id: 8, ref: 'P-8', created_at: '2025-01-01', lesions } satisfies Patient)
  const m = host.mount(() => ClinicPatientPage({ id: 8 }))
  unmount = m.unmount
  return m.result
}

const mapProps = (tree: unknown): Props => [...walk(tree)].find(({ el }) => el.type === BodyMap)!.el.props
const placement = (tree: unknown) => text(byTestId(tree, 'new-lesion-point').el)
const choose = (render: () => unknown, id: string, value: string) => (byTestId(render(), id).el.props.onChange as (v: string) => void)(value)
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
const call = (tree: unknown, id: string, name: string, ...args: unknown[]) =>
  (byTestId(tree, id).el.props[name] as (...a: unknown[]) => unknown)(...args)

/** A component element of the tree rendered one level (a function component without hooks). */
function renderEl(el: El): unknown {
  return (el.type as (p: Props) => unknown)(el.props)
}

/** The Side warning `id` (a component in the tree), rendered. */
function sideWarningEl(tree: unknown, id: string): El {
  return renderEl(byTestId(tree, id).el) as El
}
const sideWarningText = (tree: unknown, id: string) => text(sideWarningEl(tree, id))

/** The element with an `error` prop (an error box) in the tree, rendered. */
function errorShown(tree: unknown): El {
  const box = [...walk(tree)].find(({ el }) => typeof el.type === 'function' && el.props.error)?.el
  if (!box) throw new Error('no error shown')
  return renderEl(box) as El
}

describe('1. every side said is the patient’s, and a Side that contradicts the mark is questioned', () => {
  it('describes the trunk’s sides from the patient’s side, flipped on the front view', () => {
    // the figure's left third of the trunk: the patient's right on the front view, left on the back
    expect(describePoint({ view: 'front', site: 'anterior torso', x: 45, y: 60 })).toBe('front view, Torso – front (chest, abdomen), upper part, the patient’s right side')
    expect(describePoint({ view: 'back', site: 'posterior torso', x: 45, y: 60 })).toBe('back view, Torso – back, upper part, the patient’s left side')
    expect(describePoint({ view: 'front', site: 'anterior torso', x: 75, y: 110 })).toMatch(/lower part, the patient’s left side$/)
    expect(describePoint({ view: 'front', site: 'anterior torso', x: 60, y: 80 })).toMatch(/middle, centre$/)
    for (const view of ['front', 'back'] as const) {
      const d = describePoint({ view, site: 'head/neck', x: 50, y: 20 })
      expect(d).not.toContain('figure')
    }
  })

  it('warns under Side when Right is chosen for a mark on the patient’s left chest; saving stays possible', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'front', site: 'anterior torso', x: 75, y: 60 })
    expect(sideWarningText(render(), 'lesion-side-warning')).toBe('')
    choose(render, 'lesion-side', 'right')
    let tree = render()
    const warning = sideWarningEl(tree, 'lesion-side-warning')
    expect(text(warning)).toBe('Check the side: the mark on the body map is on the patient’s left side, but Side is Right.')
    expect(warning.props.role).toBe('status')
    expect(warning.props.className).toBe('status-warning') // seen, not only heard
    // inside the Side field (shown under its list)
    expect(byTestId(tree, 'lesion-side-warning').above.some((el) => el.props.testId === 'lesion-side')).toBe(true)
    expect(mapProps(tree).point).toMatchObject({ x: 75, y: 60 }) // not moved
    expect(byTestId(tree, 'new-lesion-submit').el.props.disabled).toBe(false)
    choose(render, 'lesion-side', 'left')
    expect(sideWarningText(render(), 'lesion-side-warning')).toBe('')
    choose(render, 'lesion-side', 'midline') // the chest's outer third, Midline: left alone
    expect(sideWarningText(render(), 'lesion-side-warning')).toBe('')
    // back view: the figure's right is the patient's right
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'back', site: 'posterior torso', x: 75, y: 60 })
    choose(render, 'lesion-side', 'left')
    tree = render()
    expect(sideWarningText(tree, 'lesion-side-warning')).toContain('is on the patient’s right side, but Side is Left')
  })

  it('says Midline on an arm is wrong, and nothing for a mark on the middle line', () => {
    expect(page.sideWarning({ view: 'front', site: 'upper extremity', x: 22, y: 89 }, 'midline')).toBe(
      'Check the side: the mark on the body map is on the patient’s right arm, but Side is Midline.',
    )
    expect(page.sideWarning({ view: 'front', site: 'anterior torso', x: 60, y: 80 }, 'left')).toBe('')
    expect(page.sideWarning({ view: 'front', site: 'anterior torso', x: 60, y: 80 }, '')).toBe('')
    expect(page.sideWarning(null, 'left')).toBe('')
  })

  it('"Edit location" warns when the new Side contradicts a trunk pin (an arm’s pin moves with it instead)', () => {
    const trunk = lesion({ side: 'right', map: { view: 'front', x: 75 / FIGURE.width, y: 60 / FIGURE.height } })
    const m = host.mount(() => LesionCorrection({ lesion: trunk, n: 2, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    const warning = () => sideWarningText(m.result(), 'lesion-edit-side-warning')
    expect(warning()).toBe('Check the side: the lesion’s pin on the body map is on the patient’s left side, but Side is Right.')
    call(m.result(), 'lesion-edit-side', 'onChange', 'left')
    expect(warning()).toBe('')
    const arm = lesion({ body_site: 'upper extremity', side: 'right', map: { view: 'front', x: 22 / FIGURE.width, y: 89 / FIGURE.height } })
    const m2 = host.mount(() => LesionCorrection({ lesion: arm, n: 2, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m2.unmount
    call(m2.result(), 'lesion-edit-side', 'onChange', 'left') // saving moves the pin to the left arm
    expect(sideWarningText(m2.result(), 'lesion-edit-side-warning')).toBe('')
  })
})

describe('2. every arrow key press changes what the live region says', () => {
  it('the body map tells the page a move came from an arrow key, and which way a blocked one went', () => {
    const points: [MapPoint, string | undefined][] = []
    const blocked: string[] = []
    let point: MapPoint | null = keyboardPoint('back', 'posterior torso', null, '')
    const m = host.mount(() =>
      BodyMap({ value: '', onChange: () => {}, onPoint: (p, how) => { points.push([p, how]); point = p }, point, onMoveBlocked: (_p, d) => blocked.push(d) }),
    )
    unmount = m.unmount
    const press = (key: string) =>
      call(m.result(), 'bodymap-back-posterior-torso', 'onKeyDown', { key, detail: 0, preventDefault: () => {}, currentTarget: { ownerSVGElement: null } })
    press('ArrowUp')
    expect(points.at(-1)![1]).toBe('move')
    for (let i = 0; i < 30; i++) press('ArrowLeft')
    expect(blocked.at(-1)).toBe('left')
  })

  it('small moves and repeated presses at an edge each give new words', () => {
    const render = mountPage()
    const onPoint = () => mapProps(render()).onPoint as (p: MapPoint, how?: 'move') => void
    let p: MapPoint = keyboardPoint('back', 'posterior torso', null, '')
    onPoint()(p)
    const said = [placement(render())]
    for (let i = 0; i < 4; i++) {
      p = movePoint(p, 0, -STEP)!
      onPoint()(p, 'move')
      said.push(placement(render()))
    }
    expect(new Set(said).size).toBe(said.length)
    expect(said[1]).toContain('; 1 step up from its middle.')
    const blocked = () => mapProps(render()).onMoveBlocked as (p: MapPoint, d: string) => void
    const edge: string[] = []
    for (let i = 0; i < 3; i++) {
      blocked()(p, 'up')
      edge.push(placement(render()))
    }
    expect(new Set(edge).size).toBe(3)
    expect(edge[0]).toContain('cannot move further up')
  })
})

describe('3. the same correction message twice is said twice', () => {
  it('empties the status line, then fills it again a moment later', () => {
    vi.useFakeTimers()
    const render = mountPage([lesion({ id: 70 }), lesion()])
    const status = () => text(byTestId(render(), 'correction-status').el)
    for (let round = 0; round < 2; round++) {
      call(byTestId(render(), 'lesion-row-71').el, 'lesion-delete', 'onClick')
      const open = [...walk(render())].find((h) => h.el.type === LesionCorrection)!.el
      ;(open.props.onDone as (s: string) => void)('Lesion 2 deleted.')
      expect(status()).toBe('') // emptied first: the same words again are a change
      vi.advanceTimersByTime(500)
      expect(status()).toBe('Lesion 2 deleted.')
    }
  })
})

describe('4. "Edit location" focuses its first field, Side', () => {
  it('focuses the Side list, not the Location input after it', () => {
    const sideFocus = vi.fn()
    const locationFocus = vi.fn()
    const m = host.mount(() => {
      const tree = LesionCorrection({ lesion: lesion(), n: 2, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() })
      // the elements a browser would attach, before the effects run
      for (const { el } of walk(tree)) {
        const ref = el.props.ref as ((e: unknown) => void) | { current: unknown } | undefined
        const fake =
          el.props['data-testid'] === 'lesion-edit-location'
            ? { focus: locationFocus }
            : el.props['data-testid'] === 'lesion-edit-side-row'
              ? { querySelector: (q: string) => (q === 'select' ? { focus: sideFocus } : null) }
              : null
        if (!fake || !ref) continue
        if (typeof ref === 'function') ref(fake)
        else ref.current = fake
      }
      return tree
    })
    unmount = m.unmount
    expect(sideFocus).toHaveBeenCalledTimes(1)
    expect(locationFocus).not.toHaveBeenCalled()
  })
})

describe('5. an error is read once, and says what failed', () => {
  it('a failed lesion delete: the focused message, no alert, "Could not delete lesion 2: …"', async () => {
    vi.stubGlobal('fetch', async () => json({ detail: 'Database is locked' }, 503))
    const m = host.mount(() => LesionCorrection({ lesion: lesion(), n: 2, mode: 'delete', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    await call(m.result(), 'lesion-delete-confirm', 'onClick')
    const tree = m.result()
    const focused = byTestId(tree, 'lesion-correction-error').el
    expect(focused.props.tabIndex).toBe(-1)
    const shown = errorShown(focused)
    expect(shown.props.role).toBeUndefined()
    expect(text(shown)).toMatch(/^Could not delete lesion 2: .*Database is locked/)
    expect(byTestId(tree, 'lesion-delete-box').el.props['aria-describedby']).toBe(focused.props.id)
  })

  it('a failed patient delete: the focused message is no alert', async () => {
    api.deletePatient.mockRejectedValue(new Error('Database is locked'))
    const render = mountPage()
    call(render(), 'patient-delete', 'onClick')
    call(render(), 'delete-confirm-input', 'onChange', { target: { value: 'P-8' } })
    await call(render(), 'delete-confirm', 'onClick')
    const error = byTestId(render(), 'delete-error').el
    expect(error.props.tabIndex).toBe(-1)
    expect(error.props.role).toBeUndefined()
    expect(text(error)).toBe('Could not delete the patient: Database is locked')
  })

  it('a refused reference: read with the focused input (its description), no alert, says what failed', async () => {
    vi.stubGlobal('fetch', async () => json({ detail: "a patient with reference 'P-9' exists already" }, 409))
    const m = host.mount(() => RefCorrection({ id: 5, current: 'P-1', onSaved: vi.fn() }))
    unmount = m.unmount
    call(m.result(), 'ref-correct', 'onClick')
    call(m.result(), 'ref-correct-input', 'onChange', { target: { value: 'P-9' } })
    await call(m.result(), 'ref-correct-form', 'onSubmit', { preventDefault: () => {} })
    const tree = m.result()
    const shown = errorShown(tree)
    expect(shown.props.role).toBeUndefined()
    expect(String(byTestId(tree, 'ref-correct-input').el.props['aria-describedby'])).toContain(String(shown.props.id))
    expect(text(shown)).toMatch(/^Could not save the reference: .*P-9/)
  })
})

describe('6. Tab stays in a delete confirmation', () => {
  function tabIn(onKeyDown: (e: unknown) => void, stops: { focus: () => void }[], active: unknown, shiftKey = false) {
    vi.stubGlobal('document', { activeElement: active })
    let prevented = false
    const found = stops.map((s) => Object.assign(s, { tabIndex: 0 })) // Tab stops, in order
    const box = { querySelectorAll: () => found }
    onKeyDown({ key: 'Tab', shiftKey, currentTarget: box, preventDefault: () => (prevented = true) })
    return prevented
  }

  it('wraps from the last to the first and back, in the lesion and the patient confirmation', () => {
    const m = host.mount(() => LesionCorrection({ lesion: lesion(), n: 2, mode: 'delete', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    const onKey = byTestId(m.result(), 'lesion-delete-box').el.props.onKeyDown as (e: unknown) => void
    const first = { focus: vi.fn() }
    const last = { focus: vi.fn() }
    expect(tabIn(onKey, [first, last], last)).toBe(true)
    expect(first.focus).toHaveBeenCalled()
    expect(tabIn(onKey, [first, last], first, true)).toBe(true)
    expect(last.focus).toHaveBeenCalled()
    // from the failed delete's message (focused, no Tab stop, before the buttons): Shift+Tab wraps
    // to the last button, Tab goes on to the first
    const message = { compareDocumentPosition: () => 4 } // every stop follows it
    last.focus.mockClear()
    first.focus.mockClear()
    expect(tabIn(onKey, [first, last], message, true)).toBe(true)
    expect(last.focus).toHaveBeenCalled()
    expect(tabIn(onKey, [first, last], message)).toBe(true)
    expect(first.focus).toHaveBeenCalled()

    const render = mountPage()
    call(render(), 'patient-delete', 'onClick')
    const onBoxKey = byTestId(render(), 'delete-confirm-box').el.props.onKeyDown as (e: unknown) => void
    const input = { focus: vi.fn() }
    const cancel = { focus: vi.fn() }
    expect(tabIn(onBoxKey, [input, cancel], cancel)).toBe(true)
    expect(input.focus).toHaveBeenCalled()
    // in the middle: Tab goes its own way
    expect(tabIn(onBoxKey, [input, { focus: vi.fn() }, cancel], input)).toBe(false)
  })
})

describe('7. a patient or lesion that does not exist has a heading, a way back and a title', () => {
  function shownFor(tree: unknown): { title: string; h1: string; focus: ReturnType<typeof vi.fn>; link: string; restore: () => string } {
    const el = [...walk(tree)].find(({ el }) => el.props.what)?.el
    if (!el) throw new Error(`no "not found" page: ${JSON.stringify(text(tree))}`)
    const doc = { title: 'Patient · dermsight', body: {}, activeElement: null as unknown }
    doc.activeElement = doc.body
    vi.stubGlobal('document', doc)
    const focus = vi.fn()
    let h1 = ''
    let link = ''
    const m = host.mount(() => {
      const out = (el.type as (p: Props) => unknown)(el.props)
      for (const { el: e } of walk(out)) {
        if (e.type === 'h1') {
          h1 = text(e)
          ;(e.props.ref as { current: unknown }).current = { focus }
        }
        if (e.type === 'a') link = String(e.props.href)
      }
      return out
    })
    return { title: doc.title, h1, focus, link, restore: () => (m.unmount(), doc.title) }
  }

  it('a patient: 404 and 422 (id 0) say "Patient not found"; another error stays an error', () => {
    for (const error of [new ApiError(404, 'No patient with id 999'), new ApiError(422, "Patient_id must be at least 1 (got '0')")]) {
      failures.set('8', error)
      const m = host.mount(() => ClinicPatientPage({ id: 8 }))
      const shown = shownFor(m.result())
      expect(shown.h1).toBe('Patient not found')
      expect(shown.title).toBe('Patient not found · dermsight')
      expect(shown.focus).toHaveBeenCalledTimes(1)
      expect(shown.link).toBe(clinicHref.patients)
      expect(shown.restore()).toBe('Patient · dermsight')
    }
    failures.set('8', new ApiError(500, 'Server error'))
    const m = host.mount(() => ClinicPatientPage({ id: 8 }))
    const tree = m.result()
    expect([...walk(tree)].some(({ el }) => el.props.error)).toBe(true)
    expect([...walk(tree)].some(({ el }) => el.props.what === 'Patient')).toBe(false)
  })

  it('a lesion: 404 says "Lesion not found"', () => {
    failures.set('70', new ApiError(404, 'No lesion with id 70'))
    const m = host.mount(() => ClinicLesionPage({ id: 70 }))
    const shown = shownFor(m.result())
    expect(shown.h1).toBe('Lesion not found')
    expect(shown.title).toBe('Lesion not found · dermsight')
    expect(shown.link).toBe(clinicHref.patients)
  })
})

describe('8. the audience switch is named with the word the prompt says', () => {
  it('its name starts with "View", as on the screen and in the prompt', () => {
    const group = AudienceSwitch({ audience: 'clinician', onChoose: () => {}, clinic: false }) as El
    expect(group.props.role).toBe('group')
    expect(String(group.props['aria-label'])).toMatch(/^View\b/)
    expect(AUDIENCE_PROMPT_HINT).toContain('“View”')
  })
})
