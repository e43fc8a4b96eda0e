// The audit of the Patient view on a phone: an ordinary photo (flag `not_dermoscopic`: how
// reliable the result is, is not known) must not read as "it's fine" (no green "Lower risk" with a
// tick, no "No urgent step", no counts of dermatoscope images); the Assess page says what happens
// to the photo; the counts' caveat is in plain words in the Patient view.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it } from 'vitest'
import shippedCard from '../../src/dermsight/assets/default/card.json?raw'
import type { Flag, ModelCard, PredictResponse } from './api.ts'
import { NaturalFrequency, patientLimits } from './components/NaturalFrequency.tsx'
import { RiskBanner, reliabilityUnknown } from './components/RiskBanner.tsx'
import { FALLBACK_CLASSES } from './content.ts'
import { AudienceContext, type Audience } from './hooks.ts'
import { AssessPage, ResultView, UPLOAD_PRIVACY } from './pages/AssessPage.tsx'
import { visibleText } from './testing/html.ts'

const SHIPPED = JSON.parse(shippedCard) as ModelCard

const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
const source = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8')

/** the server's flag for an ordinary photo (dermsight.gate.CLINICAL_FLAG) */
const NOT_DERMOSCOPIC: Flag = {
  code: 'not_dermoscopic',
  message:
    'not a dermoscopic image \u2014 accuracy unknown: this looks like a clinical (non-dermoscopic) photo of skin; the ' +
    'model was trained and tested on dermoscopic images only',
  blocking: false,
}
const COMPRESSED: Flag = { code: 'compressed', message: 'JPEG quality about 50; use the original file if you have it', blocking: false }

/** the audit's case: /tmp/audit_patient/clin2/d13_400_1.05.jpg gave risk low, flags [not_dermoscopic] */
function result(risk: string, flags: Flag[]): PredictResponse {
  return {
    probabilities: { MEL: 0.01, NV: 0.9, BCC: 0.0, AK: 0.01, BKL: 0.05, DF: 0.01, VASC: 0.01, SCC: 0.0, UNK: 0.01 },
    prediction: 'NV',
    prediction_name: 'Melanocytic nevus',
    malignant_probability: risk === 'low' ? 0.01 : risk === 'moderate' ? 0.07 : 0.4,
    risk,
    flags,
    heatmap: 'AAAA',
    model: { name: 'dermsight', version: '1' },
  }
}

function render(res: PredictResponse, audience: Audience): string {
  return renderToStaticMarkup(
    createElement(ResultView, {
      outcome: { res, at: new Date(0), file: new File([], 'a.jpg'), fileName: 'a.jpg', form: { age: 30, sex: 'female', site: 'posterior torso' } },
      preview: { url: 'blob:x', dicom: false, refused: null, pending: false },
      onNewCase: () => undefined,
      classes: FALLBACK_CLASSES,
      card: SHIPPED,
      audience,
      opacity: 50,
      onOpacity: () => undefined,
    }),
  )
}

/** the element with this test id, as markup (its opening tag included), or null */
function part(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*data-testid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html)
  return m ? m[0] : null
}

/** the banner's opening tag and its icon (RiskBanner's own markup) */
function banner(risk: string, flags: Flag[], audience: Audience): string {
  return renderToStaticMarkup(createElement(RiskBanner, { risk, flags, audience }))
}

const TICK = 'm8 12 3 3 5-6' // IconCheck's path

