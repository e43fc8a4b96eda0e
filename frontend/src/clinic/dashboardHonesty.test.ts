import { describe, expect, it } from 'vitest'
import { formatEstimate } from './format.ts'

describe('dashboard AUC estimate', () => {
  it('names both sides of the AUC', () => {
    const e = { value: 0.91, lo: 0.72, hi: 1, n: 15, positives: 6, negatives: 9, method: 'bootstrap' as const }
    expect(formatEstimate(e, ['melanoma', 'other'])).toBe('0.910 (95% CI 0.720–1.000), n = 15: 6 melanomas, 9 others')
    expect(formatEstimate({ ...e, positives: 1, negatives: 1, n: 2 }, ['melanoma', 'other'])).toContain('n = 2: 1 melanoma, 1 other')
  })

  it('says why a perfect AUC on few lesions has no interval, not "1.000–1.000"', () => {
    const e = {
      value: 1,
      lo: null,
      hi: null,
      n: 15,
      positives: 6,
      negatives: 9,
      note: '500 of the 500 resamples gave 1.000: too few cases for the bootstrap to show an interval',
    }
    const text = formatEstimate(e, ['melanoma', 'other'])
    expect(text).toContain('no interval: 500 of the 500 resamples gave 1.000')
    expect(text).toContain('6 melanomas, 9 others')
    expect(text).not.toContain('1.000–1.000')
  })
})
