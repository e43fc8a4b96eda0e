// Follow-ups from the review of the real UI's patient view: a "Higher risk" beside cancer bars of
// "under 1%" is explained, the heatmap does not name the suggested class the banner hides, flags
// say only what is known (a picture the model does not recognise; details that may come from the
// file), a refusal without plain wording does not repeat the banner, the Learn page shows the
// patient words of each level, and the clinic forms move focus after the render that ties the
// error to the field.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { ModelCard, PredictResponse } from './api.ts'
import { RiskBanner } from './components/RiskBanner.tsx'
import * as content from './content.ts'
import { FALLBACK_CLASSES, PATIENT_FLAG_TEXT, patientFlagText, riskHeadline } from './content.ts'
import * as assess from './pages/AssessPage.tsx'
import { LearnPage } from './pages/LearnPage.tsx'
import { visibleText } from './testing/html.ts'

const SHIPPED = JSON.parse(shippedCard) as ModelCard

const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
const source = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8')

const text = visibleText

/** The review's case: "Other / unknown" takes 95.6 %, melanoma 1.3 %: share 0.289, high tier. */
const UNK_HEAVY: Record<string, number> = {
  MEL: 0.013, NV: 0.01, BCC: 0.0, AK: 0.008, BKL: 0.008, DF: 0.002, VASC: 0.002, SCC: 0.0, UNK: 0.957,
}
const SHARE = (0.013 + 0.0 + 0.0) / (1 - 0.957)

function result(risk: string, probabilities = UNK_HEAVY): PredictResponse {
  return {
    probabilities,
    prediction: 'MEL',
    prediction_name: 'Melanoma',
    malignant_probability: Math.round(SHARE * 1e6) / 1e6,
    risk,
    flags: [],
    heatmap: 'AAAA',
    model: { name: 'dermsight', version: '1' },
  }
}

function renderResult(res: PredictResponse, audience: 'patient' | 'clinician', card: ModelCard | null = SHIPPED): string {
  const ResultView = assess.ResultView
  return renderToStaticMarkup(
    createElement(ResultView, {
      outcome: { res, at: new Date(0), file: new File([], 'a.jpg'), fileName: 'a.jpg', form: { age: null, sex: '', site: '' } },
      preview: { url: 'blob:x', dicom: false, refused: null, pending: false },
      onNewCase: () => undefined,
      classes: FALLBACK_CLASSES,
      card,
      audience,
      opacity: 50,
      onOpacity: () => undefined,
    }),
  )
}

function byTestId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html)
  return m ? text(m[2]) : null
}

describe('a "Higher risk" beside small cancer bars is explained in the patient view', () => {
  it('says why, when "Other / unknown" holds most of the estimate (same condition as the clinician note)', () => {
    expect(content.malignantShareNote(SHIPPED, UNK_HEAVY, SHARE)).not.toBeNull()
    const note = content.patientShareNote(SHIPPED, UNK_HEAVY, SHARE, 'high', (c) => (c === 'UNK' ? 'Other / unknown' : c))
    expect(note).toBe(
      'Most of the estimate went to “Other / unknown”. The risk level looks only at the named types of spot, and ' +
        'among those the cancers take a large share, so a doctor should look at it.',
    )
    // without a card, the classes left out are read from the result
    expect(content.patientShareNote(null, UNK_HEAVY, SHARE, 'moderate')).toMatch(/^Most of the estimate went to “UNK”\..*a noticeable share, so a doctor should check it/)
  })

  it('says nothing when the excluded classes hold under half, or for a low or cannot-assess result', () => {
    const small = { ...UNK_HEAVY, UNK: 0.3, NV: 0.667 }
    expect(content.patientShareNote(SHIPPED, small, 0.013 / 0.7, 'high')).toBeNull()
    expect(content.patientShareNote(SHIPPED, UNK_HEAVY, SHARE, 'low')).toBeNull()
    expect(content.patientShareNote(SHIPPED, UNK_HEAVY, SHARE, 'cannot_assess')).toBeNull()
    // a card whose figure is the plain sum has nothing left out
    const plain = { ...SHIPPED, malignant_excluded: [] } as ModelCard
    expect(content.patientShareNote(plain, UNK_HEAVY, 0.013, 'high')).toBeNull()
  })

  it('never says the spot is or is not a cancer', () => {
    for (const risk of ['high', 'moderate']) {
      const note = content.patientShareNote(SHIPPED, UNK_HEAVY, SHARE, risk) ?? ''
      expect(note).not.toMatch(/\b(is|is not|isn’t|not) (a |likely )?cancer|benign|harmless|malignant|diagnos/i)
    }
  })

  it('shows the line beside the bars in the patient view, not in the clinician view', () => {
    const patient = renderResult(result('high'), 'patient')
    expect(byTestId(patient, 'patient-share-note')).toMatch(/^Most of the estimate went to “Other \/ unknown”\./)
    expect(renderResult(result('high'), 'clinician')).not.toContain('patient-share-note')
    expect(renderResult(result('low'), 'patient')).not.toContain('patient-share-note')
  })
})

