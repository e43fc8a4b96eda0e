// Findings of a clinician's audit of the clinic pages: a stored visit showed neither its suggested
// class, nor its class probabilities, nor the tier cut-offs (the Assess page shows all three); the
// printed lesion page lost visits (the timeline scrolled sideways on paper) and printed its empty
// forms; an unknown "#/clinic/..." address showed the Assess page (as if data were lost); the
// Assess page's printed report said its time in the browser's locale ("12/7/2026, 12:19:29 PM").

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard, PredictResponse } from './api.ts'
import { makeVisit } from './clinic/testVisits.ts'
import { FALLBACK_CLASSES } from './content.ts'
import { visibleText } from './testing/html.ts'

// node's file reading, named so that the app's TypeScript (no node types) leaves it alone
const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }

const SHIPPED = JSON.parse(shippedCard) as ModelCard

// the pages read the card and the classes through useApiData: give them these (and nothing else)
const loaded = vi.hoisted(() => new Map<string, unknown>())
vi.mock('./hooks.ts', async (original) => ({
  ...(await original<typeof import('./hooks.ts')>()),
  useApiData: (path: string) => ({ data: loaded.get(path) ?? null, error: null, loading: false }),
  useApiImage: () => ({ src: null, failed: false }),
}))

const { API } = await import('./api.ts')
const { routeFromHash } = await import('./hooks.ts')
const { VisitDetails, VisitTimeline, visitCutoffs } = await import('./components/VisitTimeline.tsx')
const { NotFoundPage } = await import('./pages/NotFoundPage.tsx')
const { ResultView } = await import('./pages/AssessPage.tsx')

const RULE = 'balanced: most probable class after dividing by the training class frequency to the power 0.5'
const MODEL = { name: SHIPPED.name as string, version: SHIPPED.version as string }

/** An assessed visit recorded with the shipped model (MEL 71.1 % malignant share, high). */
function assessed(id = 2, model: { name: string; version: string } = MODEL) {
  return makeVisit(id, '2026-09-01', { model }, {
    risk: 'high',
    malignant_probability: 0.711,
    probabilities: { MEL: 0.7, NV: 0.27, BCC: 0.01, UNK: 0.02 },
    prediction: 'MEL',
    prediction_name: 'Melanoma',
    decision_rule: RULE,
    model,
  })
}

function serve(card: ModelCard | null) {
  loaded.clear()
  if (card) loaded.set(`${API}/model`, card)
  loaded.set(`${API}/classes`, FALLBACK_CLASSES)
}

function byTestId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html)
  return m ? visibleText(m[2]) : null
}

describe("a stored visit's details", () => {
  it('are on every assessed visit card of the timeline: suggested class, rule, cut-offs, class bars', () => {
    serve(SHIPPED)
    const first = makeVisit(1, '2026-06-01', { model: MODEL }, { risk: 'cannot_assess', malignant_probability: undefined })
    const visits = [first, assessed()]
    const html = renderToStaticMarkup(createElement(VisitTimeline, { visits, changes: [], onChanged: () => undefined }))
    // one disclosure, on the assessed visit (a visit that could not be assessed has no class or bars)
    expect(html.match(/data-testid="visit-details"/g)).toHaveLength(1)
    expect(html).toContain('<details class="visit-details"')
    const text = visibleText(html)
    expect(text).toContain('Details of visit 2 of 2, 2026-09-01')
    expect(text).toContain(`Suggested class Melanoma (MEL) — chosen as: ${RULE}`)
    expect(byTestId(html, 'visit-thresholds')).toBe('71.1% (refer ≥ 11.7%, monitor ≥ 4.6%)')
    expect(html).toContain('data-testid="prob-bar-MEL"')
    expect(html).toContain('data-testid="prob-bar-NV"')
  })

  it("never show a later model's cut-offs beside a visit another model recorded", () => {
    const old = assessed(3, { name: MODEL.name, version: '1.0.0' })
    expect(visitCutoffs(old, SHIPPED)).toBeNull()
    expect(visitCutoffs(assessed(), SHIPPED)).toEqual({ refer: 0.11684319495541508, monitor: 0.04596520587194599 })
    const html = renderToStaticMarkup(createElement(VisitDetails, { visit: old, visits: [old], classes: FALLBACK_CLASSES, card: SHIPPED }))
    const line = byTestId(html, 'visit-thresholds') ?? ''
    expect(line).not.toContain('refer ≥')
    expect(line).toContain(`tier cut-offs not shown: this visit was recorded with ${MODEL.name} 1.0.0`)
    // without the card (not loaded): said, not guessed
    const none = renderToStaticMarkup(createElement(VisitDetails, { visit: old, visits: [old], classes: FALLBACK_CLASSES, card: null }))
    expect(byTestId(none, 'visit-thresholds')).toContain('tier cut-offs not shown: the model card is not available')
    // the visit's own model, but a card without cut-offs: said so, not a model change
    const bare = { ...SHIPPED, thresholds: undefined } as ModelCard
    const same = assessed(5)
    const noCuts = renderToStaticMarkup(createElement(VisitDetails, { visit: same, visits: [same], classes: FALLBACK_CLASSES, card: bare }))
    expect(byTestId(noCuts, 'visit-thresholds')).toContain('tier cut-offs not shown: the model card states none')
  })

  it('show nothing of the numbers a refused image got (kept under "unreliable")', () => {
    const v = makeVisit(4, '2026-06-01', { model: MODEL }, {
      risk: 'cannot_assess',
      malignant_probability: undefined,
      unreliable: { note: 'x', probabilities: { MEL: 0.3 }, prediction: 'MEL' },
    } as unknown as Partial<PredictResponse>)
    expect(renderToStaticMarkup(createElement(VisitDetails, { visit: v, visits: [v], classes: FALLBACK_CLASSES, card: SHIPPED }))).toBe('')
  })
})

