import { describe, expect, it } from 'vitest'
import {
  cardCrossSource,
  cardDecisionRule,
  cardInputText,
  cardItaTable,
  cardKeyMetrics,
  cardOtherMetricSets,
  cardStatusWarning,
  cardTestEvaluation,
  estimate,
  groupSubgroups,
  cardMalignant,
  headline,
  malignantCodesText,
  malignantSumText,
  selectedEpochNote,
  keptWeightsNote,
  tooFew,
  joinList,
} from './card.ts'
import type { ModelCard } from './api.ts'
import { formatCI, formatDuration, formatSigned, formatTimestamp } from './format.ts'
import type { LocalUpdateCard } from './generated/card.ts'

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

// --- cross-source, skin tone (ITA), decision rule ---------------------------------------------

const CROSS_CARD = {
  cross_source: {
    schema: 'dermsight.cross_source/1',
    metrics: ['balanced_accuracy', 'mel_auc'],
    min_n: 30,
    min_cases: 5,
    generated_by: '.venv/bin/python tools/card_tables.py',
    rows: [
      {
        protocol: 'leave_one_source_out',
        source: 'isic2020',
        n_images: 1198,
        n_groups: 65,
        n_malignant: 17,
        classes_present: ['MEL', 'NV', 'UNK'],
        metrics: { balanced_accuracy: { value: 0.41, lo: 0.3, hi: 0.5 }, mel_auc: { value: null, lo: null, hi: null } },
        note: '17 MEL of 1198',
        trained_on: ['ham10000', 'isic2017'],
        run: { config: 'loso.yaml', seed: 1, command: 'dermsight train --config loso.yaml' },
      },
      {
        protocol: 'test_split_by_source',
        source: 'ham10000',
        n_images: 1477,
        n_groups: 1180,
        n_malignant: 265,
        classes_present: ['MEL', 'NV'],
        metrics: { balanced_accuracy: { value: 0.58, lo: 0.53, hi: 0.64 }, mel_auc: { value: 0.9, lo: 0.87, hi: 0.93 } },
        note: null,
        trained_on: null,
        run: { config: 'configs/default.yaml', seed: 42, command: 'make train' },
      },
      { protocol: 'test_split_by_source', source: 'isic2016', n_images: 12, metrics: {}, note: 'n=12 < 30' },
    ],
  },
  metrics: {
    test: {
      metrics: { n: 100 },
      by_ita: {
        n: 100,
        n_estimable: 80,
        n_darker: 7,
        darker_bands: ['tan', 'brown', 'dark'],
        statement: 'Of 100 test images, ... only 7 fall in the tan, brown or dark bands.',
        method: 'ITA ...',
        min_n: 30,
        bands: [
          { attribute: 'ita_band', subgroup: 'very light', ita_range: '> 55°', n: 73, n_malignant: 20, malignant_auc: 0.9, malignant_auc_lo: 0.8, malignant_auc_hi: 0.95, note: null },
          { attribute: 'ita_band', subgroup: 'dark', ita_range: '≤ -30°', n: 0, n_malignant: 0, malignant_auc: null, note: 'no images' },
        ],
      },
    },
  },
}

describe('cardCrossSource', () => {
  it('reads rows, groups them by protocol with the test split first', () => {
    const t = cardCrossSource(CROSS_CARD)!
    expect(t.metrics).toEqual(['balanced_accuracy', 'mel_auc'])
    expect(t.minN).toBe(30)
    expect(t.generatedBy).toContain('card_tables')
    expect(t.protocols.map(([p, rows]) => [p, rows.map((r) => r.source)])).toEqual([
      ['test_split_by_source', ['ham10000', 'isic2016']],
      ['leave_one_source_out', ['isic2020']],
    ])
    const loso = t.protocols[1][1][0]
    expect(loso.trainedOn).toEqual(['ham10000', 'isic2017'])
    expect(loso.metrics.mel_auc).toBeNull()
    expect(loso.metrics.balanced_accuracy).toEqual({ value: 0.41, lo: 0.3, hi: 0.5 })
    expect(loso.run).toEqual({ config: 'loso.yaml', seed: 1, command: 'dermsight train --config loso.yaml' })
    const small = t.protocols[0][1][1]
    expect(tooFew(small.nImages, t.minN)).toBe(true)
    expect(small.trainedOn).toEqual([])
    expect(tooFew(t.protocols[0][1][0].nImages, t.minN)).toBe(false)
  })

  it('is null when the card has no (usable) section', () => {
    expect(cardCrossSource(null)).toBeNull()
    expect(cardCrossSource(CARD)).toBeNull()
    expect(cardCrossSource({ cross_source: { rows: [] } })).toBeNull()
    // a malformed section (the type forbids it; the accessor still copes)
    expect(cardCrossSource({ cross_source: 'x' } as unknown as ModelCard)).toBeNull()
  })
})

