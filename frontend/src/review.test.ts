// What the clinic and the pages say must be what the numbers are: the tier a lesion shows, its
// rise, the malignant share (not an absolute probability), the age, the retake badge, and an API
// image never shown after its path changed (upload.test.ts).

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard } from './api.ts'
import { RetakeBadge, TierBadge } from './clinic/badges.tsx'
import { assessedOn, lesionTierWord, RETAKE_LABEL, retakeNote, riseAcrossRefused } from './clinic/format.ts'
import type { Change, Visit } from './clinic/types.ts'
import { changeHint, malignantExcluded, malignantLabel, malignantShareNote } from './content.ts'
import { LearnPage } from './pages/LearnPage.tsx'
import { ModelPage } from './pages/ModelPage.tsx'

/** The shipped model's card (its malignant figure leaves UNK out: a share). */
const SHIPPED = JSON.parse(shippedCard) as ModelCard

/** The clinic's stylesheet as written (Vitest hands CSS imports over empty, `?raw` included). */
const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
const clinicCss = readFileSync(new URL('./clinic/clinic.css', import.meta.url), 'utf8')

// The Model page loads its card with useApiData: here it is the shipped card at once.
vi.mock('./hooks.ts', async (original) => ({
  ...(await original<typeof import('./hooks.ts')>()),
  useApiData: (path: string) => ({ data: path.endsWith('/model') ? SHIPPED : null, error: null, loading: false }),
}))

const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ')

// --- the lesion page's header ------------------------------------------------------------------

