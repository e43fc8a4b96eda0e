// A per-class AUC the evaluation withheld (too few cases on one side) is shown as "withheld" with
// its reason as visible text (not a bare "—", nor a tooltip only), and the per-class block says
// so under the table, naming the classes the macro-average AUC leaves out.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard } from './api.ts'
import { cardTestEvaluation, macroLeftOut, withheldNote } from './card.ts'
import { visibleText } from './testing/html.ts'

const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./hooks.ts', async (original) => ({
  ...(await original<typeof import('./hooks.ts')>()),
  useApiData: (path: string) => ({ data: loaded.get(path) ?? null, error: null, loading: false, reload: () => undefined }),
  useApiImage: () => ({ src: null, failed: false }),
}))

const { ModelPage } = await import('./pages/ModelPage.tsx')
const { API } = await import('./api.ts')

const NOTE = '1 positive, 110 negative (< 5 on a side): withheld'

type Test = { per_class: { code: string; auc: unknown }[]; ci: Record<string, unknown> }

function withheldCard(): ModelCard {
  const card = JSON.parse(shippedCard) as ModelCard
  const test = (card.metrics as { test: Test }).test
  const row = test.per_class.find((r) => r.code === 'VASC')!
  row.auc = { value: null, lo: null, hi: null, n: 1, positives: 1, negatives: 110, withheld: true, note: NOTE }
  test.ci.auc_macro = { ...(test.ci.auc_macro as object), left_out: ['VASC'], note: 'mean over the others' }
  return card
}

function modelPage(card: ModelCard): string {
  loaded.clear()
  loaded.set(`${API}/model`, card)
  return renderToStaticMarkup(createElement(ModelPage))
}

function tableRows(html: string, id: string): string[] {
  const t = new RegExp(`<table[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</table>`).exec(html)?.[1] ?? ''
  return [...t.matchAll(/<tr[^>]*>([\s\S]*?)<\/tr>/g)].map((m) => visibleText(m[1]))
}

describe('a withheld per-class AUC', () => {
  it('keeps the withheld flag and its note when the card is read', () => {
    expect(withheldNote({ value: null, withheld: true, note: NOTE })).toBe(NOTE)
    expect(withheldNote({ value: null, withheld: true })).toBe('withheld')
    expect(withheldNote({ value: 0.9, lo: 0.8, hi: 0.95 })).toBeNull()
    expect(withheldNote(null)).toBeNull()
    const ev = cardTestEvaluation(withheldCard())!
    expect(ev.perClass.find((r) => r.code === 'VASC')!.aucWithheld).toBe(NOTE)
    expect(ev.perClass.find((r) => r.code === 'MEL')!.aucWithheld).toBeNull()
    expect(macroLeftOut(ev)).toEqual(['VASC'])
  })

  it('is shown as withheld with its reason as visible text, and a limitation line', () => {
    const html = modelPage(withheldCard())
    const vasc = tableRows(html, 'per-class-table').find((r) => r.includes('(VASC)'))!
    expect(vasc).toContain('withheld 1 positive, 110 negative')
    const cell = /<td[^>]*data-testid="auc-withheld-VASC"[^>]*>/.exec(html)?.[0] ?? ''
    expect(cell).toContain('title=')
    const note = visibleText(/<p[^>]*data-testid="withheld-auc-note"[^>]*>([\s\S]*?)<\/p>/.exec(html)?.[1] ?? '')
    expect(note).toContain('VASC')
    expect(note).toContain('leaves out VASC')
  })

  it('the shipped card has none', () => {
    const html = modelPage(JSON.parse(shippedCard) as ModelCard)
    expect(html).not.toContain('withheld-auc-note')
    expect(html).not.toContain('auc-withheld-')
  })
})
