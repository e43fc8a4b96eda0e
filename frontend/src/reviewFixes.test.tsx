// Findings of a review of the patient page's corrections and the Assess page's wording: "Edit
// location" recorded a side the lesion's pin contradicted; the body map's figures were squeezed to
// 210-244 px on a landscape tablet; a failed delete or save dropped the focus to <body>; a lesion
// deleted elsewhere (404) stayed on screen; the row's buttons were read as part of the row's name;
// the correction forms lost typed text without asking; the patient view's share of cancers was
// rounded half up (the card's text, in Python, half to even); the uncertain result's announcement
// had its own wording path.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { byTestId, walk, type El } from './testing/tree.ts'
import type { Lesion, Patient } from './clinic/types.ts'
import { FIGURE, REGIONS, pointSide, shapeMiddle } from './components/BodyMap.tsx'

const host = await vi.hoisted(async () => (await import('./testing/hookHost.ts')).createHookHost())
vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./clinic/session.ts', async (original) => ({
  ...(await original<typeof import('./clinic/session.ts')>()),
  useLoad: (_load: unknown, key: string) => ({ data: loaded.get(key) ?? null, error: null, loading: !loaded.has(key), reload: () => undefined }),
}))
const guards = vi.hoisted(() => [] as [boolean, string | undefined][])
vi.mock('./components/NewVisitForm.tsx', async (original) => ({
  ...(await original<typeof import('./components/NewVisitForm.tsx')>()),
  useUnsavedGuard: (dirty: boolean, message?: string) => {
    guards.push([dirty, message])
  },
}))

const page = await import('./pages/ClinicPatientPage.tsx')
const { ClinicPatientPage, LesionCorrection, RefCorrection } = page
const { patientLimits, roundHalfEven } = await import('./components/NaturalFrequency.tsx')
const { assessAnnouncement } = await import('./content.ts')
const { UNCERTAIN_HEADLINE } = await import('./components/RiskBanner.tsx')

afterEach(() => {
  vi.unstubAllGlobals()
  guards.length = 0
})

const LESION: Lesion = {
  id: 71,
  body_site: 'upper extremity',
  side: 'left',
  location: 'mole on the arm',
  map: null,
  n_visits: 1,
  latest_risk: 'low',
  latest_malignant_probability: 0.1,
  latest_risk_taken_at: '2025-02-01',
  latest_visit_risk: 'low',
  risk_rose: false,
  diagnosis: null,
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
const submitEvent = { preventDefault: () => undefined }

/** The middle of the front view's arm on the patient's `side`, as the API keeps a pin (fractions). */
function armPin(side: 'left' | 'right'): { view: 'front'; x: number; y: number } {
  const arms = REGIONS.front.find((r) => r.site === 'upper extremity')!.shapes
  for (const s of arms) {
    const m = shapeMiddle(s)
    if (pointSide({ view: 'front', x: m.x, y: m.y, site: 'upper extremity' }) === side) return { view: 'front', x: m.x / FIGURE.width, y: m.y / FIGURE.height }
  }
  throw new Error('no arm on that side')
}

describe('"Edit location": the side and the pin say the same', () => {
  it('a new side moves the pin to the mirror place, sent with it and said in the status', async () => {
    const left = armPin('left')
    const right = armPin('right')
    const onDone = vi.fn()
    const calls = fetchLog(() => json({ ...LESION, side: 'right' }))
    const m = host.mount(() => LesionCorrection({ lesion: { ...LESION, map: left }, n: 2, mode: 'edit', onDone, onCancel: vi.fn() }))
    props(m.result(), 'lesion-edit-side').onChange('right')
    await props(m.result(), 'lesion-edit-form').onSubmit(submitEvent)
    const body = JSON.parse(String(calls[0].init.body))
    expect(body.side).toBe('right')
    expect(body.map.view).toBe('front')
    expect(body.map.x).toBeCloseTo(right.x, 2)
    expect(body.map.y).toBe(left.y)
    expect(onDone).toHaveBeenCalledWith('Lesion 2: side saved. Its pin on the body map moved to the patient’s right arm to match the side.')
    m.unmount()
  })

  it('no pin, or the side unchanged: no map sent; the status says what changed', async () => {
    const onDone = vi.fn()
    const calls = fetchLog(() => json(LESION))
    let m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'edit', onDone, onCancel: vi.fn() }))
    props(m.result(), 'lesion-edit-side').onChange('right')
    await props(m.result(), 'lesion-edit-form').onSubmit(submitEvent)
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ location: 'mole on the arm', side: 'right' })
    expect(onDone).toHaveBeenLastCalledWith('Lesion 2: side saved.')
    m.unmount()
    m = host.mount(() => LesionCorrection({ lesion: { ...LESION, map: armPin('left') }, n: 2, mode: 'edit', onDone, onCancel: vi.fn() }))
    props(m.result(), 'lesion-edit-location').onChange({ target: { value: 'upper arm' } })
    await props(m.result(), 'lesion-edit-form').onSubmit(submitEvent)
    expect(JSON.parse(String(calls[1].init.body))).toEqual({ location: 'upper arm', side: 'left' })
    expect(onDone).toHaveBeenLastCalledWith('Lesion 2: location saved.')
    m.unmount()
  })

  it('nothing changed: nothing sent', async () => {
    const onDone = vi.fn()
    const calls = fetchLog(() => json(LESION))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'edit', onDone, onCancel: vi.fn() }))
    await props(m.result(), 'lesion-edit-form').onSubmit(submitEvent)
    expect(calls).toEqual([])
    expect(onDone).toHaveBeenCalledWith('Lesion 2: nothing changed.')
    m.unmount()
  })

  it('a side is checked, never cast', () => {
    expect(page.asSide('left')).toBe('left')
    expect(page.asSide('midline')).toBe('midline')
    expect(page.asSide('')).toBeNull()
    expect(page.asSide('up')).toBeNull()
  })
})

