// What the UI says about the shipped model must be what its card and its history support: the
// test split was not "measured once", a bootstrap interval that collapsed to a point is not a
// certainty, balanced accuracy is named by the rule it was measured with, the gate described is the
// one in use, UNK is what its images are, the data are counted from the card, and the malignant
// share printed beside the cut-offs never contradicts the tier.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard, PredictResponse } from './api.ts'
import {
  HEADLINE_METRICS,
  cardTestSplitUse,
  ciText,
  estimate,
  estimateText,
  gateInUse,
  isDegenerate,
  perClassCounts,
  singleSourceNote,
  shareBesideCutoffs,
  wilson,
} from './card.ts'
import { FALLBACK_CLASSES } from './content.ts'
import { formatCI } from './format.ts'
import { visibleText } from './testing/html.ts'

const SHIPPED = JSON.parse(shippedCard) as ModelCard

// The pages read the card through useApiData: give them the shipped card (and nothing else).
const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./hooks.ts', async (original) => ({
  ...(await original<typeof import('./hooks.ts')>()),
  useApiData: (path: string) => ({ data: loaded.get(path) ?? null, error: null, loading: false, reload: () => undefined }),
  useApiImage: () => ({ src: null, failed: false }),
}))

const { ModelPage } = await import('./pages/ModelPage.tsx')
const { LearnPage } = await import('./pages/LearnPage.tsx')
const { ResultView } = await import('./pages/AssessPage.tsx')
const { API } = await import('./api.ts')

const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
const source = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8')

const text = visibleText

function byTestId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html)
  return m ? text(m[2]) : null
}

function modelPage(card: ModelCard = SHIPPED): string {
  loaded.clear()
  loaded.set(`${API}/model`, card)
  return renderToStaticMarkup(createElement(ModelPage))
}

/** The rows of a table (by data-testid) as text, one string per <tr>. */
function tableRows(html: string, id: string): string[] {
  const t = new RegExp(`<table[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</table>`).exec(html)?.[1] ?? ''
  return [...t.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => text(m[1]))
}

describe('the Wilson score interval', () => {
  const w = (k: number, n: number) => {
    const r = wilson(k, n)
    return r && formatCI(r.lo, r.hi)
  }
  it('gives the textbook 95 % intervals, also where every case went the same way', () => {
    expect(w(22, 22)).toBe('0.851–1.000')
    expect(w(6, 6)).toBe('0.610–1.000')
    expect(w(24, 24)).toBe('0.862–1.000')
    expect(w(20, 20)).toBe('0.839–1.000')
    expect(w(0, 10)).toBe('0.000–0.278')
    expect(w(8, 20)).toBe('0.219–0.613')
  })
  it('is null without cases', () => {
    expect(wilson(0, 0)).toBeNull()
    expect(wilson(3, 2)).toBeNull()
    expect(wilson(-1, 5)).toBeNull()
  })
})