describe('an ordinary photo (not_dermoscopic) with a low tier does not reassure in the Patient view', () => {
  const html = render(result('low', [NOT_DERMOSCOPIC]), 'patient')
  const text = visibleText(html)

  it('shows a neutral "Result uncertain" banner: no "Lower risk", no green, no tick', () => {
    const b = banner('low', [NOT_DERMOSCOPIC], 'patient')
    expect(b).toMatch(/class="risk-banner risk-unknown"/)
    expect(b).not.toContain('risk-low')
    expect(b).not.toContain(TICK)
    expect(b).toContain('data-risk="low"') // the tier the API gave stays readable for tests and tools
    expect(visibleText(b)).toContain('Result uncertain')
    expect(visibleText(b)).toContain('It cannot be relied on for this kind of photo')
    expect(text).not.toContain('Lower risk')
    expect(text).not.toContain('Low estimated risk')
    // the warning itself is still said
    expect(text).toContain('how reliable this result is, is not known')
  })

  it('gives no natural-frequency figures (they were counted on dermatoscope images)', () => {
    expect(part(html, 'natural-frequency')).toBeNull()
    expect(text).not.toMatch(/Of 100 lesions/)
  })

  it('advises a doctor if the spot worries or changes, not "No urgent step"', () => {
    const advice = visibleText(part(html, 'patient-advice') ?? '')
    expect(advice).not.toContain('No urgent step')
    expect(advice).toContain('not tested on photos like this one')
    expect(advice).toMatch(/looked at by a doctor if it worries you or if it changes/)
    expect(part(html, 'patient-advice')).not.toContain('advice-low')
  })

  it('keeps a dermatoscope picture\'s low result as before: "Lower risk", the tick and the figures', () => {
    const plain = render(result('low', []), 'patient')
    expect(visibleText(plain)).toContain('Lower risk')
    expect(banner('low', [], 'patient')).toContain(TICK)
    expect(banner('low', [], 'patient')).toContain('risk-low')
    expect(visibleText(part(plain, 'natural-frequency') ?? '')).toContain('Of 100 lesions that get this result, fewer than 1 turned out to be cancer')
    expect(visibleText(part(plain, 'patient-advice') ?? '')).toContain('No urgent step')
    // a warning that says only "may be less reliable" changes nothing here
    expect(reliabilityUnknown('low', [COMPRESSED])).toBe(false)
    expect(visibleText(render(result('low', [COMPRESSED]), 'patient'))).toContain('Lower risk')
  })

  it('keeps a higher tier (its advice, see a doctor, is the safe one) but withholds the figures', () => {
    for (const risk of ['moderate', 'high']) {
      const h = render(result(risk, [NOT_DERMOSCOPIC]), 'patient')
      expect(visibleText(h)).toContain(risk === 'high' ? 'Higher risk' : 'Some concern')
      expect(part(h, 'natural-frequency')).toBeNull()
      expect(visibleText(part(h, 'patient-advice') ?? '')).toMatch(/dermatologist/)
    }
  })
})

describe('the Clinician view keeps the tier of an ordinary photo', () => {
  it('says "Low risk" in the low colour, without the reassuring tick, and no natural-frequency figures', () => {
    const b = banner('low', [NOT_DERMOSCOPIC], 'clinician')
    expect(b).toContain('risk-low')
    expect(b).not.toContain(TICK)
    expect(b).toContain('data-uncertain="true"')
    expect(visibleText(b)).toContain('Low risk')
    const html = render(result('low', [NOT_DERMOSCOPIC]), 'clinician')
    expect(visibleText(html)).toContain('Low risk')
    expect(part(html, 'natural-frequency')).toBeNull()
  })
})

describe('the Assess page says what happens to the photo', () => {
  it('says it under the upload box, in both views', () => {
    for (const audience of ['patient', 'clinician'] as const) {
      const html = renderToStaticMarkup(createElement(AudienceContext.Provider, { value: audience }, createElement(AssessPage)))
      const line = part(html, 'upload-privacy')
      expect(line).not.toBeNull()
      expect(visibleText(line ?? '')).toBe(UPLOAD_PRIVACY)
      // under the upload box, before the age/sex/site fields
      expect(html.indexOf('data-testid="upload-privacy"')).toBeLessThan(html.indexOf('<fieldset'))
    }
    expect(UPLOAD_PRIVACY).toBe('Your photo is sent to this dermsight server only to be assessed; it is not saved or logged.')
  })

  it('is not said on the clinic\'s visit upload, which stores visits', () => {
    expect(source('./components/NewVisitForm.tsx')).not.toContain('not saved or logged')
    expect(source('./components/NewVisitForm.tsx')).not.toContain('UPLOAD_PRIVACY')
  })
})

describe('the natural frequency in plain words in the Patient view', () => {
  it('speaks of research photos and "not your own chance", not of validation images or "this patient"', () => {
    const p = visibleText(renderToStaticMarkup(createElement(NaturalFrequency, { card: SHIPPED, risk: 'low', audience: 'patient' })))
    expect(p).toContain('Counted on the 718 research photos (kept out of the tool’s training) that got this result: 3 were cancer.')
    expect(p).toContain('where about 1 in 6 of the spots were cancer')
    expect(p).toContain('it is not your own chance of having cancer')
    expect(p).not.toContain('validation')
    expect(p).not.toContain('patient')
  })

  it('keeps the clinician wording and the card\'s own limits', () => {
    const c = visibleText(renderToStaticMarkup(createElement(NaturalFrequency, { card: SHIPPED, risk: 'low' })))
    expect(c).toContain('Counted on the 718 validation images (kept out of training) that got this result: 3 were cancer.')
    expect(c).toContain("it is not this patient's own risk")
  })

  it('rounds the share as the card\'s text does', () => {
    expect(patientLimits(1996, 335)).toContain('about 1 in 6 of the spots')
    expect(patientLimits(10, 7)).toContain('about 70 % of the spots')
    expect(patientLimits(10, 0)).toContain('none of the spots were cancer')
    expect(patientLimits(null, null)).toMatch(/^These photos come from public research collections of dermatoscope pictures, not/)
  })
})
