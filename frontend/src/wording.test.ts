// What the result says must be what the numbers are: the class the decision rule suggests is not
// called "most likely", the malignant share among the specific diagnoses is not called an absolute
// probability, reference images labelled "unknown" are not called confirmed, and the age field
// takes the fractional ages the API takes.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it } from 'vitest'
import type { ModelCard, PredictResponse } from './api.ts'
import { PatientFields } from './components/PatientFields.tsx'
import { RiskBanner } from './components/RiskBanner.tsx'
import { SimilarCases } from './components/SimilarCases.tsx'
import { malignantLabel, malignantShareNote, malignantShortName, referenceLabel } from './content.ts'
import { mostProbableOther, parseAge } from './format.ts'

/** ISIC_0032591.jpg without metadata: nevus is the most probable class, the rule suggests melanoma. */
const PROBS = { MEL: 0.411275, NV: 0.55911, BCC: 9.3e-5, BKL: 0.001667, SCC: 0.000197, UNK: 0.027579 }
const NAMES: Record<string, string> = { MEL: 'Melanoma', NV: 'Melanocytic nevus' }

const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/\s+/g, ' ')

function banner(prediction: string, predictionName: string): string {
  return text(
    renderToStaticMarkup(
      createElement(RiskBanner, {
        risk: 'high',
        flags: [],
        audience: 'clinician',
        predictionName,
        prediction,
        probabilities: PROBS,
        nameOf: (c: string) => NAMES[c] ?? c,
      }),
    ),
  )
}

describe('the suggested class is called what it is', () => {
  it('names the rule’s class "Suggested class", never "most likely"', () => {
    const t = banner('MEL', 'Melanoma')
    expect(t).toContain('Suggested class: Melanoma')
    expect(t).not.toMatch(/most likely/i)
  })

  it('says which class is the most probable when the rule suggests another', () => {
    expect(banner('MEL', 'Melanoma')).toContain('not the highest bar: most probable is Melanocytic nevus, 55.9%')
    expect(banner('NV', 'Melanocytic nevus')).not.toContain('most probable')
    expect(mostProbableOther('MEL', PROBS)).toEqual(['NV', 0.55911])
    expect(mostProbableOther('NV', PROBS)).toBeNull()
    expect(mostProbableOther('MEL', { MEL: 0.5, NV: 0.5 })).toBeNull() // a tie: MEL is as probable
    expect(mostProbableOther(undefined, PROBS)).toBeNull()
    expect(mostProbableOther('MEL', {})).toBeNull()
  })
})

describe('the malignant share is not called an absolute probability', () => {
  const nine = ['MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC', 'UNK']
  const shipped = { classes: nine, malignant: ['MEL', 'BCC', 'SCC'], malignant_excluded: ['UNK'] } as unknown as ModelCard
  const plain = { classes: nine.slice(0, 8), malignant: ['MEL', 'BCC', 'SCC'] } as unknown as ModelCard

  it('labels it by what it is for a card that leaves UNK out', () => {
    expect(malignantLabel(shipped)).toBe('Malignant share among the specific diagnoses ((MEL + BCC + SCC) / (1 − UNK))')
    expect(malignantShortName(shipped)).toBe('malignant share')
    expect(malignantLabel(plain)).toBe('Malignant probability (MEL + BCC + SCC)')
    expect(malignantShortName(plain)).toBe('malignant probability')
  })

  it('warns when UNK holds most of the probability (ISIC_0612834: UNK 99.7 %)', () => {
    const note = malignantShareNote(shipped, { MEL: 0.0005, BCC: 0.00005, SCC: 0.000035, UNK: 0.997416 })
    expect(note).toContain('UNK holds 99.7% of the probability')
    expect(note).toContain('among the other 0.3%')
    expect(note).toContain('not the absolute probability of a cancer')
    expect(malignantShareNote(shipped, PROBS)).toBeNull() // UNK 2.8 %: nothing to warn about
    expect(malignantShareNote(plain, { UNK: 0.99 })).toBeNull() // a plain sum is a probability
  })
})

describe('reference images are labelled, not all confirmed', () => {
  const item = (diagnosis: string, diagnosis_name: string) => ({
    image_id: `ISIC_${diagnosis}`,
    diagnosis,
    diagnosis_name,
    similarity: 0.9,
    thumbnail_url: `/api/v1/reference/ISIC_${diagnosis}.webp`,
    licence: 'CC BY-NC',
    attribution: 'ISIC 2020',
  })
  const res = { risk: 'low', similar: [item('NV', 'Melanocytic nevus'), item('UNK', 'Other / unknown')] } as unknown as PredictResponse

  it('calls them labelled cases and says what "unknown" means', () => {
    const html = renderToStaticMarkup(createElement(SimilarCases, { result: res }))
    const t = text(html)
    expect(t).toContain('Similar labelled cases')
    expect(t).not.toMatch(/confirmed/i)
    expect(html).not.toMatch(/confirmed/i) // nor in the images' alt text
    expect(t).toContain('Other / unknown, not further specified (UNK)')
    expect(t).toContain('Melanocytic nevus (NV)')
    expect(referenceLabel('UNK', '')).toBe('UNK, not further specified')
    expect(referenceLabel('MEL', 'Melanoma')).toBe('Melanoma')
  })
})

describe('the age field takes fractional ages, as the API does', () => {
  it('parses 45.5 and 18 months as 1.5 years, within 0 to 120', () => {
    expect(parseAge('45.5')).toBe(45.5)
    expect(parseAge(' 1.5 ')).toBe(1.5)
    expect(parseAge('0.25')).toBe(0.25)
    expect(parseAge('120')).toBe(120)
    for (const bad of ['120.5', '-0.5', 'abc', 'NaN']) expect(() => parseAge(bad)).toThrow(/from 0 to 120/)
  })

  it('lets the browser accept decimals in the field', () => {
    const none = () => undefined
    const html = renderToStaticMarkup(
      createElement(PatientFields, { legend: 'About the patient', age: '45.5', sex: '', site: '', onAge: none, onSex: none, onSite: none }),
    )
    const input = /<input[^>]*data-testid="age-input"[^>]*>/.exec(html)?.[0] ?? ''
    expect(input).toContain('step="any"')
    expect(input).toContain('inputMode="decimal"')
    expect(input).toContain('value="45.5"')
  })
})