describe('the patient view’s heatmap does not name the suggested class', () => {
  it('drops it from the caption and the alt text; the clinician view keeps it', () => {
    const figure = (html: string) => /<figure class="heatmap-viewer">[\s\S]*?<\/figure>/.exec(html)?.[0] ?? ''
    const patient = figure(renderResult(result('high'), 'patient'))
    expect(patient).toContain('most influenced the model')
    expect(patient).not.toContain('Melanoma')
    const clinician = figure(renderResult(result('high'), 'clinician'))
    expect(clinician).toContain('(“Melanoma”)')
    expect(clinician).toContain("answer (Melanoma)")
  })
})

describe('flags say only what is known', () => {
  it('does not claim that a picture the model does not recognise is not of a skin spot', () => {
    expect(PATIENT_FLAG_TEXT.out_of_distribution).toBe(
      'The model does not recognise this as the kind of picture it was built for (a dermatoscope picture of a skin ' +
        'spot), so it cannot be assessed.',
    )
    expect(PATIENT_FLAG_TEXT.out_of_distribution).not.toMatch(/does not look like/)
  })

  it('does not say the details were typed in: they can come from the picture’s file (DICOM)', () => {
    for (const code of ['metadata_ignored', 'metadata_normalised']) {
      expect(PATIENT_FLAG_TEXT[code]).not.toMatch(/you entered/)
      expect(PATIENT_FLAG_TEXT[code]).toContain('(typed in, or stored in the picture’s file)')
    }
  })

  it('a refusal without plain wording does not repeat the banner’s "cannot be assessed"', () => {
    const t = text(renderToStaticMarkup(createElement(RiskBanner, {
      risk: 'cannot_assess', flags: [{ code: 'new_kind', message: 'odd' }], audience: 'patient',
    })))
    expect(t).toContain(riskHeadline('cannot_assess', 'patient').nextStep)
    expect(t.match(/cannot be assessed/gi)).toHaveLength(1)
    expect(patientFlagText({ code: 'new_kind' })).toBe('The reason is not described in plain words here: the clinician view shows it.')
  })
})

describe('the Learn page’s tier legend', () => {
  const html = renderToStaticMarkup(createElement(LearnPage))

  it('shows the patient view’s words of each level beside the clinician’s', () => {
    for (const r of ['high', 'moderate', 'low', 'cannot_assess']) {
      const c = riskHeadline(r, 'clinician')
      const p = riskHeadline(r, 'patient')
      const legend = text(html)
      expect(legend).toContain(`${c.label} ${c.nextStep}.`)
      const shown = byTestId(html, `tier-patient-${r}`)
      expect(shown, r).toContain(`Patient view: ${p.label}`)
      if (p.nextStep !== c.nextStep) expect(shown).toContain(`${p.nextStep}.`)
    }
  })

  it('says the bars add up to about 100%, rounded in the patient view', () => {
    expect(text(html)).toContain('They add up to about 100%')
    expect(text(html)).not.toMatch(/They add up to 100%/)
  })
})

describe('the clinic forms focus a field after the render that ties the error to it', () => {
  /** The lines of the branch that starts with `start`, up to its `return`. */
  function branch(file: string, start: string): string[] {
    const s = source(file)
    const i = s.indexOf(start)
    expect(i, start).toBeGreaterThan(-1)
    return s.slice(i, s.indexOf('return', i)).split('\n')
  }

  it.each([
    ['./pages/LoginPage.tsx', 'if (!username.trim() || !password) {'],
    ['./pages/ClinicPatientsPage.tsx', 'if (!ref.trim()) {'],
  ])('%s: the empty-field branch', (file, start) => {
    const lines = branch(file, start).filter((l) => l.includes('.focus()'))
    expect(lines.length).toBeGreaterThan(0)
    for (const l of lines) expect(l).toContain('requestAnimationFrame(')
  })
})
