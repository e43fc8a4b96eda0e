// Fixes from a referee-style audit of how the model card is shown: the printed result summary
// carries every limitation of the card (not the first five), the Model page marks a per-source row
// whose intervals rest on fewer than 10 patients / lesion groups as the evaluation report does
// ("few patients: interval unreliable"), and it says that the card's test figures count the images
// the gate refuses, which `dermsight evaluate` leaves out.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard, PredictResponse } from './api.ts'
import { FALLBACK_CLASSES } from './content.ts'
import { visibleText } from './testing/html.ts'

const SHIPPED = JSON.parse(shippedCard) as ModelCard

// The pages read the card through useApiData: give them the card under test (and nothing else).
const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./hooks.ts', async (original) => ({
  ...(await original<typeof import('./hooks.ts')>()),
  useApiData: (path: string) => ({ data: loaded.get(path) ?? null, error: null, loading: false, reload: () => undefined }),
  useApiImage: () => ({ src: null, failed: false }),
}))

const modelPageModule = await import('./pages/ModelPage.tsx')
const { ModelPage } = modelPageModule
const { ResultView } = await import('./pages/AssessPage.tsx')
const { API } = await import('./api.ts')

const text = visibleText

function modelPage(card: ModelCard = SHIPPED): string {
  loaded.clear()
  loaded.set(`${API}/model`, card)
  return renderToStaticMarkup(createElement(ModelPage))
}

function byTestId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html)
  return m ? text(m[2]) : null
}

/** The rows of a table (by data-testid) as text, one string per <tr>. */
function tableRows(html: string, id: string): string[] {
  const t = new RegExp(`<table[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</table>`).exec(html)?.[1] ?? ''
  return [...t.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => text(m[1]))
}

function result(card: ModelCard): string {
  const res = {
    probabilities: { MEL: 0.02, NV: 0.98 },
    prediction: 'NV',
    prediction_name: 'Melanocytic nevus',
    malignant_probability: 0.02,
    risk: 'low',
    flags: [],
    model: { name: 'dermsight', version: '2.4.1' },
  } as unknown as PredictResponse
  return renderToStaticMarkup(
    createElement(ResultView, {
      outcome: { res, at: new Date(0), file: new File([], 'a.jpg'), fileName: 'a.jpg', form: { age: null, sex: '', site: '' } },
      preview: { url: 'blob:x', dicom: false, refused: null, pending: false },
      onNewCase: () => undefined,
      classes: FALLBACK_CLASSES,
      card,
      audience: 'clinician',
      opacity: 50,
      onOpacity: () => undefined,
    }),
  )
}

/** The printed "About the model" block of a result, and its list items as text. */
function cardSummary(html: string): { block: string; items: string[] } {
  const block = /<section class="print-only card-summary">([\s\S]*?)<\/section>/.exec(html)?.[1] ?? ''
  return { block: text(block), items: [...block.matchAll(/<li[^>]*>([\s\S]*?)<\/li>/g)].map((m) => text(m[1])) }
}

describe('the printed result summary', () => {
  const limitations = SHIPPED.limitations as string[]
  it('prints every limitation of the card, in the card order', () => {
    expect(limitations.length).toBe(10)
    const { items } = cardSummary(result(SHIPPED))
    expect(items).toEqual(limitations.map((l) => text(l)))
  })
  it('includes the clinical caveats that came after the fifth', () => {
    const { block } = cardSummary(result(SHIPPED))
    expect(block).toContain('on another camera neither that sensitivity nor its specificity carries over')
    expect(block).toContain('nor on non-dermoscopic (clinical close-up) photographs')
  })
  it('prints a long list whole, and nothing for a card without limitations', () => {
    const many = Array.from({ length: 14 }, (_, i) => `limitation number ${i + 1}`)
    expect(cardSummary(result({ ...SHIPPED, limitations: many })).items).toEqual(many)
    const { block } = cardSummary(result({ ...SHIPPED, limitations: [] }))
    expect(block).not.toContain('Known limitations')
  })
})

describe('the Model page marks rows that rest on few patients, as the report does', () => {
  const html = modelPage()
  it('uses the report threshold (dermsight.evaluate.report.FEW_GROUPS = 10) and its wording', () => {
    expect(modelPageModule.FEW_GROUPS).toBe(10)
    expect(modelPageModule.FEW_GROUPS_NOTE).toBe('few patients: interval unreliable')
    expect(modelPageModule.fewGroupsText(7)).toBe('few patients: interval unreliable (7 patient/lesion groups)')
    expect(modelPageModule.fewGroupsText(10)).toBeNull()
    expect(modelPageModule.fewGroupsText(null)).toBeNull()
  })
  it('per subgroup: the ISIC 2020 source row (194 images, 7 patients) and no other', () => {
    const rows = tableRows(html, 'subgroup-table')
    const marked = rows.filter((r) => r.includes('few patients: interval unreliable'))
    expect(marked.length).toBe(1)
    expect(marked[0]).toMatch(/^Note for isic2020: .*few patients: interval unreliable \(7 patient\/lesion groups\)/)
    // the source row's own withholding note is kept beside it
    expect(marked[0]).toContain('MEL AUC withheld')
    const small = text(/<section[^>]*data-testid="subgroups"[\s\S]*?<\/section>/.exec(html)?.[0] ?? '')
    expect(small).toContain('“few patients: interval unreliable”: fewer than 10 groups')
  })
  it('under the cross-source tables: the test-split ISIC 2020 row, not the held-out one (65 patients)', () => {
    const note = byTestId(html, 'cross-source-few-groups')
    expect(note).not.toBeNull()
    expect(note).toContain(
      'Held-out test split, per data source, isic2020: few patients: interval unreliable (7 patient/lesion groups)',
    )
    expect(note).not.toContain('Leave one source out')
    expect(note!.match(/few patients: interval unreliable/g)?.length).toBe(1)
  })
  it('not for a row whose figures are all withheld, nor when every row has enough groups', () => {
    const cs = structuredClone(SHIPPED.cross_source) as { rows: Record<string, unknown>[] }
    for (const r of cs.rows) {
      if (r.protocol === 'test_split_by_source' && r.source === 'isic2020') {
        const m = r.metrics as Record<string, Record<string, unknown>>
        for (const k of Object.keys(m)) m[k] = { value: null, lo: null, hi: null }
      }
    }
    expect(byTestId(modelPage({ ...SHIPPED, cross_source: cs } as ModelCard), 'cross-source-few-groups')).toBeNull()
    const many = structuredClone(SHIPPED.cross_source) as { rows: Record<string, unknown>[] }
    for (const r of many.rows) r.n_groups = Math.max(Number(r.n_groups), 10)
    const page = modelPage({ ...SHIPPED, cross_source: many } as ModelCard)
    expect(page).not.toContain('few patients: interval unreliable (')
  })
})

describe('the Model page says the card counts the images the gate refuses', () => {
  it('where the test split is described', () => {
    const said = byTestId(modelPage(), 'test-refused')
    expect(said).not.toBeNull()
    expect(said).toContain('count every test image, including those the “cannot assess” gate refuses')
    expect(said).toContain('dermsight evaluate leaves refused images out of its figures')
  })
})
