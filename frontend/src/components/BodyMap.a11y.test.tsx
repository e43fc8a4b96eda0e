// The clinic patient page's body map with a keyboard and a screen reader (WCAG 2.2 AA audit):
// Enter on a region places the new lesion's mark on the shape the user means (the Side chosen, or
// the next shape on Enter again: the other arm, a sole, the genital area), the arrow keys move it
// within that shape, where it is is said in words in a live region, the Body site and Side fields
// stay in step with it, only the region that holds it is pressed, and the lesions' pins are
// buttons (no pressed state) that say when the risk rose; a failed delete is said in the confirm
// box.
//
// No DOM here (no jsdom, no testing library): the body map and the page run in a one-component
// host (src/testing/hookHost.ts); the test reads the element tree and calls its handlers as a
// browser would. A key's event has no pointer position (`detail` 0), as in a browser.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as clinicApi from '../clinic/api.ts'
import { ClinicContext } from '../clinic/session.ts'
import type { Lesion, Patient, User } from '../clinic/types.ts'
import { ClinicPatientPage } from '../pages/ClinicPatientPage.tsx'
import { byTestId, has, text, walk, type Props } from '../testing/tree.ts'
import { BodyMap, describePoint, keyboardPoint, movePoint, regionAt, shapeIndexOf, STEP, type MapPoint, type Pin } from './BodyMap.tsx'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())

vi.mock('react', async (original) => {
  const react = await original<typeof import('react')>()
  // the body map measures itself in a layout effect: an effect here (no layout without a DOM)
  return { ...react, ...host.hooks, useLayoutEffect: host.hooks.useEffect }
})

const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('../clinic/session.ts', async (original) => ({
  ...(await original<typeof import('../clinic/session.ts')>()),
  useLoad: (_load: unknown, key: string) => ({ data: loaded.get(key) ?? null, error: null, loading: !loaded.has(key), reload: () => undefined }),
}))
vi.mock('./NewVisitForm.tsx', async (original) => ({
  ...(await original<typeof import('./NewVisitForm.tsx')>()),
  useUnsavedGuard: () => undefined, // its leave guard needs a window
  setAppHash: vi.fn(),
}))
vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  deletePatient: vi.fn(),
}))
const api = vi.mocked(clinicApi)

// --- reading and using the rendered tree ------------------------------------------------------

/** The middle of a region's first shape's box, as a browser's getBBox gives it (what a keyboard
 * placement used before: the old code asks the region's element for it). */
const FIRST_SHAPE_BOX: Record<string, { x: number; y: number; width: number; height: number }> = {
  'upper extremity': { x: 11, y: 47, width: 21, height: 84 },
  'palms/soles': { x: 9, y: 130, width: 12, height: 16 },
  'oral/genital': { x: 54.5, y: 23.2, width: 11, height: 5.6 },
  'posterior torso': { x: 40, y: 43, width: 40, height: 81 },
  'anterior torso': { x: 40, y: 43, width: 40, height: 81 },
}

/** A key pressed on the element `id` (a region of the map or a pin): its onKeyDown, with the
 * event a browser gives (no pointer position). Returns whether the page's default was prevented. */
function press(tree: unknown, id: string, key: string, shiftKey = false): boolean {
  const { el } = byTestId(tree, id)
  const site = String(el.props['data-site'] ?? '')
  let prevented = false
  const currentTarget = {
    ownerSVGElement: null,
    querySelector: () => ({ getBBox: () => FIRST_SHAPE_BOX[site] }),
  }
  ;(el.props.onKeyDown as (e: unknown) => void)({ key, shiftKey, detail: 0, preventDefault: () => (prevented = true), currentTarget })
  return prevented
}

// --- the body map on its own -------------------------------------------------------------------