describe('an interval that collapsed to a point is not shown as a certainty', () => {
  const vasc = { value: 1, lo: 1, hi: 1, n: 200 } // the card's entry: n counts resamples, not cases
  it('names the cases and a Wilson interval where the cases are known', () => {
    const e = estimate(vasc)!
    expect(e.n).toBeUndefined() // a bootstrap entry's n is not a number of cases
    expect(isDegenerate(e)).toBe(true)
    expect(estimateText(e, { k: 22, n: 22 })).toBe(
      '1.000 (22 of 22; the bootstrap gives no interval, Wilson 95\u00a0% 0.851–1.000)',
    )
    expect(estimateText(e)).toBe('1.000 (no interval (every resample gave the same value))')
    expect(ciText(e)).toBe('no interval (every resample gave the same value)')
    // counts that do not give the value are not used
    expect(ciText(e, { k: 21, n: 22 })).toBe('no interval (every resample gave the same value)')
  })
  it('leaves ordinary intervals and Wilson+bootstrap entries as they are', () => {
    expect(estimateText(estimate({ value: 0.9, lo: 0.87, hi: 0.92, n: 200 }))).toBe('0.900 (0.870–0.920)')
    const wb = estimate({ value: 1, lo: 0.7, hi: 1, k: 9, n: 9, method: 'wilson+bootstrap' })!
    expect(wb).toMatchObject({ k: 9, n: 9, method: 'wilson+bootstrap' })
    expect(isDegenerate(wb)).toBe(false)
    expect(estimateText(wb)).toBe('1.000 (0.700–1.000)')
    // a Wilson entry that carries its cases names them even if an interval were a point
    expect(ciText({ value: 0, lo: 0, hi: 0, k: 0, n: 5 })).toContain('0 of 5')
  })
  it('counts the cases of each class from the confusion matrix', () => {
    const c = perClassCounts(SHIPPED)
    expect(c.VASC.sensitivity).toEqual({ k: 22, n: 22 })
    expect(c.VASC.specificity.n).toBe(1998)
    expect(c.VASC.specificity.k / c.VASC.specificity.n).toBeCloseTo(0.9944944944944945, 12)
    expect(c.MEL.sensitivity).toEqual({ k: 151, n: 230 })
  })

  const html = modelPage()
  it('on the Model page, per class: VASC sensitivity is 22 of 22 with a Wilson interval', () => {
    const vascRow = tableRows(html, 'per-class-table').find((r) => r.includes('(VASC)'))!
    expect(vascRow).toContain('1.000 (22 of 22; the bootstrap gives no interval, Wilson 95 % 0.851–1.000)')
    expect(vascRow).not.toContain('1.000–1.000')
  })
  it('on the Model page, per subgroup: the refer sensitivities of 1.000 say of how many', () => {
    const rows = tableRows(html, 'subgroup-table')
    const row = (name: string) => rows.find((r) => r.startsWith(`${name} `))!
    expect(row('75+')).toContain('1.000 (89 of 89; the bootstrap gives no interval, Wilson 95 % ')
    expect(row('upper extremity')).toContain('(59 of 59;')
    expect(row('lower extremity')).toContain('(48 of 48;')
    expect(row('torso')).toContain('1.000 (6 of 6; the bootstrap gives no interval, Wilson 95 % 0.610–1.000)')
    expect(row('isic2019')).toContain('(20 of 20;')
    for (const r of rows) expect(r).not.toContain('1.000–1.000')
  })
  it('under the cross-source table (drawn elsewhere), its collapsed cell is spelled out', () => {
    const note = byTestId(html, 'cross-source-collapsed')!
    expect(note).toContain('isic2019, Sensitivity (refer): 1.000 (20 of 20; the bootstrap gives no interval, Wilson 95 % 0.839–1.000)')
    // the note says what the cells show: none prints a point interval ("x–x")
    expect(note).not.toContain('x–x')
    expect(note).toContain('a cell marked “no interval” or “the bootstrap gives no interval” is not a certainty')
  })
  it('in the cross-source table itself, the collapsed cell gives its cases and a Wilson interval', () => {
    const rows = tableRows(html, 'cross-source-test_split_by_source')
    const row = rows.find((r) => r.startsWith('isic2019 '))!
    // refer sensitivity: 20 of the row's 20 malignant images
    expect(row).toContain('1.000 (20 of 20; the bootstrap gives no interval, Wilson 95 % 0.839–1.000)')
    for (const r of rows) expect(r).not.toContain('1.000–1.000')
  })
  it('the Model page has one cell for estimates (no second copy of it)', () => {
    expect(source('./pages/ModelPage.tsx')).not.toMatch(/function CountedCell/)
  })
  it('an interval whose ends differ by a rounding error collapsed too (as in the Python report)', () => {
    expect(isDegenerate({ value: 1, lo: 0.9999999999999999, hi: 1 })).toBe(true)
    expect(isDegenerate({ value: 0.5, lo: 0.5, hi: 0.5000000000001 })).toBe(true)
    expect(isDegenerate({ value: 0.99, lo: 0.98, hi: 1 })).toBe(false)
    expect(ciText({ value: 1, lo: 0.9999999999999999, hi: 1 })).toBe('no interval (every resample gave the same value)')
  })
  it('without cases, says there is no interval', () => {
    const card = JSON.parse(shippedCard) as ModelCard
    const perClass = (card.metrics as { test: { per_class: { code: string; auc: unknown }[] } }).test.per_class
    perClass.find((r) => r.code === 'VASC')!.auc = { value: 1, lo: 1, hi: 1, n: 200 }
    const vascRow = tableRows(modelPage(card), 'per-class-table').find((r) => r.includes('(VASC)'))!
    expect(vascRow).toContain('1.000 (no interval (every resample gave the same value))')
  })
})

