// The patient page's corrections: "Correct reference" (PATCH /patients/{id}), each lesion's "Edit
// location" (PATCH /lesions/{id}: location and side, never the body site) and "Delete lesion…"
// (DELETE /lesions/{id}, after a confirm that names what goes).

import { afterEach, describe, expect, it, vi } from 'vitest'
import { SITE_LABELS } from '../content.ts'
import { byTestId, text, walk, type El } from '../testing/tree.ts'
import { lesionPlace } from './format.ts'
import type { Lesion, Patient } from './types.ts'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())
vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./session.ts', async (original) => ({
  ...(await original<typeof import('./session.ts')>()),
  useLoad: (_load: unknown, key: string) => ({ data: loaded.get(key) ?? null, error: null, loading: !loaded.has(key), reload: () => undefined }),
}))
vi.mock('../components/NewVisitForm.tsx', async (original) => ({
  ...(await original<typeof import('../components/NewVisitForm.tsx')>()),
  useUnsavedGuard: () => undefined, // the leave guard needs a window
}))

const { ClinicPatientPage, LesionCorrection, RefCorrection, lesionDeleteText } = await import('../pages/ClinicPatientPage.tsx')

afterEach(() => {
  vi.unstubAllGlobals()
})

const LESION: Lesion = {
  id: 71,
  body_site: 'posterior torso',
  side: 'left',
  location: 'mole Jane showed',
  map: null,
  n_visits: 3,
  latest_risk: 'low',
  latest_malignant_probability: 0.1,
  latest_risk_taken_at: '2025-02-01',
  latest_visit_risk: 'low',
  risk_rose: false,
  diagnosis: { code: 'NV', method: 'clinical', note: null, recorded_by: 'ana', recorded_at: '2025-03-01T00:00:00Z' },
}

function fetchLog(answer: () => Response): { url: string; init: RequestInit }[] {
  const calls: { url: string; init: RequestInit }[] = []
  vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
    calls.push({ url, init })
    return answer()
  })
  return calls
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
const props = (tree: unknown, id: string) => byTestId(tree, id).el.props as Record<string, (...a: unknown[]) => unknown>

describe('what deleting a lesion takes with it', () => {
  it('names the lesion, its visits and images, and its diagnosis', () => {
    expect(lesionDeleteText(2, 'Left, back', 3, { code: 'NV', method: 'clinical' })).toBe(
      'This deletes lesion 2 (Left, back), its 3 visits with their images and its confirmed diagnosis (NV, clinical). It cannot be undone; the patient and their other lesions stay.',
    )
    expect(lesionDeleteText(1, 'back', 1, null)).toBe(
      'This deletes lesion 1 (back) and its 1 visit with their images. It cannot be undone; the patient and their other lesions stay.',
    )
    expect(lesionDeleteText(4, 'location not recorded', 0, null)).toBe(
      'This deletes lesion 4 (location not recorded). It cannot be undone; the patient and their other lesions stay.',
    )
  })
})

describe('the patient page', () => {
  it('offers "Correct reference" and, per lesion, "Edit location" and "Delete lesion…"', () => {
    loaded.clear()
    loaded.set('5', { id: 5, ref: 'P-5', created_at: '2025-01-01', lesions: [{ ...LESION, id: 70 }, LESION] } satisfies Patient)
    const m = host.mount(() => ClinicPatientPage({ id: 5 }))
    const tree = m.result()
    const ref = [...walk(tree)].find((h) => h.el.type === RefCorrection)?.el as El
    expect(ref.props).toMatchObject({ id: 5, current: 'P-5' })
    const row = byTestId(tree, 'lesion-row-71').el
    const labels = [...walk(row)].map((h) => h.el.props['aria-label']).filter(Boolean)
    expect(labels).toEqual(['Edit location of lesion 2', 'Delete lesion 2…'])
    expect([...walk(tree)].some((h) => h.el.type === LesionCorrection)).toBe(false)

    props(row, 'lesion-delete').onClick()
    const open = [...walk(m.result())].find((h) => h.el.type === LesionCorrection)?.el as El
    expect(open.props).toMatchObject({ lesion: LESION, n: 2, mode: 'delete' })
    m.unmount()
  })
})

