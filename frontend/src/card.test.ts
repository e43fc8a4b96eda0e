import { describe, expect, it } from 'vitest'
import {
  cardKeyMetrics,
  cardOtherMetricSets,
  cardStatusWarning,
  cardTestEvaluation,
  estimate,
  groupSubgroups,
  headline,
} from './card.ts'
import { formatCI, formatDuration, formatSigned, formatTimestamp } from './format.ts'

// A trimmed copy of the shape written by `dermsight train` (assets/default/card.json).
const CARD = {
  name: 'm',
  version: '1.0.0',
  status: 'trained',
  metrics: {
    test: {
      n: 1826,
      n_groups: 1442,
      n_boot: 200,
      ci_level: 0.95,
      metrics: { n: 1826, mel_auc: 0.9008, ece: 0.01297, n_malignant: 334 },
      ci: {
        mel_auc: { value: 0.9008, lo: 0.8747, hi: 0.9221, n: 200 },
        ece: { value: 0.01297, lo: 0.0149, hi: 0.0381, n: 200 },
      },
      per_class: [
        {
          code: 'MEL',
          name: 'Melanoma',
          n: 228,
          auc: { value: 0.9, lo: 0.87, hi: 0.92, n: 200 },
          sensitivity: { value: 0.61, lo: 0.53, hi: 0.69 },
          specificity: { value: 0.92, lo: 0.9, hi: 0.93 },
        },
      ],
      subgroups: [
        { attribute: 'sex', subgroup: 'male', n: 955, n_malignant: 212, malignant_auc: 0.919, malignant_auc_lo: 0.89, malignant_auc_hi: 0.94, note: null },
        { attribute: 'age', subgroup: '<30', n: 153, n_malignant: 4, malignant_auc: null, malignant_auc_lo: null, malignant_auc_hi: null, note: '4 malignant (< 5)' },
        { attribute: 'sex', subgroup: 'female', n: 818, n_malignant: 109, malignant_auc: 0.88, note: null },
      ],
    },
    validation: { mel_auc: 0.89 },
    test_uncalibrated: { ece: 0.034 },
  },
}

describe('cardStatusWarning', () => {
  it('warns only when the status is present and not "trained"', () => {
    expect(cardStatusWarning(CARD)).toBeNull()
    expect(cardStatusWarning({ status: 'Trained ' })).toBeNull()
    expect(cardStatusWarning({})).toBeNull()
    expect(cardStatusWarning(null)).toBeNull()
    expect(cardStatusWarning({ status: 'development placeholder' })).toBe('development placeholder')
  })
})

describe('cardTestEvaluation', () => {
  const ev = cardTestEvaluation(CARD)!
  it('reads the evaluation block', () => {
    expect(ev.n).toBe(1826)
    expect(ev.nGroups).toBe(1442)
    expect(ev.nBoot).toBe(200)
    expect(ev.perClass[0].code).toBe('MEL')
    expect(ev.perClass[0].auc).toEqual({ value: 0.9, lo: 0.87, hi: 0.92 })
    expect(ev.subgroups[1].malignantAuc).toBeNull()
    expect(ev.subgroups[1].note).toBe('4 malignant (< 5)')
  })
  it('takes the point estimate from metrics and the interval from ci', () => {
    expect(headline(ev, 'ece')).toEqual({ value: 0.01297, lo: 0.0149, hi: 0.0381 })
    expect(headline(ev, 'brier')).toBeNull()
  })
  it('is null for other card shapes', () => {
    expect(cardTestEvaluation({ metrics: { test: { auc: 0.9 } } })).toBeNull()
    expect(cardTestEvaluation({})).toBeNull()
  })
  it('groups subgroups by attribute in first-seen order', () => {
    const g = groupSubgroups(ev.subgroups)
    expect(g.map(([a, rows]) => [a, rows.length])).toEqual([
      ['sex', 2],
      ['age', 1],
    ])
  })
  it('lists the other metric sets and key metrics', () => {
    expect(cardOtherMetricSets(CARD).map((s) => s.key)).toEqual(['test_uncalibrated', 'validation'])
    expect(cardKeyMetrics(CARD, ['mel_auc', 'brier']).map(([l]) => l)).toEqual(['Melanoma vs rest AUC'])
  })
})

describe('formatting for the model page', () => {
  it('formats estimates, intervals and differences', () => {
    expect(estimate(0.5)).toEqual({ value: 0.5, lo: null, hi: null })
    expect(estimate({ value: null, lo: null, hi: null })).toBeNull()
    expect(formatCI(0.87472, 0.92211)).toBe('0.875–0.922')
    expect(formatCI(null, 0.9)).toBe('—')
    expect(formatSigned(0.1569)).toBe('+0.157')
    expect(formatSigned(-0.029)).toBe('−0.029')
    expect(formatSigned(0.0001)).toBe('0.000')
  })
  it('formats durations and timestamps without locale', () => {
    expect(formatDuration(42)).toBe('42 s')
    expect(formatDuration(281)).toBe('4.7 min')
    expect(formatDuration(3072.5)).toBe('51 min')
    expect(formatDuration(4300)).toBe('1 h 12 min')
    expect(formatTimestamp('2026-11-27T00:55:36Z')).toBe('2026-11-27 00:55 UTC')
    expect(formatTimestamp('2026-11-27')).toBe('2026-11-27')
    expect(formatTimestamp('yesterday')).toBe('yesterday')
  })
})
