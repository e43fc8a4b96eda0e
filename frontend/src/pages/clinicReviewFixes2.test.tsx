// Review of the clinic pages (a blind clinician, two tabs): "Edit location" did not question a
// saved pin that already contradicted the saved Side; a Side warning shown when a form opened was
// never read (nothing tied it to the Side list); "Patient not found" was lost from the tab's title
// after signing in again; an arrow key at the edge said screen directions next to the patient's
// sides; the account page read its messages twice and its navigation link was not current.
//
// No DOM here: the components run in the one-component host (src/testing/hookHost.ts).

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import * as clinicApi from '../clinic/api.ts'
import { ClinicContext } from '../clinic/session.ts'
import type { Lesion, Patient, Session, User } from '../clinic/types.ts'
import { FIGURE, type MapPoint } from '../components/BodyMap.tsx'
import { ChoiceField } from '../components/ChoiceField.tsx'
import { ClinicNavLinks } from '../components/ClinicNav.tsx'
import { byTestId, text, walk, type El, type Props } from '../testing/tree.ts'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())
vi.mock('react', async (original) => {
  const react = await original<typeof import('react')>()
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
  useUnsavedGuard: () => undefined,
  setAppHash: vi.fn(),
}))
vi.mock('../clinic/api.ts', async (original) => ({
  ...(await original<typeof import('../clinic/api.ts')>()),
  updateLesion: vi.fn(),
  changePassword: vi.fn(),
}))
const api = vi.mocked(clinicApi)

const page = await import('./ClinicPatientPage.tsx')
const { ClinicPatientPage, LesionCorrection } = page
const { ClinicAccountPage } = await import('./ClinicAccountPage.tsx')

const admin: User = { id: 1, username: 'ana', role: 'admin' }
const session: Session = { user: admin, csrf_token: 'x', idle_minutes: 30 }

function lesion(over: Partial<Lesion> = {}): Lesion {
  return {
    id: 71,
    body_site: 'upper extremity',
    side: 'right',
    location: null,
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
  host.contexts.clear()
  host.contexts.set(ClinicContext, { session, setSession: vi.fn() })
})
afterEach(() => {
  unmount?.()
  unmount = null
  vi.unstubAllGlobals()
})

const renderEl = (el: El): unknown => (el.type as (p: Props) => unknown)(el.props)
/** The rendered Side warning `id` (a component in the tree). */
const warningEl = (tree: unknown, id: string) => renderEl(byTestId(tree, id).el) as El
/** The <select> ChoiceField `testId` draws. */
const selectOf = (tree: unknown, testId: string) => {
  const field = [...walk(tree)].find(({ el }) => el.type === ChoiceField && el.props.testId === testId)!.el
  return [...walk(renderEl(field))].find(({ el }) => el.type === 'select')!.el
}
const call = (tree: unknown, id: string, name: string, ...args: unknown[]) =>
  (byTestId(tree, id).el.props[name] as (...a: unknown[]) => unknown)(...args)

// the patient's right arm on the front view (the figure's left) and its mirror, the left arm
const rightArm = { view: 'front' as const, x: 22 / FIGURE.width, y: 89 / FIGURE.height }
const leftArm = page.mirroredMap(rightArm, 'left')!.map