/** A body map as the patient page uses it, whose onPoint keeps the mark (as the page does). */
function mapWithMark(side = '', pins: Pin[] = []) {
  const state: { point: MapPoint | null; side: string; points: MapPoint[] } = { point: null, side, points: [] }
  const onPoint = (p: MapPoint) => {
    state.point = p
    state.points.push(p)
  }
  const m = host.mount(() => BodyMap({ value: state.point?.site ?? '', onChange: () => {}, pins, onPoint, onPinSelect: () => {}, point: state.point, side: state.side }))
  unmount = m.unmount
  return { state, render: m.result }
}

let unmount: (() => void) | null = null
afterEach(() => {
  unmount?.()
  unmount = null
  vi.unstubAllGlobals()
})

describe('placing the new lesion with the keyboard', () => {
  it('Enter on "Arm" puts the mark on an arm; Enter again on the other arm (not always the right one)', () => {
    const { state, render } = mapWithMark()
    expect(press(render(), 'bodymap-front-upper-extremity', 'Enter')).toBe(true)
    const first = state.point!
    expect(first).toMatchObject({ view: 'front', site: 'upper extremity' })
    press(render(), 'bodymap-front-upper-extremity', 'Enter')
    const second = state.point!
    // the other arm: mirrored across the figure's middle line
    expect(second.x).toBe(120 - first.x)
    expect(second.y).toBe(first.y)
    expect(describePoint(first)).toContain('the patient’s right arm') // front view: the figure's left
    expect(describePoint(second)).toContain('the patient’s left arm')
    press(render(), 'bodymap-front-upper-extremity', 'Enter')
    expect(state.point).toEqual(first) // round again
  })

  it('takes the arm of the side chosen under Side, on each view', () => {
    const front = mapWithMark('left')
    press(front.render(), 'bodymap-front-upper-extremity', 'Enter')
    expect(front.state.point!.x).toBeGreaterThan(60) // front view: the patient's left is on the figure's right
    const back = mapWithMark('left')
    press(back.render(), 'bodymap-back-upper-extremity', 'Enter')
    expect(back.state.point!.x).toBeLessThan(60) // back view: on the figure's left
    expect(describePoint(back.state.point!)).toBe('back view, Arm: the patient’s left arm, middle')
  })

  it('reaches a sole from "Palm or sole" and the genital area from "Mouth or genital area"', () => {
    const { state, render } = mapWithMark()
    const parts: string[] = []
    for (let i = 0; i < 4; i++) {
      press(render(), 'bodymap-front-palms-soles', 'Enter')
      parts.push(describePoint(state.point!))
    }
    expect(parts).toEqual([
      'front view, Palm or sole: the patient’s right hand',
      'front view, Palm or sole: the patient’s left hand',
      'front view, Palm or sole: the patient’s right foot',
      'front view, Palm or sole: the patient’s left foot',
    ])
    press(render(), 'bodymap-front-oral-genital', 'Enter')
    expect(describePoint(state.point!)).toBe('front view, Mouth or genital area: mouth')
    press(render(), 'bodymap-front-oral-genital', 'Enter')
    expect(describePoint(state.point!)).toBe('front view, Mouth or genital area: genital area')
  })

  it('moves the mark with the arrow keys, in small steps, within the part of the body it is on', () => {
    const { state, render } = mapWithMark()
    // no mark yet: an arrow key does nothing (and leaves the page's scrolling alone)
    expect(press(render(), 'bodymap-back-posterior-torso', 'ArrowUp')).toBe(false)
    expect(state.point).toBeNull()
    press(render(), 'bodymap-back-posterior-torso', 'Enter')
    const start = state.point!
    expect(press(render(), 'bodymap-back-posterior-torso', 'ArrowUp')).toBe(true)
    expect(state.point).toEqual({ ...start, y: start.y - STEP })
    press(render(), 'bodymap-back-posterior-torso', 'ArrowLeft', true) // Shift: a bigger step
    expect(state.point!.x).toBeLessThan(start.x - STEP)
    // held down: it stops at the torso's edge, never onto the arm, a side or off the figure
    for (let i = 0; i < 60; i++) press(render(), 'bodymap-back-posterior-torso', 'ArrowLeft')
    const edge = state.point!
    expect(regionAt('back', edge.x, edge.y)?.site).toBe('posterior torso')
    expect(edge.x).toBeLessThan(42)
    // back view: the figure's left is the patient's left (every side is the patient's)
    expect(describePoint(edge)).toMatch(/^back view, Torso – back, (upper part|middle), the patient’s left side$/)
    // an arrow key on another region does not move it
    const before = state.points.length
    press(render(), 'bodymap-back-upper-extremity', 'ArrowDown')
    expect(state.points.length).toBe(before)
  })

  it('keeps every step of the mark on the same shape (a pure check of movePoint)', () => {
    let p: MapPoint | null = keyboardPoint('front', 'upper extremity', null, '')
    const shape = shapeIndexOf(p)
    for (let i = 0; i < 80 && p; i++) {
      const next: MapPoint | null = movePoint(p, 0, STEP)
      if (!next) break
      expect(regionAt('front', next.x, next.y)).toEqual({ site: 'upper extremity', shape })
      p = next
    }
    expect(p!.y).toBeGreaterThan(120) // it went down the arm, to near the hand
  })

  it('shows as pressed only the region of the view that holds the mark', () => {
    const { render } = mapWithMark()
    press(render(), 'bodymap-front-upper-extremity', 'Enter')
    const tree = render()
    expect(byTestId(tree, 'bodymap-front-upper-extremity').el.props['aria-pressed']).toBe(true)
    expect(byTestId(tree, 'bodymap-back-upper-extremity').el.props['aria-pressed']).toBe(false)
  })
})

