// The clinic's lesion and patient pages, rendered with their data (no server: `useLoad` answers
// from the objects below), say which tier they show, a rise across a refused photo, what the
// percentage is and when a tier needing a retake was assessed.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import type { Lesion, LesionDetail, Patient, PatientSummary, Visit } from './clinic/types.ts'
import {
  FIGURE,
  FIGURE_MIN_PX,
  MAX_HIT_RADIUS,
  nearestPin,
  PIN_RADIUS,
  PIN_TARGET_PX,
  choiceAnnouncement,
  pinHitRadii,
  pinHitRadius,
  pinsSignature,
  tapOutcome,
  type Pin,
} from './components/BodyMap.tsx'
import { AudienceSwitch, audienceWhySentence } from './components/ClinicNav.tsx'
import { ClinicLesionPage } from './pages/ClinicLesionPage.tsx'
import { ClinicPatientPage, newLesionUnsaved, NEW_LESION_LEAVE_MESSAGE } from './pages/ClinicPatientPage.tsx'
import { ClinicPatientsPage, confirmedItems, PATIENT_LIST_NOTE } from './pages/ClinicPatientsPage.tsx'

const loaded = vi.hoisted(() => new Map<string, unknown>())

vi.mock('./clinic/session.ts', async (original) => ({
  ...(await original<typeof import('./clinic/session.ts')>()),
  useLoad: (_load: unknown, key: string) =>
    loaded.has(key)
      ? { data: loaded.get(key), error: null, loading: false, reload: () => undefined }
      : { data: null, error: null, loading: true, reload: () => undefined },
}))

const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/<!-- -->/g, '').replace(/\s+/g, ' ')

function visit(id: number, taken_at: string, risk: string, p: number | null): Visit {
  return {
    id,
    lesion_id: 70,
    taken_at,
    created_at: taken_at,
    created_by: 'dr',
    age: 7 / 12,
    sex: 'female',
    site: 'posterior torso',
    note: null,
    result: { risk, malignant_probability: p ?? undefined, flags: [] } as unknown as Visit['result'],
    image_url: `/api/v1/clinic/visits/${id}/image`,
    heatmap_url: null,
    model: { name: 'm', version: '1' },
  }
}

function lesion(over: Partial<Lesion>): Lesion {
  return {
    id: 70,
    body_site: 'posterior torso',
    side: null,
    location: null,
    map: null,
    n_visits: 3,
    latest_risk: 'high',
    latest_malignant_probability: 0.712,
    latest_risk_taken_at: '2025-05-20',
    latest_visit_risk: 'high',
    risk_rose: false,
    diagnosis: null,
    ...over,
  }
}

function lesionPage(detail: Omit<LesionDetail, 'patient' | 'diagnosis'>): string {
  loaded.clear()
  loaded.set('70', { ...detail, patient: { id: 5, ref: 'P-5' }, diagnosis: null })
  return text(renderToStaticMarkup(createElement(ClinicLesionPage, { id: 70 })))
}

/** The lesion page's title line (where the lesion's own "risk rose" badge is). */
const title = (t: string) => /Lesion: .*?visits?/.exec(t)?.[0] ?? ''


