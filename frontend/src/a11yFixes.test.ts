// Fixes from the accessibility and patient-wording audit of the real UI: the patient view says
// warnings, probabilities and the next step in plain, honest words (the clinician view keeps the
// exact ones), the live region and the focus follow what is on screen, form errors are tied to
// their fields, titles and headings name the page, and tables have captions.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { describe, expect, it, vi } from 'vitest'
import { ApiError, type Flag } from './api.ts'
import { ErrorBox, RiskRoseBadge } from './clinic/badges.tsx'
import { fieldErrorProps, loginInvalid, refusedInput } from './clinic/fieldErrors.ts'
import type { Lesion, LesionDetail, Patient } from './clinic/types.ts'
import { ClinicNavLinks } from './components/ClinicNav.tsx'
import { FlagList, flagText } from './components/FlagList.tsx'
import { ProbBars, probText } from './components/ProbBars.tsx'
import { RiskBanner } from './components/RiskBanner.tsx'
import {
  FALLBACK_CLASSES,
  PATIENT_FLAG_TEXT,
  PATIENT_PROBS_TITLE,
  RISK_TEXT,
  assessAnnouncement,
  patientFlagText,
  patientPercent,
  riskHeadline,
} from './content.ts'
import { focusIsLost } from './pages/AssessPage.tsx'
import { ClinicLesionPage } from './pages/ClinicLesionPage.tsx'
import { clinicPageTitle } from './pages/ClinicMain.tsx'
import { ClinicPatientPage, lesionListCaption } from './pages/ClinicPatientPage.tsx'
import { LoginPage } from './pages/LoginPage.tsx'

const loaded = vi.hoisted(() => new Map<string, unknown>())

vi.mock('./clinic/session.ts', async (original) => ({
  ...(await original<typeof import('./clinic/session.ts')>()),
  useLoad: (_load: unknown, key: string) =>
    loaded.has(key)
      ? { data: loaded.get(key), error: null, loading: false, reload: () => undefined }
      : { data: null, error: null, loading: true, reload: () => undefined },
}))