describe('the printed lesion page', () => {
  const css = readFileSync(new URL('./styles.css', import.meta.url), 'utf8')
  // the print rules that win over the timeline's own: those after its last screen rule
  const afterTimeline = css.slice(css.lastIndexOf('\n.timeline {'))
  const printBlocks = [...afterTimeline.matchAll(/@media print \{([\s\S]*?)\n\}/g)].map((m) => m[1])

  it('wraps the timeline on paper instead of scrolling it sideways', () => {
    const block = printBlocks.find((b) => /\.timeline \{[^}]*flex-wrap: wrap/.test(b)) ?? ''
    expect(block).toMatch(/\.timeline \{[^}]*overflow: visible/)
  })
  it('leaves the forms and edit controls off the paper', () => {
    const hidden = printBlocks.join('\n')
    for (const sel of ['.new-visit', '.visit-corrections', '.visits-view-toggle', '.lesion-jump', '.diagnosis-form']) {
      expect(hidden).toContain(sel)
    }
  })
})

describe('an unknown clinic address', () => {
  it('is a page not found, not the Assess page', () => {
    expect(routeFromHash('#/clinic/visits/1')).toBe('notfound')
    expect(routeFromHash('#/clinic/lesions/abc')).toBe('notfound')
    expect(routeFromHash('#/clinic/patients/1/x')).toBe('notfound')
    // the clinic's own pages are the clinic's (App asks clinicRouteFromHash first), as before
    expect(routeFromHash('#/clinic/lesions/999')).toBe('assess')
    expect(routeFromHash('#/clinic')).toBe('assess')
    // other hashes: unchanged
    expect(routeFromHash('#/elsewhere')).toBe('assess')
    expect(routeFromHash('#/clinical')).toBe('assess')
  })
  it('says so under a heading, with a link to the patients', () => {
    const html = renderToStaticMarkup(createElement(NotFoundPage, { hash: '#/clinic/visits/1' }))
    expect(html).toContain('<h1 class="page-title">Page not found</h1>')
    expect(byTestId(html, 'not-found-address')).toBe('#/clinic/visits/1')
    expect(html).toMatch(/<a href="#\/clinic"[^>]*>Patients<\/a>/)
  })
})

describe("the Assess page's printed report", () => {
  it('states its time as an ISO date with the time zone, as the clinic pages do', () => {
    serve(SHIPPED)
    const res = {
      probabilities: { MEL: 0.02, NV: 0.98 },
      prediction: 'NV',
      malignant_probability: 0.02,
      risk: 'low',
      flags: [],
      model: MODEL,
    } as unknown as PredictResponse
    const html = renderToStaticMarkup(
      createElement(ResultView, {
        outcome: { res, at: new Date('2026-12-07T12:19:29Z'), file: new File([], 'a.jpg'), fileName: 'a.jpg', form: { age: null, sex: '', site: '' } },
        preview: { url: 'blob:x', dicom: false, refused: null, pending: false },
        onNewCase: () => undefined,
        classes: FALLBACK_CLASSES,
        card: SHIPPED,
        audience: 'clinician',
        opacity: 50,
        onOpacity: () => undefined,
      }),
    )
    const head = /<header class="print-only report-head">([\s\S]*?)<\/header>/.exec(html)?.[1] ?? ''
    expect(visibleText(head)).toContain('2026-12-07 12:19 UTC · image “a.jpg”')
  })
})