describe('the pins', () => {
  const pins: Pin[] = [
    { id: 5, view: 'back', x: 60, y: 72, label: 'Lesion 1: Left, Torso – back, risk rose', alert: true },
    { id: 6, view: 'back', x: 60, y: 100, label: 'Lesion 2: Torso – back' },
    { id: 0, view: 'front', x: 22, y: 89, label: 'New lesion (not saved yet)', selected: true, inert: true },
  ]

  it('are buttons that open a lesion, without a pressed state; a rise has a mark besides its red', () => {
    const { render } = mapWithMark('', pins)
    const tree = render()
    for (const id of ['pin-5', 'pin-6']) {
      const pin = byTestId(tree, id).el.props
      expect(pin.role).toBe('button')
      expect(pin.tabIndex).toBe(0)
      expect('aria-pressed' in pin).toBe(false)
    }
    expect(has(tree, 'pin-5-alert-mark')).toBe(true)
    expect(has(tree, 'pin-6-alert-mark')).toBe(false)
  })

  it('draw the unsaved mark as a picture with a name: no tab stop, no button, no pressed state', () => {
    const { render } = mapWithMark('', pins)
    const mark = byTestId(render(), 'pin-0').el.props
    expect(mark.role).toBe('img')
    expect(mark['aria-label']).toBe('New lesion (not saved yet)')
    expect(mark.tabIndex).toBeUndefined()
    expect(mark.onKeyDown).toBeUndefined()
    expect('aria-pressed' in mark).toBe(false)
  })
})

// --- the patient page --------------------------------------------------------------------------

const admin: User = { id: 1, username: 'ana', role: 'admin' }

function lesion(over: Partial<Lesion>): Lesion {
  return {
    id: 70,
    patient_id: 8,
    body_site: 'posterior torso',
    side: 'left',
    location: null,
    map: { view: 'back', x: 0.5, y: 0.3 },
    created_at: '2025-01-01',
    n_visits: 2,
    latest_risk: 'moderate',
    latest_malignant_probability: 0.4,
    latest_taken_at: '2025-06-01',
    latest_assessed_risk: 'moderate',
    latest_assessed_taken_at: '2025-06-01',
    risk_rose: false,
    diagnosis: null,
    ...over,
  } as Lesion
}

function mountPage(lesions: Lesion[] = []) {
  loaded.clear()
  loaded.set('8', { id: 8, ref: 'P-8', created_at: '2025-01-01', lesions } satisfies Patient)
  const m = host.mount(() => ClinicPatientPage({ id: 8 }))
  unmount = m.unmount
  return m.result
}

