import { describe, expect, it } from 'vitest'
import type { ModelCard } from './api.ts'
import { cardMetricSets, cardThresholds } from './card.ts'
import { riskText } from './content.ts'
import {
  ageFieldText,
  formatAge,
  checkImageForm,
  classMixSentence,
  countWord,
  errorMessageFrom,
  formatInterval,
  formatPercent,
  heatmapSrc,
  humanize,
  isDicom,
  keptSentence,
  parseAge,
  sortedByProbability,
} from './format.ts'
import { routeFromHash } from './hooks.ts'

describe('formatPercent', () => {
  it('formats probabilities', () => {
    expect(formatPercent(0.1234)).toBe('12.3%')
    expect(formatPercent(0)).toBe('0.0%')
    expect(formatPercent(1)).toBe('100.0%')
    expect(formatPercent(0.0004)).toBe('<0.1%')
    expect(formatPercent(0.99995)).toBe('>99.9%')
    expect(formatPercent(undefined)).toBe('—')
    expect(formatPercent(Number.NaN)).toBe('—')
  })
})

describe('errorMessageFrom', () => {
  it('uses a string detail', () => {
    expect(errorMessageFrom(415, { detail: 'not an image: cannot identify image file' })).toBe(
      'not an image: cannot identify image file',
    )
  })
  it('joins FastAPI validation errors', () => {
    const body = { detail: [{ loc: ['body', 'age'], msg: 'Input should be less than or equal to 120' }] }
    expect(errorMessageFrom(422, body)).toBe('age: Input should be less than or equal to 120')
  })
  it('falls back by status', () => {
    expect(errorMessageFrom(413, null)).toMatch(/too large/)
    expect(errorMessageFrom(502, 'x')).toMatch(/HTTP 502/)
  })
})

describe('isDicom', () => {
  const head = (magic: string) => {
    const b = new Uint8Array(200)
    for (let i = 0; i < magic.length; i++) b[128 + i] = magic.charCodeAt(i)
    return b
  }
  it('reads the DICM magic at byte 128 whatever the name', () => {
    expect(isDicom('scan', '', head('DICM'))).toBe(true)
    expect(isDicom('lesion.jpg', 'image/jpeg', head('DICM'))).toBe(true)
  })
  it('trusts the content over the name once the bytes are known', () => {
    expect(isDicom('lesion.dcm', 'application/dicom', head('JFIF'))).toBe(false)
    expect(isDicom('short.dcm', '', new Uint8Array(40))).toBe(false)
  })
  it('guesses from the MIME type or extension before the bytes are read', () => {
    expect(isDicom('ISIC_1.DCM', '')).toBe(true)
    expect(isDicom('x.dicom', '')).toBe(true)
    expect(isDicom('x', 'application/dicom')).toBe(true)
    expect(isDicom('x.jpg', 'image/jpeg')).toBe(false)
    expect(isDicom('dcm.png', 'image/png')).toBe(false)
  })
})

describe('keptSentence', () => {
  it('names the fields still filled in', () => {
    expect(keptSentence(true, true, true)).toBe('Age, sex and body site are kept from the previous image.')
    expect(keptSentence(true, false, true)).toBe('Age and body site are kept from the previous image.')
    expect(keptSentence(false, false, true)).toBe('Body site is kept from the previous image.')
    expect(keptSentence(false, false, false)).toBe('')
  })
})

describe('parseAge', () => {
  it('accepts empty and whole numbers in range', () => {
    expect(parseAge('')).toBeNull()
    expect(parseAge(' 42 ')).toBe(42)
    expect(parseAge('0')).toBe(0)
    expect(parseAge('120')).toBe(120)
  })
  it('rejects the rest', () => {
    for (const bad of ['121', '-1', '120.5', 'abc']) expect(() => parseAge(bad)).toThrow(/0 to 120/)
  })
  it('rejects what the browser could not parse (its number field then reads as empty)', () => {
    expect(() => parseAge('', true)).toThrow(/0 to 120/)
    expect(() => parseAge('42', true)).toThrow(/0 to 120/)
  })
})

describe('checkImageForm', () => {
  const file = new File([new Uint8Array([1, 2, 3])], 'lesion.jpg', { type: 'image/jpeg' })
  it('stops a form without a file, with the form\'s own message', () => {
    expect(checkImageForm(null, '42', false, 'Choose an image.')).toEqual({ error: 'Choose an image.' })
  })
  it('stops an invalid age with parseAge\'s message', () => {
    expect(checkImageForm(file, '130', false, 'x')).toEqual({ error: 'Age must be a number of years from 0 to 120 (e.g. 45, or 1.5 for 18 months).' })
    expect(checkImageForm(file, '', true, 'x')).toEqual({ error: 'Age must be a number of years from 0 to 120 (e.g. 45, or 1.5 for 18 months).' })
  })
  it('passes the file and the parsed age (or null) on', () => {
    expect(checkImageForm(file, ' 42 ', false, 'x')).toEqual({ file, age: 42 })
    expect(checkImageForm(file, '', undefined, 'x')).toEqual({ file, age: null })
  })
})