describe('the tier a lesion shows is called what it is', () => {
  it('"last assessed" only when a refused photo follows an assessed one', () => {
    expect(lesionTierWord({ latest_risk: 'high', latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-06-01' })).toBe('last assessed')
    // every photo refused: the tier shown is "Cannot assess", never "last assessed: Cannot assess"
    expect(lesionTierWord({ latest_risk: 'cannot_assess', latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-07-01' })).toBe('latest')
    expect(lesionTierWord({ latest_risk: 'low', latest_visit_risk: 'low', latest_risk_taken_at: '2025-07-01' })).toBe('latest')
  })
})

// --- a rise across a refused photo ---------------------------------------------------------------

const visit = (id: number, taken_at: string, risk: string) => ({ id, taken_at, result: { risk } }) as unknown as Visit
const change = (from_visit: number, to_visit: number, risk_rose: boolean) => ({ from_visit, to_visit, risk_rose }) as Change

describe('the lesion page says a rise the timeline cannot show', () => {
  it('low → refused → high: names the two assessed visits and the refused photo between them', () => {
    const visits = [visit(1, '2025-01-10', 'low'), visit(2, '2025-03-01', 'cannot_assess'), visit(3, '2025-05-20', 'high')]
    const changes = [change(1, 2, false), change(2, 3, false)]
    expect(riseAcrossRefused(true, visits, changes)).toBe(
      'Risk rose between the assessed visits of 2025-01-10 and 2025-05-20; a photo in between could not be assessed.',
    )
  })

  it('says nothing when the timeline flags the rise, or when the lesion’s risk did not rise', () => {
    const visits = [visit(1, '2025-01-10', 'low'), visit(2, '2025-03-01', 'high')]
    expect(riseAcrossRefused(true, visits, [change(1, 2, true)])).toBeNull()
    // low → high → low: a past rise is in the timeline, the lesion's own rise is false
    const back = [...visits, visit(3, '2025-05-01', 'low')]
    expect(riseAcrossRefused(false, back, [change(1, 2, true), change(2, 3, false)])).toBeNull()
  })
})

// --- the retake badge and the patient's lesion list ----------------------------------------------

describe('why a lesion needs a retake is readable without a mouse', () => {
  const l = { latest_risk: 'low', latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-06-01T00:00:00' }

  it('puts the why and the date in text the badge points to, not only in a tooltip', () => {
    const html = renderToStaticMarkup(createElement(RetakeBadge, { text: RETAKE_LABEL, note: retakeNote(l), testId: 'r' }))
    const described = /aria-describedby="([^"]+)"/.exec(html)?.[1]
    expect(described).toBeTruthy()
    const hidden = new RegExp(`<span id="${described}" class="visually-hidden"[^>]*>([^<]*(?:<!-- -->)?[^<]*)</span>`).exec(html)?.[1] ?? ''
    expect(text(hidden)).toContain('2025-06-01')
    expect(text(hidden)).toContain('Low risk')
  })

  it('shows the date of the assessed tier as text on the patient page', () => {
    expect(assessedOn(l)).toBe('assessed 2025-06-01')
    expect(assessedOn({ ...l, latest_visit_risk: 'low' })).toBeNull()
    expect(assessedOn({ ...l, latest_risk: 'cannot_assess' })).toBeNull()
  })

  it('is grey like "cannot assess", not the amber of a moderate tier, with its dashed border', () => {
    const rule = /\.retake-badge\s*\{([^}]*)\}/.exec(clinicCss)?.[1] ?? ''
    expect(rule).toMatch(/border:\s*1px dashed var\(--na-line\)/)
    expect(rule).toContain('var(--na-bg)')
    expect(rule).toContain('var(--na-ink)')
    expect(rule).not.toContain('moderate')
  })
})

// --- the percentage beside a tier ----------------------------------------------------------------

describe('the percentage beside a clinic tier says what it is', () => {
  it('reads "malignant share", not a bare percentage', () => {
    const t = text(renderToStaticMarkup(createElement(TierBadge, { risk: 'high', p: 0.712 })))
    expect(t).toBe('High risk · malignant share 71.2%')
    expect(text(renderToStaticMarkup(createElement(TierBadge, { risk: 'cannot_assess', p: null })))).toBe('Cannot assess')
  })
})

// --- the malignant share, with and without a card ------------------------------------------------

describe('the change between visits is a change of the malignant share', () => {
  it('says (MEL + BCC + SCC) / (1 − UNK), not "malignant probability"', () => {
    expect(changeHint(SHIPPED)).toContain('malignant share among the specific diagnoses ((MEL + BCC + SCC) / (1 − UNK))')
    expect(changeHint(null)).toContain('(MEL + BCC + SCC) / (1 − UNK) for the shipped model')
    for (const c of [SHIPPED, null]) expect(changeHint(c)).not.toMatch(/malignant probability/i)
  })
})

describe('without a card, the result tells a share from a probability', () => {
  // ISIC_0612834: UNK 99.7 %, the share is (MEL + BCC + SCC) / (1 − UNK)
  const probs = { MEL: 0.0005, NV: 0.002, BCC: 0.00005, SCC: 0.000035, UNK: 0.997416 }
  const share = { probabilities: probs, malignant_probability: 0.000585 / (1 - 0.997416) }
  const plain = { probabilities: probs, malignant_probability: 0.000585 }

  it('labels the shipped model’s share a share even before the card has loaded', () => {
    expect(malignantExcluded(null, share)).toEqual(['UNK'])
    expect(malignantLabel(null, share)).toBe('Malignant share among the specific diagnoses ((MEL + BCC + SCC) / (1 − UNK))')
    expect(malignantShareNote(null, probs, share.malignant_probability)).toContain('not the absolute probability of a cancer')
  })

  it('calls a plain sum a probability, and anything else by a neutral name', () => {
    expect(malignantLabel(null, plain)).toBe('Malignant probability (MEL + BCC + SCC)')
    expect(malignantShareNote(null, probs, plain.malignant_probability)).toBeNull()
    expect(malignantLabel(null)).toBe('Malignant figure (MEL + BCC + SCC)')
    expect(malignantLabel(null, { probabilities: probs, malignant_probability: 0.5 })).toBe('Malignant figure (MEL + BCC + SCC)')
    expect(malignantLabel(SHIPPED, plain)).toContain('Malignant share') // the card decides when there is one
  })
})

describe('the Model and Learn pages do not call the share a probability', () => {
  it('Model page: the output, the tier and the refer threshold name the malignant share', () => {
    const t = text(renderToStaticMarkup(createElement(ModelPage)))
    expect(t).toContain('Malignant share = (P(')
    expect(t).toContain('The risk tier comes from the calibrated malignant share')
    expect(t).toMatch(/High — refer: malignant share ≥ \d/)
    // (the card's own limitations may say "malignant probability": they are the card's text)
    for (const old of ['Malignant probability =', 'calibrated malignant probability', 'refer: malignant probability']) {
      expect(t).not.toContain(old)
    }
  })

  it('Learn page: the risk level is a share of the named types, compared with two cut-offs', () => {
    const t = text(renderToStaticMarkup(createElement(LearnPage)))
    expect(t).not.toContain('estimated probability that the lesion is one of the three cancers')
    expect(t).toContain('how much of the model’s estimate for the specific, named types goes to the three cancers')
    expect(t).toContain('not the chance that the lesion is a cancer')
  })
})