/** The page's body map element (its props: what the page gives it). */
function mapProps(tree: unknown): Props {
  const el = [...walk(tree)].find(({ el }) => el.type === BodyMap)?.el
  if (!el) throw new Error('no body map on the page')
  return el.props
}

/** A choice made in the list `id` (Body site, Side). */
function choose(render: () => unknown, id: string, value: string) {
  ;(byTestId(render(), id).el.props.onChange as (v: string) => void)(value)
}

const placement = (tree: unknown) => byTestId(tree, 'new-lesion-point').el

beforeEach(() => {
  vi.resetAllMocks()
  host.contexts.set(ClinicContext, { session: { user: admin, csrf_token: 'x' }, setSession: () => {} })
})

describe('the patient page keeps the mark, Body site and Side in step and says so', () => {
  it('says where the mark is in a live region, in words', () => {
    const render = mountPage()
    expect(placement(render()).props.role).toBe('status')
    const onPoint = mapProps(render()).onPoint as (p: MapPoint) => void
    onPoint({ view: 'front', site: 'upper extremity', x: 22, y: 89 })
    expect(text(placement(render()))).toContain('front view, Arm: the patient’s right arm')
  })

  it('moves the mark to the left arm when Side "Left" is chosen after placing it on the right arm', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'front', site: 'upper extremity', x: 22, y: 89 })
    choose(render, 'lesion-side', 'left')
    const tree = render()
    expect(mapProps(tree).point).toMatchObject({ view: 'front', site: 'upper extremity', x: 98, y: 89 })
    expect(text(placement(tree))).toContain('the patient’s left arm')
    expect(byTestId(tree, 'lesion-side').el.props.value).toBe('left')
  })

  it('sets Side from the arm the mark is put on (a pin on the right arm, Side "Right")', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'back', site: 'upper extremity', x: 98, y: 89 })
    const tree = render()
    expect(byTestId(tree, 'lesion-side').el.props.value).toBe('right') // back view: the figure's right
    expect(text(placement(tree))).toContain('Side set to Right')
  })

  it('takes the mark off (and says so) when the Body site list no longer fits it; back when it does', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'front', site: 'upper extremity', x: 22, y: 89 })
    choose(render, 'lesion-site', 'anterior torso')
    let tree = render()
    expect(mapProps(tree).point ?? null).toBeNull()
    expect(has(tree, 'pin-0')).toBe(false)
    expect(text(placement(tree))).toMatch(/taken off: it was on Arm, and the body site is now Torso – front/)
    expect(text(placement(tree))).toContain('Not placed on the map yet.')
    choose(render, 'lesion-site', 'upper extremity')
    tree = render()
    expect(mapProps(tree).point).toMatchObject({ site: 'upper extremity', x: 22, y: 89 })
  })

  it('clears a Side the map filled in when the mark goes where there is no side, and says so', () => {
    const render = mountPage()
    const place = (p: MapPoint) => (mapProps(render()).onPoint as (p: MapPoint) => void)(p)
    place({ view: 'front', site: 'upper extremity', x: 22, y: 89 }) // the patient's right arm
    expect(byTestId(render(), 'lesion-side').el.props.value).toBe('right')
    place({ view: 'front', site: 'anterior torso', x: 60, y: 80 }) // the chest's middle: no side
    const tree = render()
    expect(byTestId(tree, 'lesion-side').el.props.value).toBe('') // not saved as "Right, Torso – front"
    expect(text(placement(tree))).toContain('Side cleared: it was filled in from the map (Right)')
    expect(text(placement(tree))).toContain('front view, Torso – front')
  })

  it('never clears a Side the user chose', () => {
    const render = mountPage()
    const place = (p: MapPoint) => (mapProps(render()).onPoint as (p: MapPoint) => void)(p)
    choose(render, 'lesion-side', 'left')
    place({ view: 'front', site: 'anterior torso', x: 60, y: 80 })
    expect(byTestId(render(), 'lesion-side').el.props.value).toBe('left')
    expect(text(placement(render()))).not.toContain('Side cleared')
    // set by the map, then chosen again by the user: the user's
    choose(render, 'lesion-side', '')
    place({ view: 'front', site: 'upper extremity', x: 22, y: 89 })
    choose(render, 'lesion-side', 'right')
    place({ view: 'front', site: 'anterior torso', x: 60, y: 80 })
    expect(byTestId(render(), 'lesion-side').el.props.value).toBe('right')
  })

  it('keeps the note on the mark taken off up to date while the Body site list is browsed', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'front', site: 'upper extremity', x: 22, y: 89 })
    choose(render, 'lesion-site', 'anterior torso')
    expect(text(placement(render()))).toMatch(/the body site is now Torso – front \(chest, abdomen\)\./)
    choose(render, 'lesion-site', 'posterior torso') // the next site down the list: still no fit
    const note = text(placement(render()))
    expect(note).toMatch(/taken off: it was on Arm, and the body site is now Torso – back\./)
    expect(note).not.toContain('Torso – front')
    choose(render, 'lesion-site', '')
    expect(text(placement(render()))).toMatch(/the body site is now not stated\./)
  })

  it('gives the body map the mark and the Side, and explains the keys in the hint', () => {
    const render = mountPage()
    ;(mapProps(render()).onPoint as (p: MapPoint) => void)({ view: 'back', site: 'posterior torso', x: 60, y: 84 })
    const props = mapProps(render())
    expect(props.point).toMatchObject({ view: 'back', site: 'posterior torso' })
    expect(props.side).toBe('')
    const hintEl = byTestId(render(), 'bodymap-keys-hint').el
    expect(props.describedBy).toBe(hintEl.props.id) // the map's group is described by it
    const hint = text(hintEl)
    expect(hint).toContain('press Enter')
    expect(hint).toContain('arrow keys move the mark')
    // an arrow key at the edge of the part: said, the mark stays
    ;(props.onMoveBlocked as (p: MapPoint, d: string) => void)({ view: 'back', site: 'posterior torso', x: 41, y: 84 }, 'left')
    // on the back view the screen's left is the patient's left: said in the patient's sides, as the page's other words
    expect(text(placement(render()))).toContain('The mark is at the edge of Torso – back: it cannot move further towards the patient’s left.')
  })

  it('names a pin whose risk rose as such, not by its colour alone', () => {
    const render = mountPage([lesion({ risk_rose: true })])
    const pins = mapProps(render()).pins as Pin[]
    expect(pins[0].label).toMatch(/^Lesion 1: .*, risk rose$/)
    expect(pins[0].alert).toBe(true)
  })
})

describe('deleting the patient', () => {
  it('says a failed delete in the confirm box (described by it), not in the new lesion form', async () => {
    api.deletePatient.mockRejectedValue(new Error('No patient with id 8: it may have been deleted'))
    const render = mountPage()
    ;(byTestId(render(), 'patient-delete').el.props.onClick as () => void)()
    ;(byTestId(render(), 'delete-confirm-input').el.props.onChange as (e: unknown) => void)({ target: { value: 'P-8' } })
    await (byTestId(render(), 'delete-confirm').el.props.onClick as () => Promise<void>)()
    const tree = render()
    const box = byTestId(tree, 'delete-confirm-box')
    const inBox = [...walk(box.el)].find(({ el }) => text(el).includes('No patient with id 8') && el.props.id)
    expect(inBox).toBeDefined()
    expect(box.el.props['aria-describedby']).toBe(inBox!.el.props.id)
    expect(inBox!.el.props.tabIndex).toBe(-1) // the focus is put there
    const form = byTestId(tree, 'new-lesion-form').el
    expect(text(form)).not.toContain('No patient with id 8')
    expect([...walk(form)].some(({ el }) => el.props.error)).toBe(false)
  })
})