describe('deleting a lesion', () => {
  it('says what goes before anything is deleted, then deletes it', async () => {
    const onDone = vi.fn()
    const calls = fetchLog(() => new Response(null, { status: 204 }))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'delete', onDone, onCancel: vi.fn() }))
    const tree = m.result()
    const said = text(byTestId(tree, 'lesion-delete-text').el)
    expect(said).toBe(lesionDeleteText(2, lesionPlace(LESION, SITE_LABELS), 3, LESION.diagnosis))
    expect(said).toContain('mole Jane showed), its 3 visits with their images and its confirmed diagnosis (NV, clinical)')
    expect(calls).toEqual([])
    await props(tree, 'lesion-delete-confirm').onClick()
    expect(calls.map((c) => [c.init.method, c.url])).toEqual([['DELETE', '/api/v1/lesions/71']])
    expect(onDone).toHaveBeenCalledWith('Lesion 2 deleted.')
    m.unmount()
  })

  it('shows the server’s answer when the deletion fails, and deletes nothing more', async () => {
    const onDone = vi.fn()
    // (a 404, the lesion gone already, reloads the page instead: reviewFixes.test.tsx)
    fetchLog(() => json({ detail: 'the database is busy: try again' }, 503))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'delete', onDone, onCancel: vi.fn() }))
    await props(m.result(), 'lesion-delete-confirm').onClick()
    expect(onDone).not.toHaveBeenCalled()
    expect(String([...walk(m.result())].map((h) => h.el.props.error).find(Boolean))).toContain('The database is busy')
    m.unmount()
  })
})

describe('editing a lesion’s location', () => {
  it('sends the location and side only (the body site is not edited)', async () => {
    const onDone = vi.fn()
    const calls = fetchLog(() => json({ ...LESION, location: 'upper back', side: 'right' }))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'edit', onDone, onCancel: vi.fn() }))
    let tree = m.result()
    expect(byTestId(tree, 'lesion-edit-location').el.props.value).toBe('mole Jane showed')
    props(tree, 'lesion-edit-location').onChange({ target: { value: '  upper back ' } })
    props(m.result(), 'lesion-edit-side').onChange('right')
    tree = m.result()
    expect(text(tree)).toContain('its visits were assessed with it')
    await props(tree, 'lesion-edit-form').onSubmit({ preventDefault: () => undefined })
    expect(calls.map((c) => [c.init.method, c.url])).toEqual([['PATCH', '/api/v1/lesions/71']])
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ location: 'upper back', side: 'right' })
    expect(onDone).toHaveBeenCalledWith('Lesion 2: location and side saved.')
    m.unmount()
  })

  it('an emptied location and side are removed (null)', async () => {
    const calls = fetchLog(() => json({ ...LESION, location: null, side: null }))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    props(m.result(), 'lesion-edit-location').onChange({ target: { value: ' ' } })
    props(m.result(), 'lesion-edit-side').onChange('')
    await props(m.result(), 'lesion-edit-form').onSubmit({ preventDefault: () => undefined })
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ location: null, side: null })
    m.unmount()
  })
})

describe('correcting a reference', () => {
  it('sends the new reference and says the server’s 409', async () => {
    const onSaved = vi.fn()
    const answers = [
      json({ detail: "a patient with reference 'p-9' exists already (as 'P-9': references ignore case)" }, 409),
      json({ id: 5, ref: 'P-10', created_at: '2025-01-01', lesions: [] }),
    ]
    const calls = fetchLog(() => answers.shift()!)
    const m = host.mount(() => RefCorrection({ id: 5, current: 'Jane Doe', onSaved }))
    props(m.result(), 'ref-correct').onClick()
    expect(byTestId(m.result(), 'ref-correct-input').el.props.value).toBe('Jane Doe')
    props(m.result(), 'ref-correct-input').onChange({ target: { value: 'p-9' } })
    await props(m.result(), 'ref-correct-form').onSubmit({ preventDefault: () => undefined })
    expect(String([...walk(m.result())].map((h) => h.el.props.error).find(Boolean))).toContain("exists already (as 'P-9'")
    expect(onSaved).not.toHaveBeenCalled()
    props(m.result(), 'ref-correct-input').onChange({ target: { value: ' P-10 ' } })
    await props(m.result(), 'ref-correct-form').onSubmit({ preventDefault: () => undefined })
    expect(calls.map((c) => [c.init.method, c.url, JSON.parse(String(c.init.body))])).toEqual([
      ['PATCH', '/api/v1/patients/5', { ref: 'p-9' }],
      ['PATCH', '/api/v1/patients/5', { ref: 'P-10' }],
    ])
    expect(onSaved).toHaveBeenCalledWith('P-10')
    expect(() => byTestId(m.result(), 'ref-correct-form')).toThrow() // closed again
    m.unmount()
  })

  it('an empty reference is not sent', async () => {
    const calls = fetchLog(() => json({}))
    const m = host.mount(() => RefCorrection({ id: 5, current: 'P-1', onSaved: vi.fn() }))
    props(m.result(), 'ref-correct').onClick()
    props(m.result(), 'ref-correct-input').onChange({ target: { value: '   ' } })
    await props(m.result(), 'ref-correct-form').onSubmit({ preventDefault: () => undefined })
    expect(calls).toEqual([])
    expect([...walk(m.result())].map((h) => h.el.props.error).find(Boolean)).toBe('Type the reference (1 to 64 characters).')
    m.unmount()
  })
})