describe('the test split is not called untouched', () => {
  const html = text(modelPage())
  /** the shipped card without its "Test split use:" limitation: another bundle (`serve --model`),
   * with SIIM-ISIC 2020 images too, whose test split's history the UI cannot know */
  const other = JSON.parse(shippedCard) as ModelCard
  other.limitations = (other.limitations as string[]).filter((l) => !l.startsWith('Test split use:'))
  it('reads the test split’s history from the card only', () => {
    const use = cardTestSplitUse(SHIPPED)!
    expect(use).toContain('it was scored for several versions of this recipe')
    expect(use).not.toMatch(/^Test split use/)
    expect(cardTestSplitUse(other)).toBeNull()
    expect(cardTestSplitUse(null)).toBeNull()
  })
  it('says what is true of any trained bundle, and the shipped card’s history from its card', () => {
    expect(html).not.toMatch(/measured once|checked once|after all choices were made/i)
    const reuse = byTestId(modelPage(), 'test-reuse')!
    expect(reuse).toMatch(/^No training, calibration, threshold or decision-rule fitting used the test split\. Test split use \(from the model card\): no network/)
    expect(reuse).toContain('scored for several versions of this recipe')
    expect(html).not.toContain('the choice to ship this version')
    expect(html).not.toContain('also scored for earlier versions')
  })
  it('says nothing of a history another bundle’s card does not give', () => {
    const page = modelPage(other)
    expect(byTestId(page, 'test-reuse')).toBe('No training, calibration, threshold or decision-rule fitting used the test split.')
    expect(text(page)).not.toMatch(/several versions|earlier versions|choice to ship|decision to ship/)
  })
  it('and so does the Learn page', () => {
    const learn = (card: ModelCard) => {
      loaded.clear()
      loaded.set(`${API}/model`, card)
      return text(renderToStaticMarkup(createElement(LearnPage)))
    }
    const shipped = learn(SHIPPED)
    expect(shipped).not.toMatch(/scored only once|after every choice was made|several versions/)
    expect(shipped).toContain(
      'measure how well the tool does; the model card says how they were used before this release (see “Test split use” on the Model page), so these figures may be optimistic.',
    )
    const theirs = learn(other)
    expect(theirs).toContain('never used for training or for setting the cut-offs, measure how well the tool does.')
    expect(theirs).not.toMatch(/several versions|informed which one was released|Test split use|optimistic/)
  })
  it('warns beside the thresholds that the test figures may be optimistic, only where the card says why', () => {
    const p = text(modelPage())
    expect(p).toContain('then measured on the test set (numbers above; not fitted on it)')
    expect(byTestId(modelPage(), 'threshold-test-use')).toBe(
      '; the model card says how the test set was used before this release (see “Test split use” under Test performance), so these figures may be optimistic.',
    )
    const theirs = text(modelPage(other))
    expect(theirs).toMatch(/then measured on the test set \(numbers above; not fitted on it\) ?\. Calibration/)
    expect(theirs).not.toContain('these figures may be optimistic')
    expect(byTestId(modelPage(other), 'threshold-test-use')).toBeNull()
  })
})