describe('the lesion page', () => {
  it('a refused latest photo: the similar cases of the latest assessed visit, said so', () => {
    const t = lesionPage({
      lesion: lesion({ n_visits: 2, latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-05-20' }),
      visits: [visit(1, '2025-05-20', 'high', 0.712), visit(2, '2025-07-01', 'cannot_assess', null)],
      changes: [],
    })
    expect(t).toContain('Similar cases')
    expect(t).toContain('the latest one the model could assess (the latest photo could not be assessed)')
    expect(t).not.toContain('For the latest visit')
  })

  it('an assessed latest photo: its own similar cases', () => {
    const t = lesionPage({ lesion: lesion({ n_visits: 1 }), visits: [visit(1, '2025-05-20', 'high', 0.712)], changes: [] })
    expect(t).toContain('For the latest visit')
  })

  it('every photo refused: "latest: Cannot assess", never "last assessed"', () => {
    const t = lesionPage({
      lesion: lesion({ n_visits: 1, latest_risk: 'cannot_assess', latest_malignant_probability: null, latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-07-01' }),
      visits: [visit(1, '2025-07-01', 'cannot_assess', null)],
      changes: [],
    })
    expect(t).toContain('1 visit · latest: Cannot assess')
    expect(t).not.toContain('last assessed')
  })

  it('a refused photo after an assessed one: "last assessed", with the malignant share named', () => {
    const t = lesionPage({
      lesion: lesion({ n_visits: 2, latest_risk: 'low', latest_malignant_probability: 0.03, latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-01-10' }),
      visits: [visit(1, '2025-01-10', 'low', 0.03), visit(2, '2025-03-01', 'cannot_assess', null)],
      changes: [{ from_visit: 1, to_visit: 2, days: 50, malignant_delta: null, tier_from: 'low', tier_to: 'cannot_assess', risk_rose: false }],
    })
    expect(t).toContain('last assessed: Low risk · malignant share 3.0%')
  })

  it('low → refused → high: the rise is said with the two assessed visits’ dates', () => {
    const t = lesionPage({
      lesion: lesion({ risk_rose: true }),
      visits: [visit(1, '2025-01-10', 'low', 0.03), visit(2, '2025-03-01', 'cannot_assess', null), visit(3, '2025-05-20', 'high', 0.712)],
      changes: [
        { from_visit: 1, to_visit: 2, days: 50, malignant_delta: null, tier_from: 'low', tier_to: 'cannot_assess', risk_rose: false },
        { from_visit: 2, to_visit: 3, days: 80, malignant_delta: null, tier_from: 'cannot_assess', tier_to: 'high', risk_rose: false },
      ],
    })
    expect(title(t)).toContain('▲ risk rose')
    expect(t).toContain('Risk rose between the assessed visits of 2025-01-10 and 2025-05-20; a photo in between could not be assessed.')
    expect(t).toContain('latest: High risk · malignant share 71.2%')
  })

  it('low → high → low: no "risk rose" for a past rise the lesion no longer has (as on the patient page)', () => {
    const t = lesionPage({
      lesion: lesion({ latest_risk: 'low', latest_malignant_probability: 0.02, risk_rose: false }),
      visits: [visit(1, '2025-01-10', 'low', 0.03), visit(2, '2025-03-01', 'high', 0.5), visit(3, '2025-05-20', 'low', 0.02)],
      changes: [
        { from_visit: 1, to_visit: 2, days: 50, malignant_delta: 0.47, tier_from: 'low', tier_to: 'high', risk_rose: true },
        { from_visit: 2, to_visit: 3, days: 80, malignant_delta: -0.48, tier_from: 'high', tier_to: 'low', risk_rose: false },
      ],
    })
    expect(title(t)).toContain('Lesion: Torso – back')
    expect(title(t)).not.toContain('risk rose') // the timeline still flags the past rise between visits 1 and 2
    expect(t).toContain('Risk rose.')
    expect(t).not.toContain('Risk rose between the assessed visits')
  })

  it('says the change is one of the malignant share, not the malignant probability', () => {
    const t = lesionPage({ lesion: lesion({ n_visits: 1 }), visits: [visit(1, '2025-01-10', 'high', 0.712)], changes: [] })
    expect(t).toContain('The change is the model’s malignant share among the specific diagnoses ((MEL + BCC + SCC) / (1 − UNK)')
    expect(t).not.toMatch(/malignant probability/i)
  })
})

describe('the patient page’s lesion list', () => {
  it('says the column is the last assessed result, and when that was, as text', () => {
    loaded.clear()
    const l = lesion({ n_visits: 2, latest_risk: 'low', latest_malignant_probability: 0.03, latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-01-10' })
    loaded.set('5', { id: 5, ref: 'P-5', created_at: '2025-01-01', lesions: [l] } satisfies Patient)
    const html = renderToStaticMarkup(createElement(ClinicPatientPage, { id: 5 }))
    const t = text(html)
    expect(t).toContain('Last assessed result')
    expect(t).not.toContain('Latest result')
    expect(t).toContain('Low risk · malignant share 3.0%')
    expect(t).toContain('latest photo: cannot assess — retake')
    expect(t).toContain('(assessed 2025-01-10)')
  })
})

// --- the mobile audit: pins' tap areas, the tables' column order and labels, the new lesion's
// unsaved work, the reason for "Clinician view only" ----------------------------------------------

describe('a pin’s tap area', () => {
  it('is the drawn dot with a mouse; on a touch screen it aims at 44 px but is capped', () => {
    for (const px of [0, 100, 153, 180, 5000]) expect(pinHitRadius(px, false)).toBe(PIN_RADIUS)
    // not measured yet: the figure's smallest size, which is its CSS min-width (100 px)
    expect(FIGURE_MIN_PX).toBe(100)
    expect(pinHitRadius(0, true)).toBe(MAX_HIT_RADIUS)
    expect(pinHitRadius(Number.NaN, true)).toBe(MAX_HIT_RADIUS)
    // 375 px phone: a figure ~153 px wide; 44 px would be 17.3 units, capped at 10
    expect(pinHitRadius(153, true)).toBe(MAX_HIT_RADIUS)
    expect(pinHitRadius(264, true)).toBe(10) // exactly 44 px there
    expect(pinHitRadius(330, true)).toBe(8)
    expect(pinHitRadius(5000, true)).toBe(PIN_RADIUS)
    for (const px of [264, 300, 400]) {
      const across = (2 * pinHitRadius(px, true) * px) / FIGURE.width
      expect(across).toBeGreaterThanOrEqual(PIN_TARGET_PX)
      expect(across).toBeLessThan(PIN_TARGET_PX + 1)
    }
    // a small share of the torso (40 x 81 units), not a third of it
    expect((Math.PI * MAX_HIT_RADIUS ** 2) / (40 * 81)).toBeLessThan(0.1)
  })

  it('is never more than half the distance to the nearest other pin of the view', () => {
    const pins: Pin[] = [
      { id: 1, view: 'back', x: 60, y: 80, label: 'a' },
      { id: 2, view: 'back', x: 60, y: 96, label: 'b' },
      { id: 3, view: 'back', x: 62, y: 82, label: 'c' },
      { id: 4, view: 'front', x: 60, y: 81, label: 'd' },
      { id: 0, view: 'back', x: 60, y: 88, label: 'new', inert: true },
    ]
    const lone = pinHitRadii(pins.slice(0, 2), 'back', 10)
    expect(lone.get(1)).toBe(8)
    expect(lone.get(2)).toBe(8)
    const all = pinHitRadii(pins, 'back', 10)
    expect(all.get(1)).toBe(PIN_RADIUS) // 2.8 units from pin 3: the dot, no less
    expect(all.get(3)).toBe(PIN_RADIUS)
    expect(all.get(2)).toBeCloseTo(7.07, 2) // 14.1 units from pin 3
    expect(all.has(0)).toBe(false) // the unsaved mark is not tap-able
    expect(all.has(4)).toBe(false) // the other view
  })

  it('asks on a tap beside a pin instead of opening it, and places a new point elsewhere', () => {
    const pins: Pin[] = [
      { id: 1, view: 'back', x: 60, y: 80, label: 'Lesion 1' },
      { id: 2, view: 'back', x: 60, y: 100, label: 'Lesion 2' },
    ]
    const radii = pinHitRadii(pins, 'back', pinHitRadius(153, true))
    const near = tapOutcome(pins, 'back', 66, 80, radii)
    expect(near.kind).toBe('ask')
    expect(near.kind === 'ask' && near.pin.id).toBe(1)
    expect(tapOutcome(pins, 'back', 60, 93, radii)).toMatchObject({ kind: 'ask', pin: { id: 2 } })
    expect(tapOutcome(pins, 'back', 71, 80, radii)).toEqual({ kind: 'place' }) // 11 units away
    expect(tapOutcome(pins, 'front', 60, 80, radii)).toEqual({ kind: 'place' })
  })

  it('opens the nearest pin of the tapped view, never the unsaved mark nor one out of reach', () => {
    const pins: Pin[] = [
      { id: 1, view: 'back', x: 60, y: 80, label: 'a' },
      { id: 2, view: 'back', x: 70, y: 80, label: 'b' },
      { id: 3, view: 'front', x: 64, y: 80, label: 'c' },
      { id: 0, view: 'back', x: 63, y: 80, label: 'new', inert: true },
    ]
    expect(nearestPin(pins, 'back', 64, 80, 11)?.id).toBe(1)
    expect(nearestPin(pins, 'back', 66, 81, 11)?.id).toBe(2)
    expect(nearestPin(pins, 'front', 60, 80, 11)?.id).toBe(3)
    expect(nearestPin(pins, 'back', 60, 100, 11)).toBeNull()
    expect(nearestPin([pins[3]], 'back', 63, 80, 11)).toBeNull()
  })

  it('draws no invisible tap areas on the patient page, and its hint says a tap beside a pin asks', () => {
    loaded.clear()
    const l = lesion({ map: { view: 'back', x: 0.5, y: 0.3 } })
    loaded.set('8', { id: 8, ref: 'P-8', created_at: '2025-01-01', lesions: [l] } satisfies Patient)
    const html = renderToStaticMarkup(createElement(ClinicPatientPage, { id: 8 }))
    expect(html).not.toContain('bodymap-pin-hit')
    expect(html).not.toContain('data-testid="bodymap-choice"') // only after a tap beside a pin
    expect(html).toMatch(/data-testid="pin-70"[^>]*>(<title>[^<]*<\/title>)?<circle cx="60" cy="72" r="4.5"/)
    expect(text(html)).toContain('a tap just beside a pin asks whether you meant that lesion or a new one there')
  })

  it('announces the choice politely, from a live region there before it opens', () => {
    loaded.clear()
    const l = lesion({ map: { view: 'back', x: 0.5, y: 0.3 } })
    loaded.set('8', { id: 8, ref: 'P-8', created_at: '2025-01-01', lesions: [l] } satisfies Patient)
    const html = renderToStaticMarkup(createElement(ClinicPatientPage, { id: 8 }))
    // empty until a tap beside a pin fills it (a region added with its text is often not read)
    expect(html).toMatch(/<p class="visually-hidden" role="status" aria-live="polite" data-testid="bodymap-choice-status"><\/p>/)
    expect(choiceAnnouncement('Lesion 1')).toBe(
      'Your tap was beside a pin (Lesion 1). Open it, place a new lesion here, or cancel?',
    )
  })

  it('drops a pending choice when the pins change (it may name a lesion just deleted)', () => {
    const pins: Pin[] = [
      { id: 1, view: 'back', x: 60, y: 80, label: 'Lesion 1' },
      { id: 2, view: 'back', x: 70, y: 80, label: 'Lesion 2' },
    ]
    const same = pins.map((p) => ({ ...p }))
    expect(pinsSignature(same)).toBe(pinsSignature(pins)) // a parent's new array of the same pins
    expect(pinsSignature([pins[1]])).not.toBe(pinsSignature(pins)) // deleted
    expect(pinsSignature([pins[0], { ...pins[1], label: 'Lesion 3' }])).not.toBe(pinsSignature(pins))
    expect(pinsSignature([pins[0], { ...pins[1], x: 71 }])).not.toBe(pinsSignature(pins))
  })
})

describe('the clinic tables on a narrow screen', () => {
  it('the patient list puts the confirmed diagnosis, then the model’s tier, after the reference, each cell labelled', () => {
    loaded.clear()
    const row: PatientSummary = {
      id: 3,
      ref: 'P-3',
      created_at: '2025-01-01',
      n_lesions: 2,
      n_visits: 4,
      last_visit_at: '2025-05-20T10:00:00Z',
      latest_risk: 'high',
      latest_visit_risk: 'high',
      highest_risk: 'high',
      n_lesions_latest_cannot_assess: 0,
      risk_rose: false,
      confirmed: [],
      n_confirmed_malignant: 0,
    }
    loaded.set('', [row])
    const html = renderToStaticMarkup(createElement(ClinicPatientsPage))
    const heads = [...html.matchAll(/<th scope="col"[^>]*>([^<]*)<\/th>/g)].map((m) => m[1].trim())
    expect(heads).toEqual(['Reference', 'Confirmed diagnosis', 'Model’s highest tier', 'Lesions', 'Visits', 'Last visit'])
    const labels = [...html.matchAll(/<td data-label="([^"]*)"/g)].map((m) => m[1])
    expect(labels).toEqual(heads.slice(1))
    expect(html).toContain('class="data-table clinic-table stack-narrow"')
  })

  it('says what the diagnosis and tier columns are on the screen, not in a hover-only title', () => {
    loaded.clear()
    loaded.set('', [])
    const html = renderToStaticMarkup(createElement(ClinicPatientsPage))
    expect(html).not.toMatch(/<th[^>]*title=/)
    const note = /data-testid="patient-tier-note"[^>]*>([^<]*)</.exec(html)?.[1]
    expect(note).toBe(PATIENT_LIST_NOTE)
    expect(note).toMatch(/^Confirmed diagnosis: .*Model’s highest tier: .*does not take confirmed diagnoses into account/)
  })

  it('the lesion list puts the last assessed result and the diagnosis before the visits', () => {
    loaded.clear()
    loaded.set('5', { id: 5, ref: 'P-5', created_at: '2025-01-01', lesions: [lesion({})] } satisfies Patient)
    const html = renderToStaticMarkup(createElement(ClinicPatientPage, { id: 5 }))
    const heads = [...html.matchAll(/<th scope="col"[^>]*>([^<]*)<\/th>/g)].map((m) => m[1].trim())
    expect(heads).toEqual(['Lesion', 'Last assessed result', 'Confirmed diagnosis', 'Visits', 'Actions'])
    const labels = [...html.matchAll(/<td data-label="([^"]*)"/g)].map((m) => m[1])
    expect(labels).toEqual(heads.slice(1))
  })
})

describe('the new lesion’s form', () => {
  const empty = { point: null, site: '', side: '', location: '' }
  it('has unsaved work once a point is placed or a field is filled in', () => {
    expect(newLesionUnsaved(empty)).toBe(false)
    expect(newLesionUnsaved({ ...empty, location: '   ' })).toBe(false)
    expect(newLesionUnsaved({ ...empty, location: '2 cm above the knee' })).toBe(true)
    expect(newLesionUnsaved({ ...empty, site: 'posterior torso' })).toBe(true)
    expect(newLesionUnsaved({ ...empty, side: 'left' })).toBe(true)
    expect(newLesionUnsaved({ ...empty, point: { view: 'back', x: 60, y: 80, site: 'posterior torso' } })).toBe(true)
  })

  it('says what leaving would lose, without claiming more', () => {
    expect(NEW_LESION_LEAVE_MESSAGE).toMatch(/^The new lesion is not saved: .* Leave this page\?$/)
  })
})

describe('"Clinician view only" on clinic pages', () => {
  it('opens its reason on a tap or a key press (a disclosure), not in a title only', () => {
    const html = renderToStaticMarkup(createElement(AudienceSwitch, { audience: 'clinician', onChoose: () => {}, clinic: true }))
    expect(html).toMatch(/^<details [^>]*data-testid="audience-clinic-note"/)
    expect(html).toContain('<summary')
    expect(html).not.toContain('title=')
    expect(text(html)).toContain(audienceWhySentence())
    expect(audienceWhySentence()).toMatch(/^The clinic pages .*no patient view.*\.$/)
  })
})

describe('the patient list’s confirmed diagnoses', () => {
  const summary = (over: Partial<PatientSummary>): PatientSummary => ({
    id: 8,
    ref: 'P-8',
    created_at: '2025-01-01',
    n_lesions: 1,
    n_visits: 2,
    last_visit_at: '2025-06-01',
    latest_risk: 'moderate',
    latest_visit_risk: 'moderate',
    highest_risk: 'moderate',
    n_lesions_latest_cannot_assess: 0,
    risk_rose: false,
    confirmed: [],
    n_confirmed_malignant: 0,
    ...over,
  })
  const cell = (html: string, testId: string) => text(new RegExp(`data-testid="${testId}"[^>]*>(.*?)</td>`).exec(html)?.[1] ?? '').trim()

  it('a confirmed melanoma is said, marked malignant in words, before the model’s tier', () => {
    loaded.clear()
    const mel = { lesion_id: 1, code: 'MEL', method: 'histopathology' as const, malignant: true }
    loaded.set('', [summary({ confirmed: [mel], n_confirmed_malignant: 1 })])
    const html = renderToStaticMarkup(createElement(ClinicPatientsPage))
    expect(cell(html, 'patient-dx-cell')).toBe('MEL (histopathology) · malignant')
    expect(html).toMatch(/<strong class="dx-malignant">MEL \(histopathology\)/)
    expect(cell(html, 'patient-tier-cell')).toBe('Model: Moderate risk')
    expect(html.indexOf('patient-dx-cell')).toBeLessThan(html.indexOf('patient-tier-cell'))
  })

  it('no diagnosis: "none recorded"; the tier is the model’s', () => {
    loaded.clear()
    loaded.set('', [summary({ highest_risk: 'high', risk_rose: true })])
    const html = renderToStaticMarkup(createElement(ClinicPatientsPage))
    expect(cell(html, 'patient-dx-cell')).toBe('none recorded')
    expect(cell(html, 'patient-tier-cell')).toBe('Model: High risk ▲ risk rose')
  })

  it('groups a code and method over lesions, malignant ones first', () => {
    expect(
      confirmedItems([
        { lesion_id: 1, code: 'NV', method: 'clinical', malignant: false },
        { lesion_id: 2, code: 'NV', method: 'clinical', malignant: false },
        { lesion_id: 3, code: 'NV', method: 'histopathology', malignant: false },
        { lesion_id: 4, code: 'BCC', method: 'histopathology', malignant: true },
      ]),
    ).toEqual([
      { text: 'BCC (histopathology)', malignant: true },
      { text: 'NV (clinical) ×2', malignant: false },
      { text: 'NV (histopathology)', malignant: false },
    ])
    expect(confirmedItems(undefined)).toEqual([])
  })
})
