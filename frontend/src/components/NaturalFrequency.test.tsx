// The natural frequency said of the model it comes from: its own malignant classes, "public
// research collections" only for images from them, and no figure for a tier of a handful of
// images (a researcher's 4-class model had a low tier of "0 of 2", shown as "none turned out to
// be cancer"). The shipped card reads as before.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it } from 'vitest'
import shippedCard from '../../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard } from '../api.ts'
import { visibleText } from '../testing/html.ts'
import { MIN_TIER_IMAGES, NaturalFrequency, malignantWords, patientLimits, tierFrequency } from './NaturalFrequency.tsx'

const SHIPPED = JSON.parse(shippedCard) as ModelCard

/** the researcher's bundle: four classes, trained on its own cohort (source "cohort3") */
const OWN: ModelCard = {
  ...SHIPPED,
  classes: ['MEL', 'NV', 'BCC', 'BKL'],
  malignant: ['MEL', 'BCC'],
  natural_frequencies: {
    split: 'validation',
    n: 24,
    malignant: 8,
    per_tier: {
      high: { n: 22, malignant: 8, per_100: 36 },
      moderate: { n: 0, malignant: 0, per_100: null },
      low: { n: 2, malignant: 0, per_100: 0 },
    },
    malignant_means: 'MEL, BCC or SCC (histopathology or expert consensus in the source data)',
    limits: 'Counted on the validation images the model was built from, whose mix of diagnoses (about 1 in 3 malignant) …',
    source_mix: { cohort3: 24 },
  },
}

function view(card: ModelCard, risk: string, audience: 'patient' | 'clinician' = 'patient'): string {
  return visibleText(renderToStaticMarkup(createElement(NaturalFrequency, { card, risk, audience })))
}

/** the researcher's bundle had its high tier been counted on 40 images */
const OWN40: ModelCard = {
  ...OWN,
  natural_frequencies: {
    ...(OWN.natural_frequencies as object),
    per_tier: { high: { n: 40, malignant: 8, per_100: 20 } },
  },
}

/** the shipped card with its tiers' counts replaced */
function shippedWith(perTier: Record<string, unknown>): ModelCard {
  return { ...SHIPPED, natural_frequencies: { ...(SHIPPED.natural_frequencies as object), per_tier: perTier } }
}

describe('a tier of too few images', () => {
  it('gets no figure: "0 of 2" is not "none turned out to be cancer"', () => {
    const p = view(OWN, 'low')
    expect(p).not.toContain('none turned out to be cancer')
    expect(p).not.toMatch(/Of 100 lesions/)
    expect(p).toContain('Too few images got this result to count how often it turned out to be cancer')
    expect(p).toContain(`Only 2 photos (kept out of the tool’s training) got it, fewer than the ${MIN_TIER_IMAGES} needed.`)
    expect(tierFrequency(OWN, 'low')?.tier.per100).toBeNull()
    expect(view(OWN, 'low', 'clinician')).toContain('Only 2 validation images (kept out of training) got it')
  })

  it('withholds below 30 images and counts from 30', () => {
    expect(MIN_TIER_IMAGES).toBe(30)
    const card = shippedWith({ low: { n: 29, malignant: 0, per_100: 0 }, high: { n: 30, malignant: 9, per_100: 30 } })
    expect(tierFrequency(card, 'low')?.tier.per100).toBeNull()
    expect(tierFrequency(card, 'high')?.tier.per100).toBe(30)
    expect(view(card, 'high')).toContain('Of 100 lesions that get this result, about 30 turned out to be cancer')
  })

  it('leaves every tier of the shipped card counted', () => {
    for (const risk of ['high', 'moderate', 'low']) expect(tierFrequency(SHIPPED, risk)?.tier.per100).not.toBeNull()
  })
})

describe('the words of the model it comes from', () => {
  it('names its own malignant classes', () => {
    expect(malignantWords(OWN)).toBe('melanoma or basal cell carcinoma')
    expect(view(OWN40, 'high')).toContain('(melanoma or basal cell carcinoma)')
    expect(view(OWN40, 'high')).not.toContain('squamous')
  })

  it('calls its photos public research collections only when they are', () => {
    const p = view(OWN40, 'high')
    expect(p).toContain('Counted on the 40 photos (kept out of the tool’s training) that got this result: 8 were cancer.')
    expect(p).not.toContain('public')
    expect(p).not.toContain('research')
    expect(p).toContain('These photos are the ones the tool was built from, where about 1 in 3 of the spots were cancer')
    expect(p).toContain('it is not your own chance of having cancer')
    expect(patientLimits(24, 8, false)).not.toContain('public')
  })

  it('keeps the shipped card’s words', () => {
    expect(malignantWords(SHIPPED)).toBe('melanoma, basal cell or squamous cell carcinoma')
    const p = view(SHIPPED, 'low')
    expect(p).toContain('(melanoma, basal cell or squamous cell carcinoma). Counted on the 718 research photos')
    expect(p).toContain('These photos come from public research collections of dermatoscope pictures, where about 1 in 6')
    expect(patientLimits(1996, 335)).toBe(patientLimits(1996, 335, true))
  })
})