describe('balanced accuracy is named by the rule it was measured with', () => {
  it('calls the headline figure the suggested class’s, and gives the arg-max beside it', () => {
    const hint = HEADLINE_METRICS.find((d) => d.key === 'balanced_accuracy')!.hint
    expect(hint).not.toMatch(/top-ranked/)
    expect(hint).toContain('suggested class')
    const row = tableRows(modelPage(), 'metrics-table').find((r) => r.startsWith('Balanced accuracy'))!
    expect(row).toContain('0.690')
    expect(row).toContain('With the plain arg-max (the most probable class) instead: 0.649.')
  })
  it('says which validation figure is the arg-max one', () => {
    const html = modelPage()
    expect(text(html)).toContain('(best validation balanced accuracy (arg-max) 0.727)')
    expect(tableRows(html, 'epochs-table')[0]).toContain('Validation balanced accuracy (arg-max)')
    expect(text(html)).toContain('Balanced accuracy is for the suggested class (the decision rule) in every column, validation included')
  })
})

describe('the gate described is the one in use', () => {
  it('reads gate v2 from the card', () => {
    const g = gateInUse(SHIPPED.gate as Record<string, unknown>)!
    expect(g.version).toBe('v2')
    expect(g.text).toContain('refused when its score is above −1.443')
    expect(g.text).toContain('the 99.0th percentile of 1996 validation images')
    expect(g.text).toContain('pooled features, kNN score, 5 image statistics')
    // the numbers follow the card
    const other = gateInUse({ ...(SHIPPED.gate as object), v2_threshold: -2.5, v2_fit: 'threshold = 98.0th percentile of 10 validation images' })!
    expect(other.text).toContain('above −2.500 (the 98.0th percentile of 10 validation images, so about 2.0 % ')
  })
  it('falls back to gate v1 for a card without v2', () => {
    const g = gateInUse({ ood_method: 'deep-knn', ood_fit: 'threshold = 99.5th percentile', ood_threshold: 0.4 })!
    expect(g.version).toBe('v1')
    expect(g.text).toContain('99.5th percentile')
    expect(gateInUse({})).toBeNull()
  })
  it('on the Model page', () => {
    const li = byTestId(modelPage(), 'gate-in-use')!
    expect(li).toContain('gate v2')
    expect(li).toContain('−1.443')
    expect(li).not.toContain('99.5th percentile')
  })
})

describe('UNK is what its images are', () => {
  it('the Model page says its test figures rest on one collection of 7 groups', () => {
    const note = byTestId(modelPage(), 'single-source-note')!
    expect(note).toContain('all UNK images come from one collection, SIIM-ISIC 2020 (194 test images from 7 groups)')
    expect(singleSourceNote(SHIPPED)).not.toContain('isic2020')
    expect(note).toContain('their figures say little about other cameras or clinics')
  })
  it('the per-source rows say how many groups their images come from', () => {
    const row = tableRows(modelPage(), 'subgroup-table').find((r) => r.startsWith('isic2020 '))!
    expect(row).toContain('194 7 groups')
  })
  it('the Learn page does not call it "none of these kinds", and says where it comes from', () => {
    loaded.clear()
    loaded.set(`${API}/classes`, FALLBACK_CLASSES)
    loaded.set(`${API}/model`, SHIPPED)
    const learn = text(renderToStaticMarkup(createElement(LearnPage)))
    expect(learn).not.toContain('none of these kinds')
    // its training images only (808 of the 1,153 over all splits), and not the patients of every split
    expect(learn).toContain(
      'is learned from 808 training images, all from one collection (SIIM-ISIC 2020) labelled “benign, diagnosis unknown”',
    )
    expect(learn).not.toMatch(/1,153|65 patients/)
  })
})

describe('the training data are counted from the card', () => {
  it('Learn page', () => {
    loaded.clear()
    loaded.set(`${API}/model`, SHIPPED)
    const t = byTestId(renderToStaticMarkup(createElement(LearnPage)), 'training-data')!
    expect(t).not.toContain('about 12,000')
    expect(t).toContain(
      'Trained on 9,344 public dermoscopic images (13,360 used in all: 9,344 for training, 1,996 for validation, ' +
        '2,020 for testing) from HAM10000, ISIC 2017, ISIC 2019 and SIIM-ISIC 2020',
    )
  })
})