describe('cardItaTable', () => {
  it('reads every band with its range, counts and the statement', () => {
    const t = cardItaTable(CROSS_CARD)!
    expect(t.bands.map((b) => [b.subgroup, b.itaRange, b.n])).toEqual([
      ['very light', '> 55°', 73],
      ['dark', '≤ -30°', 0],
    ])
    expect(t.bands[0].malignantAuc).toEqual({ value: 0.9, lo: 0.8, hi: 0.95 })
    expect(t.bands[1].note).toBe('no images')
    expect(t.nDarker).toBe(7)
    expect(t.statement).toContain('only 7')
    expect(t.darkerBands).toEqual(['tan', 'brown', 'dark'])
  })

  it('is null without metrics.test.by_ita', () => {
    expect(cardItaTable(CARD)).toBeNull()
    expect(cardItaTable(null)).toBeNull()
  })
})

describe('cardDecisionRule', () => {
  it('says "most probable class" when the card has no decision', () => {
    expect(cardDecisionRule(CARD).text).toBe('Most probable class.')
    expect(cardDecisionRule(null).rule).toBe('argmax')
    expect(cardDecisionRule({ decision: { rule: 'logit_adjusted', tau: 0, prior: {} } }).text).toBe('Most probable class.')
  })

  it('describes the logit-adjusted rule with its tau and prior', () => {
    const d = cardDecisionRule({ decision: { rule: 'logit_adjusted', tau: 0.8, prior: { NV: 0.6, MEL: 0.2, DF: 0.01 } } })
    expect(d.rule).toBe('logit_adjusted')
    expect(d.tau).toBe(0.8)
    expect(d.text).toContain('τ = 0.8')
    expect(d.text).toContain('training frequency')
    expect(d.prior.map(([c]) => c)).toEqual(['NV', 'MEL', 'DF'])
    expect(d.margins).toEqual([])
    expect(d.text).not.toContain('log-odds')
  })

  it('names a class margin with the logit adjustment and on its own', () => {
    const d = cardDecisionRule({
      decision: { rule: 'logit_adjusted', tau: 0.3, prior: { NV: 0.6, UNK: 0.1 }, margins: { UNK: 3 } },
    })
    expect(d.margins).toEqual([['UNK', 3]])
    expect(d.text).toContain('τ = 0.3')
    expect(d.text).toContain('UNK is suggested only when it leads the next class by more than 3 in adjusted log-probability')
    const alone = cardDecisionRule({ decision: { rule: 'logit_adjusted', tau: 0, margins: { UNK: 2.5 } } })
    expect(alone.text).toMatch(/^Most probable class\. UNK is suggested only when it leads .* by more than 2\.5/)
  })
})

describe('cardDecisionRule with a local update', () => {
  it("names the clinic's update, its cases and its own check after the rule", () => {
    const local: LocalUpdateCard = {
      classes: ['MEL', 'NV', 'BKL'],
      weights: [[0], [0], [0]],
      bias: [0, 0, 0],
      name: 'Clinic A',
      n_images: 412,
      created: '2026-12-05T19:00:00Z',
      kept: ['MEL'],
      evaluation: { balanced_accuracy: { unchanged: { value: 0.515 }, updated: { value: 0.633 } } },
    }
    const d = cardDecisionRule({ decision: { rule: 'logit_adjusted', tau: 0.2, prior: { NV: 0.6 }, local_update: local } })
    expect(d.text).toContain('τ = 0.2')
    expect(d.text).toContain('when the suggestion is NV or BKL, it is re-decided among MEL, NV, BKL')
    expect(d.text).toContain('A suggestion of MEL is never changed by it.')
    expect(d.text).toContain('412 labelled cases of Clinic A (2026-12-05)')
    expect(d.text).toContain('0.515 → 0.633')
    expect(d.text).toContain("the model's before that update")
    expect(d.text).not.toContain('refer tier')
    expect(cardDecisionRule({ decision: { rule: 'argmax' } }).text).toBe('Most probable class.')
    const refer = { malignant_referred: 235, n_malignant: 257, sensitivity: { value: 0.9144 } }
    const below = { ...refer, fitted_sensitivity: 0.95, below_fitted: true }
    const withTier = (r: object) =>
      cardDecisionRule({ decision: { rule: 'argmax', local_update: { ...local, evaluation: { refer_tier: r } } } }).text
    expect(withTier(refer)).toContain('the refer tier, which the update does not change, referred 235 of 257 malignant lesions (sensitivity 0.914).')
    expect(withTier(below)).toContain('(sensitivity 0.914), below the 0.95 its threshold was fitted for')
    expect(withTier({ ...below, below_fitted: false })).not.toContain('below the')
  })
})