describe('the tablet layout', () => {
  it('on a touch screen up to 1366 px wide the map has the row to itself (figures of 280 px, not 210-244)', async () => {
    const NODE_FS = 'node:fs'
    const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
    const css = readFileSync(new URL('./styles.css', import.meta.url), 'utf8')
    const blocks = [...css.matchAll(/@media \(pointer: coarse\) and \(max-width: (\d+)px\) \{\s*\.clinic-map-grid \{\s*grid-template-columns: minmax\(0, 1fr\);/g)]
    expect(blocks.map((b) => Number(b[1])).some((w) => w >= 1366)).toBe(true)
    expect(css).toMatch(/\.lesion-row-actions \{[^}]*gap: (8|9|1\d)px/)
  })
})

describe('a failed delete or save keeps the focus where the user is', () => {
  it('the delete box focuses its error (a second failure too)', async () => {
    const answers = [json({ detail: 'first failure' }, 503), json({ detail: 'second failure' }, 503)]
    fetchLog(() => answers.shift()!)
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'delete', onDone: vi.fn(), onCancel: vi.fn() }))
    await props(m.result(), 'lesion-delete-confirm').onClick()
    const box = byTestId(m.result(), 'lesion-correction-error').el
    expect(box.props.tabIndex).toBe(-1)
    const focus = vi.fn()
    ;(box.props.ref as { current: unknown }).current = { focus }
    await props(m.result(), 'lesion-delete-confirm').onClick()
    m.result()
    expect(focus).toHaveBeenCalledTimes(1)
    m.unmount()
  })

  it('a refused reference (409) focuses the input, marked invalid and described by the error', async () => {
    fetchLog(() => json({ detail: "a patient with reference 'P-9' exists already" }, 409))
    const m = host.mount(() => RefCorrection({ id: 5, current: 'P-1', onSaved: vi.fn() }))
    props(m.result(), 'ref-correct').onClick()
    const input = byTestId(m.result(), 'ref-correct-input').el
    expect(input.props['aria-invalid']).toBeUndefined()
    const focus = vi.fn()
    ;(input.props.ref as { current: unknown }).current = { focus }
    props(m.result(), 'ref-correct-input').onChange({ target: { value: 'P-9' } })
    await props(m.result(), 'ref-correct-form').onSubmit(submitEvent)
    const after = byTestId(m.result(), 'ref-correct-input').el
    expect(focus).toHaveBeenCalledTimes(1)
    expect(after.props['aria-invalid']).toBe(true)
    const errorId = String(after.props['aria-describedby']).split(' ')[1]
    expect([...walk(m.result())].some((h) => h.el.props.id === errorId && h.el.props.error)).toBe(true)
    m.unmount()
  })
})