describe('wording the card does not support', () => {
  it('the Assess page does not invite close-up (non-dermoscopic) photos', () => {
    expect(source('./pages/AssessPage.tsx')).not.toMatch(/\(or close-up\)/)
  })
  it('the footer names the card’s intended users', () => {
    const app = source('./App.tsx').replace(/\s+/g, ' ')
    expect(app).not.toContain('decision support for trained clinicians')
    expect(app).toContain('decision support for clinicians and informed patients')
    expect(String(SHIPPED.intended_use)).toContain('clinicians and informed patients')
  })
})

describe('the malignant share beside the cut-offs agrees with the tier', () => {
  const t = SHIPPED.thresholds as { refer: number; monitor: number }
  it('prints enough decimals near a cut-off', () => {
    expect(shareBesideCutoffs(0.1166, t.refer, t.monitor)).toEqual({ share: '11.66%', refer: '11.68%', monitor: '4.60%' })
    expect(shareBesideCutoffs(0.11684, t.refer, t.monitor).share).toBe('11.6840%')
    expect(shareBesideCutoffs(0.11684, t.refer, t.monitor).refer).toBe('11.6843%')
    expect(shareBesideCutoffs(0.2, t.refer, t.monitor)).toEqual({ share: '20.0%', refer: '11.7%', monitor: '4.6%' })
  })
  it('a share far from the tier its answer names is printed as it is, never as "just below" a cut-off', () => {
    // not an answer the server gives, but the share shown must be the share
    expect(shareBesideCutoffs(0, t.refer, t.monitor, 'high')).toEqual({ share: '<0.1%', refer: '11.7%', monitor: '4.6%' })
    expect(shareBesideCutoffs(0.05, t.refer, t.monitor, 'high').share).toBe('5.0%')
  })
  it('never prints a moderate share at or above the refer cut-off, nor a high one below it', () => {
    for (let p = 0.1164; p <= 0.1172; p += 0.0000013) {
      const risk = p >= t.refer ? 'high' : p >= t.monitor ? 'moderate' : 'low'
      const s = shareBesideCutoffs(p, t.refer, t.monitor, risk)
      const printed = Number.parseFloat(s.share.replace('just below ', ''))
      const cut = Number.parseFloat(s.refer!)
      if (risk === 'high') expect(printed >= cut, `${p}: ${s.share} vs ${s.refer}`).toBe(true)
      else expect(printed < cut || s.share.startsWith('just below'), `${p}: ${s.share} vs ${s.refer}`).toBe(true)
    }
  })
  it('on the result: a moderate share of 0.11670 is not printed as "11.7% (refer ≥ 11.7%)"', () => {
    const res = {
      probabilities: { MEL: 0.1167, NV: 0.8833 },
      prediction: 'NV',
      prediction_name: 'Melanocytic nevus',
      malignant_probability: 0.1167,
      risk: 'moderate',
      flags: [],
      model: { name: 'dermsight', version: '2.4.1' },
    } as unknown as PredictResponse
    const html = renderToStaticMarkup(
      createElement(ResultView, {
        outcome: { res, at: new Date(0), file: new File([], 'a.jpg'), fileName: 'a.jpg', form: { age: null, sex: '', site: '' } },
        preview: { url: 'blob:x', dicom: false, refused: null, pending: false },
        onNewCase: () => undefined,
        classes: FALLBACK_CLASSES,
        card: SHIPPED,
        audience: 'clinician',
        opacity: 50,
        onOpacity: () => undefined,
      }),
    )
    const numbers = byTestId(html, 'clinician-numbers')!
    expect(numbers).not.toContain('11.7% (refer ≥ 11.7%')
    expect(numbers).toContain('11.67% (refer ≥ 11.68%, monitor ≥ 4.60%)')
  })
})