describe('"Edit location" questions a saved pin that contradicts the saved Side', () => {
  it('warns as the form opens (the side unchanged, the pin where it is saved)', () => {
    expect(leftArm.x).toBeGreaterThan(0.5) // the figure's right on the front view: the patient's left arm
    const m = host.mount(() => LesionCorrection({ lesion: lesion({ side: 'right', map: leftArm }), n: 1, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    const warning = text(warningEl(m.result(), 'lesion-edit-side-warning'))
    expect(warning).toBe('Check the side: the lesion’s pin on the body map is on the patient’s left side, but Side is Right.')
    // a new side still moves the pin with it: no warning then
    call(m.result(), 'lesion-edit-side', 'onChange', 'left')
    expect(text(warningEl(m.result(), 'lesion-edit-side-warning'))).toBe('')
  })

  it('says nothing when the saved pin and side agree', () => {
    const m = host.mount(() => LesionCorrection({ lesion: lesion({ side: 'right', map: rightArm }), n: 1, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    expect(text(warningEl(m.result(), 'lesion-edit-side-warning'))).toBe('')
    expect(selectOf(m.result(), 'lesion-edit-side').props['aria-describedby']).toBeUndefined()
  })
})

describe('a Side warning is tied to the Side list (read with it as it takes focus)', () => {
  it('ChoiceField passes describedBy to its list', () => {
    const tree = ChoiceField({ id: 'f', label: 'Side', value: '', onChange: () => {}, choices: [], testId: 's', describedBy: 'w' })
    const select = [...walk(tree)].find(({ el }) => el.type === 'select')!.el
    expect(select.props['aria-describedby']).toBe('w')
  })

  it('in "Edit location"', () => {
    const m = host.mount(() => LesionCorrection({ lesion: lesion({ side: 'right', map: leftArm }), n: 1, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    unmount = m.unmount
    const tree = m.result()
    const warning = warningEl(tree, 'lesion-edit-side-warning')
    expect(warning.props.id).toBeTruthy()
    expect(selectOf(tree, 'lesion-edit-side').props['aria-describedby']).toBe(warning.props.id)
  })

  it('in the new lesion’s form', () => {
    loaded.set('8', { id: 8, ref: 'P-8', created_at: '2025-01-01', lesions: [] } satisfies Patient)
    const m = host.mount(() => ClinicPatientPage({ id: 8 }))
    unmount = m.unmount
    const map = () => [...walk(m.result())].find(({ el }) => typeof el.props.onPoint === 'function')!.el.props
    ;(map().onPoint as (p: MapPoint) => void)({ view: 'front', site: 'anterior torso', x: 75, y: 60 })
    call(m.result(), 'lesion-side', 'onChange', 'right')
    const tree = m.result()
    const warning = warningEl(tree, 'lesion-side-warning')
    expect(text(warning)).toContain('but Side is Right')
    expect(selectOf(tree, 'lesion-side').props['aria-describedby']).toBe(warning.props.id)
  })
})

describe('an arrow key at the edge says the patient’s side, as the rest of the page', () => {
  it('left and right: towards the patient’s side (flipped on the front view); up and down unchanged', () => {
    const front: MapPoint = { view: 'front', site: 'anterior torso', x: 41, y: 84 }
    const back: MapPoint = { view: 'back', site: 'posterior torso', x: 41, y: 84 }
    expect(page.edgeText(front, 'left', 1)).toMatch(/cannot move further towards the patient’s right\.$/)
    expect(page.edgeText(front, 'right', 2)).toMatch(/cannot move further towards the patient’s left \(pressed 2 times\)\.$/)
    expect(page.edgeText(back, 'left', 1)).toMatch(/cannot move further towards the patient’s left\.$/)
    expect(page.edgeText(back, 'up', 1)).toMatch(/cannot move further up\.$/)
  })
})

describe('"Patient not found" is the app’s title to keep', () => {
  it('gives its title to the app (PageTitleContext) instead of writing document.title, and takes it back', () => {
    const doc = { title: 'Patient · dermsight', body: {}, activeElement: null as unknown }
    doc.activeElement = doc.body
    vi.stubGlobal('document', doc)
    const setTitle = vi.fn()
    host.contexts.set(page.PageTitleContext, setTitle)
    failures.set('8', new ApiError(404, 'No patient with id 8'))
    const outer = host.mount(() => ClinicPatientPage({ id: 8 }))
    const el = [...walk(outer.result())].find(({ el }) => el.props.what)!.el
    outer.unmount()
    const m = host.mount(() => renderEl(el))
    m.result()
    expect(setTitle).toHaveBeenLastCalledWith('Patient not found')
    expect(doc.title).toBe('Patient · dermsight') // not written over: the app's title logic says it
    m.unmount()
    expect(setTitle).toHaveBeenLastCalledWith(null)
  })
})

describe('the account page', () => {
  it('its error is not an alert (focus goes to the field it describes: read once)', () => {
    const m = host.mount(() => ClinicAccountPage())
    unmount = m.unmount
    const el = { focus: vi.fn() }
    vi.stubGlobal('requestAnimationFrame', (fn: FrameRequestCallback) => (fn(0), 0))
    ;(byTestId(m.result(), 'account-current').el.props.ref as { current: unknown }).current = el
    const form = [...walk(m.result())].find(({ el }) => el.type === 'form')!.el
    ;(form.props.onSubmit as (e: unknown) => void)({ preventDefault: () => {} })
    const tree = m.result()
    const box = renderEl(byTestId(tree, 'account-error').el) as El
    expect(text(box)).toMatch(/Password not changed\. Enter your current password\./)
    expect([...walk(box)].some(({ el }) => el.props.role === 'alert')).toBe(false)
    expect(String(byTestId(tree, 'account-current').el.props['aria-describedby'])).toBe(box.props.id)
    expect(el.focus).toHaveBeenCalled()
  })

  it('its success message is focused and not also a live region', async () => {
    api.changePassword.mockResolvedValue({ ...session, csrf_token: 'new', sessions_ended: 0, tokens_revoked: 0 })
    const m = host.mount(() => ClinicAccountPage())
    unmount = m.unmount
    vi.stubGlobal('requestAnimationFrame', (fn: FrameRequestCallback) => (fn(0), 0))
    for (const [id, v] of [['account-current', 'correct horse'], ['account-new', 'another long passphrase'], ['account-confirm', 'another long passphrase']]) {
      ;(byTestId(m.result(), id).el.props.onChange as (e: unknown) => void)({ target: { value: v } })
    }
    const form = [...walk(m.result())].find(({ el }) => el.type === 'form')!.el
    ;(form.props.onSubmit as (e: unknown) => void)({ preventDefault: () => {} })
    // the message's ref gets a fake element as soon as it is rendered
    await new Promise((r) => setTimeout(r, 0))
    const tree = m.result()
    const done = byTestId(tree, 'account-done').el
    expect(done.props.tabIndex).toBe(-1)
    const live = [...walk(tree)].filter(({ el }) => el.props.role === 'status' || el.props['aria-live'])
    expect(live).toEqual([])
  })

  it('the navigation marks Account as the current page on #/clinic/account too', () => {
    const tree = ClinicNavLinks({ route: { page: 'account' }, session })
    expect(byTestId(tree, 'nav-admin').el.props['aria-current']).toBe('page')
    const admin = ClinicNavLinks({ route: { page: 'admin' }, session })
    expect(byTestId(admin, 'nav-admin').el.props['aria-current']).toBe('page')
    const patients = ClinicNavLinks({ route: { page: 'patients' }, session })
    expect(byTestId(patients, 'nav-admin').el.props['aria-current']).toBeUndefined()
  })
})