describe('cardMalignant', () => {
  const nine = ['MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC', 'UNK']
  it("reads the card's malignant set and names it with the card's class names", () => {
    const card = {
      classes: nine,
      malignant: ['MEL', 'SCC'],
      class_names: { MEL: 'Melanoma', SCC: 'Squamous cell carcinoma', UNK: 'Other / unknown' },
    } as unknown as ModelCard
    expect(cardMalignant(card)).toEqual(['MEL', 'SCC'])
    expect(malignantSumText(card)).toBe('P(melanoma) + P(squamous cell carcinoma)')
    expect(cardMalignant({ classes: nine, malignant: ['MEL', 7] } as unknown as ModelCard)).toEqual(['MEL'])
  })
  it('divides by the classes a card leaves out of the malignant probability', () => {
    const card = {
      classes: nine,
      malignant: ['MEL', 'SCC'],
      malignant_excluded: ['UNK'],
      class_names: { MEL: 'Melanoma', SCC: 'Squamous cell carcinoma', UNK: 'Other / unknown' },
    } as unknown as ModelCard
    expect(malignantSumText(card)).toBe(
      '(P(melanoma) + P(squamous cell carcinoma)) / (1 − P(other / unknown)): the malignant share of ' +
        'the specific diagnoses, so that UNK can name a lesion but never lower its risk',
    )
    expect(malignantSumText({ ...card, malignant_excluded: [] } as unknown as ModelCard)).toBe(
      'P(melanoma) + P(squamous cell carcinoma)',
    )
    expect(malignantCodesText(card)).toBe('MEL + SCC, as a share of all classes but UNK')
    expect(malignantCodesText({ ...card, malignant_excluded: [] } as unknown as ModelCard)).toBe('MEL + SCC')
    expect(malignantCodesText(null)).toBe('MEL + BCC + SCC')
  })
})

const M: [number, number, number] = [0.5, 0.5, 0.5]

describe('cardInputText', () => {
  it('names size, crop and resizing, and nothing a card leaves at its default', () => {
    const text = cardInputText({ input_spec: { size: 160, mean: M, std: M, crop: 'center_square', interpolation: 'bicubic' } })
    expect(text).toBe('160 × 160 px RGB, centre square crop, bicubic resizing')
    expect(cardInputText(null)).toBeNull()
  })

  it('says when the network sees the centre of the view and colour constancy', () => {
    const text = cardInputText({
      input_spec: { size: 192, mean: M, std: M, crop: 'center_square', crop_fraction: 0.7, color_constancy: 'shades_of_gray', cc_power: 6 },
    })
    expect(text).toContain('the centre 70 % of each side')
    expect(text).toContain('Shades-of-Gray colour constancy (p = 6)')
    expect(cardInputText({ input_spec: { size: 160, mean: M, std: M, crop_fraction: 1 } })).not.toContain('centre 100')
  })
})

describe('selectedEpochNote', () => {
  it('names the validation figure and its value, or the last epoch', () => {
    expect(selectedEpochNote({ select_metric: 'balanced_accuracy', best_val_score: 0.74491 })).toBe(
      ' (best validation balanced accuracy (arg-max) 0.745)',
    )
    expect(selectedEpochNote({ select_metric: 'last', best_val_score: null })).toBe(
      " (the last epoch's weights, kept whatever the validation figures)",
    )
    expect(selectedEpochNote({ select_metric: 'nll', best_val_score: -0.5134 })).toBe(
      ' (best validation negative log-likelihood 0.513)',
    )
    expect(selectedEpochNote(null)).toBe('')
  })
})

describe('keptWeightsNote', () => {
  it('names the averaged epochs and both validation figures, and nothing for one epoch', () => {
    expect(
      keptWeightsNote({
        kept: 'swa', swa_epochs: [8, 14], swa_val_balanced_accuracy: 0.7512,
        best_single_epoch: 7, best_single_val_score: 0.7445, select_metric: 'balanced_accuracy',
      }),
    ).toBe(
      'the mean of the weights after epochs 8–14 (weight averaging); validation balanced accuracy (arg-max) 0.751; ' +
        'best single epoch: 7 (validation balanced accuracy (arg-max) 0.745)',
    )
    expect(keptWeightsNote({ kept: 'swa', swa_epochs: [3, 3] })).toBe('the mean of the weights after epoch 3 (weight averaging)')
    // NLL is stored negated (the loop maximises its score): shown as the loss itself
    expect(
      keptWeightsNote({ kept: 'swa', swa_epochs: [2, 4], best_single_epoch: 3, best_single_val_score: -0.5134, select_metric: 'nll' }),
    ).toBe('the mean of the weights after epochs 2–4 (weight averaging); best single epoch: 3 (validation negative log-likelihood 0.513)')
    expect(keptWeightsNote({ select_metric: 'balanced_accuracy', best_epoch: 9 })).toBeNull()
    expect(keptWeightsNote(null)).toBeNull()
  })
})

describe('joinList', () => {
  it('joins "a", "a and b", "a, b and c"', () => {
    expect(joinList([])).toBe('')
    expect(joinList(['a'])).toBe('a')
    expect(joinList(['a', 'b'])).toBe('a and b')
    expect(joinList(['a', 'b', 'c'])).toBe('a, b and c')
  })
})