describe('a lesion deleted already (404)', () => {
  it('is said and the page reloaded (its row goes), not left as an error', async () => {
    const onDone = vi.fn()
    fetchLog(() => json({ detail: 'no lesion with id 71' }, 404))
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'delete', onDone, onCancel: vi.fn() }))
    await props(m.result(), 'lesion-delete-confirm').onClick()
    expect(onDone).toHaveBeenCalledWith('Lesion 2 had already been deleted.')
    m.unmount()
  })
})

describe('the lesion table', () => {
  it('the row header is the lesion; its buttons are in their own "Actions" cell', () => {
    loaded.clear()
    loaded.set('5', { id: 5, ref: 'P-5', created_at: '2025-01-01', lesions: [LESION] } satisfies Patient)
    const m = host.mount(() => ClinicPatientPage({ id: 5 }))
    const row = byTestId(m.result(), 'lesion-row-71').el
    const cells = (row.props.children as unknown[]).flat().filter((c): c is El => !!c && typeof c === 'object' && 'props' in c)
    const header = cells.find((c) => c.type === 'th')!
    expect([...walk(header)].some((h) => h.el.type === 'button')).toBe(false)
    const actions = cells.find((c) => c.props['data-label'] === 'Actions')!
    expect(actions.type).toBe('td')
    expect([...walk(actions)].map((h) => h.el.props['data-testid']).filter((t) => t === 'lesion-edit' || t === 'lesion-delete')).toEqual(['lesion-edit', 'lesion-delete'])
    m.unmount()
  })
})

describe('the correction forms ask before typed text is lost', () => {
  it('"Correct reference" once a new reference is typed', () => {
    const m = host.mount(() => RefCorrection({ id: 5, current: 'P-1', onSaved: vi.fn() }))
    expect(guards.at(-1)).toEqual([false, page.REF_LEAVE_MESSAGE])
    props(m.result(), 'ref-correct').onClick()
    props(m.result(), 'ref-correct-input').onChange({ target: { value: 'P-2' } })
    m.result()
    expect(guards.at(-1)).toEqual([true, page.REF_LEAVE_MESSAGE])
    m.unmount()
  })

  it('"Edit location" once the location or the side is changed', () => {
    const m = host.mount(() => LesionCorrection({ lesion: LESION, n: 2, mode: 'edit', onDone: vi.fn(), onCancel: vi.fn() }))
    expect(guards.at(-1)).toEqual([false, page.LESION_EDIT_LEAVE_MESSAGE])
    props(m.result(), 'lesion-edit-side').onChange('right')
    m.result()
    expect(guards.at(-1)).toEqual([true, page.LESION_EDIT_LEAVE_MESSAGE])
    m.unmount()
  })
})

describe('one rounding, one wording', () => {
  it('the patient view rounds the share as the card’s text does (Python: half to even)', () => {
    expect([0.5, 1.5, 2.5, 6.5, 7.5, 62.5, 6.4, 6.6].map(roundHalfEven)).toEqual([0, 2, 2, 6, 8, 62, 6, 7])
    // 2 of 13: 6.5 → "1 in 6" (limits_text says the same); 5 of 8: 62.5 → 62 %
    expect(patientLimits(13, 2)).toContain('about 1 in 6 of the spots')
    expect(patientLimits(8, 5)).toContain('about 62 % of the spots')
  })

  it('the uncertain result is announced through assessAnnouncement', () => {
    expect(assessAnnouncement({ risk: 'low', audience: 'patient', busy: false, slow: false, headline: UNCERTAIN_HEADLINE })).toBe(
      'Result: uncertain. It cannot be relied on for this kind of photo.',
    )
    expect(assessAnnouncement({ risk: 'low', audience: 'patient', busy: false, slow: false, headline: null })).toMatch(/^Result: /)
  })
})