describe('misc helpers', () => {
  it('builds a data URL for the heatmap', () => {
    expect(heatmapSrc('iVBOR')).toBe('data:image/png;base64,iVBOR')
    expect(heatmapSrc('data:image/png;base64,x')).toBe('data:image/png;base64,x')
    expect(heatmapSrc(null)).toBeNull()
  })
  it('sorts classes by probability', () => {
    expect(sortedByProbability({ MEL: 0.2, NV: 0.7, BCC: 0.1 }).map(([c]) => c)).toEqual(['NV', 'MEL', 'BCC'])
  })
  it('humanizes keys and intervals', () => {
    expect(humanize('balanced_accuracy')).toBe('Balanced accuracy')
    expect(humanize('mel_sensitivity_at_refer')).toBe('MEL sensitivity at refer')
    expect(formatInterval({ value: 0.9123, lo: 0.9, hi: 0.93 })).toBe('0.912 (0.900–0.930)')
  })
  it('routes hashes', () => {
    expect(routeFromHash('')).toBe('assess')
    expect(routeFromHash('#/')).toBe('assess')
    expect(routeFromHash('#/learn')).toBe('learn')
    expect(routeFromHash('#/model/')).toBe('model')
  })
  it('has next-step text for every risk tier', () => {
    expect(riskText('high').nextStep).toBe('Refer / see a dermatologist soon')
    expect(riskText('cannot_assess').nextStep).toBe('We cannot assess this image')
    expect(riskText('weird').label).toContain('weird')
  })
})

describe('model card accessors', () => {
  it('reads nested and flat metrics defensively', () => {
    expect(cardMetricSets(null)).toEqual([])
    expect(cardMetricSets({ metrics: { auc: { value: 0.9, lo: 0.8, hi: 0.95 } } })[0][0]).toBe('test')
    const sets = cardMetricSets({ metrics: { val: { auc: 0.8 }, test: { auc: 0.9 } } })
    expect(sets.map(([s]) => s)).toEqual(['test', 'val'])
    const malformed = { thresholds: { refer: 0.3, monitor: 'x' } } as unknown as ModelCard
    expect(cardThresholds(malformed)).toEqual({ refer: 0.3, monitor: null })
  })
})

describe('classMixSentence', () => {
  const cls = (codes: string) =>
    codes.split(' ').map((code) => ({ code, malignant: ['MEL', 'BCC', 'SCC'].includes(code), premalignant: code === 'AK' }))
  it('describes the eight-class model as before', () => {
    const eight = cls('MEL NV BCC AK BKL DF VASC SCC')
    expect(`${countWord(eight.length)} groups. ${classMixSentence(eight)}`).toBe(
      'eight groups. Three are cancers, one can turn into cancer, and four are harmless.',
    )
  })
  it('follows the classes of a nine-class model (UNK: neither a cancer nor called harmless)', () => {
    const nine = cls('MEL NV BCC AK BKL DF VASC SCC UNK')
    expect(countWord(nine.length)).toBe('nine')
    expect(classMixSentence(nine)).toBe(
      'Three are cancers, one can turn into cancer, four are harmless, and one is “other / unknown”: learned from images labelled “diagnosis unknown”, not a class for every other kind of lesion.',
    )
  })
  it('handles single and missing groups', () => {
    expect(classMixSentence(cls('MEL NV'))).toBe('One is a cancer and one is harmless.')
    expect(classMixSentence([])).toBe('')
    expect(countWord(13)).toBe('13')
  })
})

describe('formatAge', () => {
  it('says an age under 2 years in months (DICOM "007M" = 7/12 year), else in years with one decimal at most', () => {
    expect(formatAge(7 / 12)).toBe('7 months')
    expect(formatAge(1 / 12)).toBe('1 month')
    expect(formatAge(1.5)).toBe('18 months')
    expect(formatAge(2)).toBe('2 years')
    expect(formatAge(45.5)).toBe('45.5 years')
    expect(formatAge(45.25)).toBe('45.3 years')
    expect(formatAge(60)).toBe('60 years')
    expect(formatAge(null)).toBe('not stated')
    expect(formatAge(undefined)).toBe('not stated')
  })

  it('starts an age field from an earlier age with at most 2 decimals', () => {
    expect(ageFieldText(7 / 12)).toBe('0.58')
    expect(ageFieldText(45)).toBe('45')
    expect(ageFieldText(45.5)).toBe('45.5')
    expect(ageFieldText(null)).toBe('')
  })
})