const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, '')
    .replace(/<!-- -->/g, '')
    .replace(/\s+/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')

/** The server's flag for a JPEG re-saved at quality 60 (dermsight.compression). */
const COMPRESSED: Flag = {
  code: 'compressed',
  message:
    'image compressed more than the training images (JPEG quality about 60): re-saved at JPEG quality 75 or lower, ' +
    'validation images got shifted probabilities and a measurably worse malignant ranking; use the original file if you have it',
  blocking: false,
}

function banner(audience: 'patient' | 'clinician', flags: Flag[], risk = 'low'): string {
  return text(renderToStaticMarkup(createElement(RiskBanner, { risk, flags, audience })))
}

describe('warnings in the patient view are plain words, by code', () => {
  it('says a compressed picture in a sentence, without the server’s technical text', () => {
    const t = banner('patient', [COMPRESSED])
    expect(t).toContain('This picture has been compressed, so the result may be less reliable. Use the original photo if you can.')
    expect(t).not.toContain('JPEG quality')
    expect(t).not.toContain('malignant ranking')
  })

  it('keeps the full server text in the clinician view', () => {
    const t = banner('clinician', [COMPRESSED])
    expect(t).toContain('Image compressed more than the training images (JPEG quality about 60)')
    expect(t).toContain('measurably worse malignant ranking')
  })

  it('has plain words for every flag code the server sends, and a plain fallback for others', () => {
    for (const code of [
      'compressed', 'not_dermoscopic', 'metadata_ignored', 'metadata_normalised', 'site_contradicts_lesion', 'site_contradicts_earlier_visit', 'too_small',
      'blank', 'too_dark', 'overexposed', 'blurred', 'noise', 'greyscale', 'out_of_distribution', 'recoloured',
    ]) {
      expect(PATIENT_FLAG_TEXT[code], code).toMatch(/^[A-Z].*\.$/)
      expect(PATIENT_FLAG_TEXT[code]).not.toMatch(/\b(px|JPEG|ood|dermoscopic|metadata)\b/i)
    }
    expect(patientFlagText({ code: 'new_kind', blocking: false })).toBe(
      'Something about this picture or the details given may make the result less reliable.',
    )
    expect(patientFlagText({ code: 'new_kind' })).toBe('The reason is not described in plain words here: the clinician view shows it.')
    expect(patientFlagText({ code: 'toString', blocking: false })).toMatch(/^Something about/) // not an inherited key
    expect(flagText({ code: 'new_kind', message: 'odd thing at 3.2σ', blocking: false }, 'clinician')).toBe('Odd thing at 3.2σ')
  })

  it('says the refusals of a picture that cannot be assessed in plain words too', () => {
    const tooSmall: Flag = { code: 'too_small', message: 'image is only 120 px on its short side; at least 224 px are needed' }
    const t = banner('patient', [tooSmall], 'cannot_assess')
    expect(t).toContain('This picture is too small to assess.')
    expect(t).not.toContain('120 px')
    expect(banner('clinician', [tooSmall], 'cannot_assess')).toContain('Image is only 120 px')
  })

  it('says two flags that read the same once, each item keeping its code', () => {
    const html = renderToStaticMarkup(
      createElement(FlagList, {
        flags: [
          { code: 'a', message: 'x', blocking: false },
          { code: 'b', message: 'y', blocking: false },
        ],
        className: 'risk-warnings',
        audience: 'patient',
      }),
    )
    expect(html.match(/<li/g)).toHaveLength(1)
    expect(html).toContain('data-code="a"')
  })
})

describe('the class probabilities in the patient view are the model’s coarse estimate', () => {
  const probs = { NV: 0.995, MEL: 0.0002, BKL: 0.0048 }
  const bars = (audience: 'patient' | 'clinician') =>
    text(renderToStaticMarkup(createElement(ProbBars, { probabilities: probs, classes: FALLBACK_CLASSES, prediction: 'NV', audience })))

  it('shows whole percentages with "under 1%" and "over 99%", never tenths', () => {
    const t = bars('patient')
    expect(t).toContain('over 99%')
    expect(t).toContain('under 1%')
    expect(t).not.toContain('99.5%')
    expect(t).not.toContain('<0.1%')
    expect(patientPercent(0.4249)).toBe('42%')
    expect(patientPercent(0.01)).toBe('1%')
    expect(patientPercent(0.0099)).toBe('under 1%')
    expect(patientPercent(0.99)).toBe('99%')
    expect(patientPercent(0.9901)).toBe('over 99%')
    expect(patientPercent(1)).toBe('over 99%')
    expect(patientPercent(0)).toBe('under 1%')
    expect(patientPercent(1.5)).toBe('—')
    expect(patientPercent(Number.NaN)).toBe('—')
  })

  it('keeps the exact figures for clinicians', () => {
    const t = bars('clinician')
    expect(t).toContain('99.5%')
    expect(t).toContain('<0.1%')
    expect(probText(0.995, 'clinician')).toBe('99.5%')
    expect(probText(0.995, 'patient')).toBe('over 99%')
  })

  it('is titled as the model’s estimate, not a diagnosis', () => {
    expect(PATIENT_PROBS_TITLE).toMatch(/model’s estimate/)
    expect(PATIENT_PROBS_TITLE).toMatch(/not a diagnosis/)
    expect(PATIENT_PROBS_TITLE).not.toMatch(/how likely/i)
  })
})

describe('the headline and its announcement use the words on screen for the audience', () => {
  it('tells a patient the next step without clinical shorthand', () => {
    for (const risk of Object.keys(RISK_TEXT)) {
      expect(riskHeadline(risk, 'patient').nextStep, risk).not.toMatch(/refer/i)
    }
    expect(riskHeadline('high', 'patient')).toEqual({ label: 'Higher risk', nextStep: 'See a dermatologist soon' })
    expect(riskHeadline('high', 'clinician')).toEqual({ label: 'High risk', nextStep: 'Refer / see a dermatologist soon' })
    const t = banner('patient', [], 'high')
    expect(t).toContain('Higher risk')
    expect(t).toContain('See a dermatologist soon')
    expect(t).not.toMatch(/refer/i)
    expect(banner('clinician', [], 'high')).toContain('Refer / see a dermatologist soon')
  })

  it('announces the label on screen: the patient’s in the patient view', () => {
    expect(assessAnnouncement({ risk: 'high', audience: 'patient', busy: false, slow: false })).toBe(
      'Result: Higher risk. See a dermatologist soon.',
    )
    expect(assessAnnouncement({ risk: 'high', audience: 'clinician', busy: false, slow: false })).toBe(
      'Result: High risk. Refer / see a dermatologist soon.',
    )
    expect(assessAnnouncement({ risk: 'moderate', audience: 'patient', busy: false, slow: false })).toMatch(/^Result: Some concern\./)
  })

  it('announces a slow server once, without a seconds count read out every second', () => {
    expect(assessAnnouncement({ risk: null, audience: 'patient', busy: true, slow: false })).toBe('Analysing the image…')
    const slow = assessAnnouncement({ risk: null, audience: 'patient', busy: true, slow: true })
    expect(slow).toMatch(/^Still waiting for the server\./)
    expect(slow).not.toMatch(/\d/)
    expect(assessAnnouncement({ risk: null, audience: 'patient', busy: false, slow: true })).toBe('')
  })
})

describe('focus is moved only when it is lost', () => {
  const body = { isConnected: true }
  const button = { isConnected: true }
  it('takes the page, a removed element or a passing one as lost, a live control as not', () => {
    expect(focusIsLost(null, body)).toBe(true)
    expect(focusIsLost(body, body)).toBe(true)
    expect(focusIsLost({ isConnected: false }, body)).toBe(true)
    expect(focusIsLost(button, body, [button])).toBe(true) // e.g. the disabled Assess button
    expect(focusIsLost(button, body, [null])).toBe(false)
    expect(focusIsLost(button, body)).toBe(false)
  })
})

describe('form errors are tied to their fields', () => {
  it('gives the fields aria-invalid and aria-describedby while the message is shown', () => {
    expect(fieldErrorProps('e1', true)).toEqual({ 'aria-invalid': true, 'aria-describedby': 'e1' })
    expect(fieldErrorProps('e1', false)).toEqual({ 'aria-invalid': undefined, 'aria-describedby': 'e1' })
    expect(fieldErrorProps(null, false)).toEqual({ 'aria-invalid': undefined, 'aria-describedby': undefined })
    expect(renderToStaticMarkup(createElement(ErrorBox, { error: 'Wrong user name or password', id: 'e1' }))).toContain('id="e1"')
  })

  it('marks the empty sign-in field, or after a refused sign-in the fields that can be retyped', () => {
    expect(loginInvalid('', 'pw', false, false)).toEqual({ username: true, password: false })
    expect(loginInvalid('dr', '', false, false)).toEqual({ username: false, password: true })
    expect(loginInvalid('dr', '', true, false)).toEqual({ username: true, password: true })
    expect(loginInvalid('dr', '', true, true)).toEqual({ username: false, password: true })
  })

  it('marks fields invalid only when the server refused what was typed', () => {
    expect(refusedInput(new ApiError(409, 'exists already'))).toBe(true)
    expect(refusedInput(new ApiError(401, 'session ended'))).toBe(false)
    expect(refusedInput(new ApiError(401, 'wrong password'), [400, 401, 422])).toBe(true)
    expect(refusedInput(new ApiError(0, 'unreachable'))).toBe(false)
    expect(refusedInput(new Error('x'))).toBe(false)
  })

  it('marks the sign-in fields required', () => {
    const html = renderToStaticMarkup(createElement(LoginPage))
    expect(html.match(/<input[^>]*required/g)).toHaveLength(2)
  })
})

describe('the page title and the navigation name the page on screen', () => {
  const admin = { user: { id: 1, username: 'a', role: 'admin' } } as unknown as Parameters<typeof clinicPageTitle>[1]
  const clinician = { user: { id: 2, username: 'c', role: 'clinician' } } as unknown as Parameters<typeof clinicPageTitle>[1]
  it('is the sign-in page’s while nobody is signed in', () => {
    expect(clinicPageTitle('patients', null)).toBe('Sign in to the clinic')
    expect(clinicPageTitle('lesion', null, 'dr')).toBe('Your session has ended')
    expect(clinicPageTitle('patients', clinician)).toBe('Patients')
  })
  it('calls the account page what its heading and link call it', () => {
    expect(clinicPageTitle('admin', admin)).toBe('Account and administration')
    expect(clinicPageTitle('admin', clinician)).toBe('Account')
    for (const session of [admin, clinician]) {
      const nav = text(renderToStaticMarkup(createElement(ClinicNavLinks, { route: { page: 'admin' }, session } as never)))
      expect(nav).toContain('Account')
      expect(nav).not.toContain('Admin')
    }
  })
})

function lesion(over: Partial<Lesion>): Lesion {
  return {
    id: 70,
    body_site: 'posterior torso',
    side: null,
    location: null,
    map: null,
    n_visits: 0,
    latest_risk: null,
    latest_malignant_probability: null,
    latest_risk_taken_at: null,
    latest_visit_risk: null,
    risk_rose: false,
    diagnosis: null,
    ...over,
  }
}

describe('headings name the page; tables have captions', () => {
  it('keeps the "risk rose" badge out of the lesion page’s heading, its triangle hidden', () => {
    loaded.clear()
    const detail: LesionDetail = {
      lesion: lesion({ risk_rose: true }),
      visits: [],
      changes: [],
      patient: { id: 5, ref: 'P-5' },
      diagnosis: null,
    } as unknown as LesionDetail
    loaded.set('70', detail)
    const html = renderToStaticMarkup(createElement(ClinicLesionPage, { id: 70 }))
    const h1 = /<h1[^>]*>(.*?)<\/h1>/s.exec(html)?.[1] ?? ''
    expect(text(h1)).toBe('Lesion: Torso – back')
    expect(html).toContain('data-testid="lesion-risk-rose"')
    expect(renderToStaticMarkup(createElement(RiskRoseBadge, { rose: true }))).toContain('<span aria-hidden="true">▲ </span>risk rose')
  })

  it('captions the patient page’s lesion table', () => {
    loaded.clear()
    loaded.set('5', { id: 5, ref: 'P-5', created_at: '2025-01-01', lesions: [lesion({})] } satisfies Patient)
    const html = renderToStaticMarkup(createElement(ClinicPatientPage, { id: 5 }))
    expect(html).toMatch(/<table[^>]*data-testid="lesion-list"[^>]*><caption[^>]*>Lesions of patient P-5: 1 lesion<\/caption>/)
    expect(lesionListCaption('P-5', 0)).toBe('Lesions of patient P-5: none yet')
    expect(lesionListCaption('P-5', 3)).toBe('Lesions of patient P-5: 3 lesions')
  })
})
