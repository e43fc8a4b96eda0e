import { describe, expect, it } from 'vitest'
import {
  clinicRouteFromHash,
  describeChange,
  formatDays,
  localDay,
  readableWait,
  RETAKE_LABEL,
  retakeCount,
  retakeNote,
  formatDelta,
  formatEstimate,
  isUnsafeMethod,
  isWithheld,
  latestSummary,
  lesionPlace,
  smallCount,
  tierLabel,
  withCsrf,
} from './format.ts'

describe('CSRF header injection', () => {
  it('adds X-CSRF-Token to unsafe methods only', () => {
    for (const m of ['POST', 'put', 'PATCH', 'DELETE']) {
      const init = withCsrf({ method: m }, 'tok-1')
      expect(new Headers(init.headers).get('X-CSRF-Token')).toBe('tok-1')
      expect(init.credentials).toBe('same-origin')
    }
    for (const m of [undefined, 'GET', 'head', 'OPTIONS']) {
      const init = withCsrf({ method: m }, 'tok-1')
      expect(new Headers(init.headers).has('X-CSRF-Token')).toBe(false)
      expect(init.credentials).toBe('same-origin')
    }
  })

  it('sends no header without a token and keeps the other headers', () => {
    expect(new Headers(withCsrf({ method: 'POST' }, null).headers).has('X-CSRF-Token')).toBe(false)
    const h = new Headers(withCsrf({ method: 'POST', headers: { Accept: 'application/json' } }, 't').headers)
    expect(h.get('Accept')).toBe('application/json')
    expect(h.get('X-CSRF-Token')).toBe('t')
  })

  it('knows the safe methods', () => {
    expect(isUnsafeMethod(undefined)).toBe(false)
    expect(isUnsafeMethod('get')).toBe(false)
    expect(isUnsafeMethod('post')).toBe(true)
  })
})

describe('clinic routes', () => {
  it('parses the clinic hashes', () => {
    expect(clinicRouteFromHash('#/clinic')).toEqual({ page: 'patients' })
    expect(clinicRouteFromHash('#/clinic/')).toEqual({ page: 'patients' })
    expect(clinicRouteFromHash('#/clinic/patients/12')).toEqual({ page: 'patient', id: 12 })
    expect(clinicRouteFromHash('#/clinic/lesions/7')).toEqual({ page: 'lesion', id: 7 })
    expect(clinicRouteFromHash('#/clinic/dashboard')).toEqual({ page: 'dashboard' })
    expect(clinicRouteFromHash('#/clinic/admin')).toEqual({ page: 'admin' })
  })

  it('leaves the other hashes to the stateless app', () => {
    for (const h of ['', '#/', '#/learn', '#/model', '#/clinic/lesions/x', '#/clinical']) {
      expect(clinicRouteFromHash(h)).toBeNull()
    }
  })
})

describe('changes between visits', () => {
  it('formats the malignant-probability change in points', () => {
    expect(formatDelta(0.123)).toBe('+12.3 points')
    expect(formatDelta(-0.05)).toBe('−5.0 points')
    expect(formatDelta(0.0004)).toBe('no change (0.0 points)')
    expect(formatDelta(null)).toBe('not available')
    expect(formatDelta(Number.NaN)).toBe('not available')
  })

  it('formats the interval', () => {
    expect(formatDays(0)).toBe('same day')
    expect(formatDays(1)).toBe('1 day')
    expect(formatDays(42)).toBe('42 days')
    expect(formatDays(400)).toBe('400 days (1.1 years)')
    expect(formatDays(null)).toBe('unknown interval')
  })

  it('describes a change in one sentence, saying when the risk rose', () => {
    const rose = describeChange({ from_visit: 1, to_visit: 2, days: 90, malignant_delta: 0.25, tier_from: 'low', tier_to: 'high', risk_rose: true })
    expect(rose).toBe('After 90 days: malignant share +25.0 points; tier Low risk → High risk. Risk rose.')
    const same = describeChange({ from_visit: 1, to_visit: 2, days: 30, malignant_delta: -0.01, tier_from: 'low', tier_to: 'low', risk_rose: false })
    expect(same).toBe('After 30 days: malignant share −1.0 points; tier unchanged (Low risk).')
  })

  it('labels tiers, including a visit the model could not assess', () => {
    expect(tierLabel('high')).toBe('High risk')
    expect(tierLabel('cannot_assess')).toBe('Cannot assess')
    expect(tierLabel(null)).toBe('no result')
    expect(latestSummary('moderate', 0.3)).toBe('Moderate risk · malignant share 30.0%')
    expect(latestSummary(null, null)).toBe('no visit yet')
  })
})

describe('lesion place', () => {
  it('joins side, site and free text', () => {
    const labels = { 'upper extremity': 'Arm' }
    expect(lesionPlace({ side: 'left', body_site: 'upper extremity', location: '3 cm above the elbow' }, labels)).toBe(
      'Left, arm — 3 cm above the elbow',
    )
    expect(lesionPlace({ side: null, body_site: 'upper extremity', location: null }, labels)).toBe('Arm')
    expect(lesionPlace({ side: null, body_site: null, location: ' scalp ' })).toBe('scalp')
    expect(lesionPlace({ side: null, body_site: null, location: null })).toBe('location not recorded')
  })
})

describe('dashboard estimates', () => {
  it('shows value, CI and counts', () => {
    expect(formatEstimate({ value: 0.8333, lo: 0.6, hi: 1, k: 5, n: 6 })).toBe('0.833 (95% CI 0.600–1.000), 5 of 6')
    expect(formatEstimate({ value: 0.71, lo: 0.5, hi: 0.9, n: 40 })).toBe('0.710 (95% CI 0.500–0.900), n = 40')
  })

  it('says when the API withheld a value, with its reason', () => {
    expect(isWithheld(null)).toBe(true)
    expect(isWithheld({ value: null, n: 2 })).toBe(true)
    expect(formatEstimate(null)).toBe('withheld: too few cases')
    expect(formatEstimate({ value: null, reason: 'too few melanomas (2)' })).toBe('withheld: too few melanomas (2)')
  })

  it('flags small counts', () => {
    expect(smallCount(5)).toBe(true)
    expect(smallCount(30)).toBe(false)
    expect(smallCount(undefined)).toBe(false)
  })
})

describe('readableWait', () => {
  it('says a lockout in minutes, not seconds', () => {
    expect(readableWait('Too many failed logins: try again in 898 s')).toBe('Too many failed logins: try again in 15 min.')
    expect(readableWait('try again in 30 s')).toBe('try again in 30 s.')
    expect(readableWait('wrong username or password')).toBe('wrong username or password')
  })
})

describe('a latest photo that could not be assessed', () => {
  const lesion = { latest_risk: 'high', latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-06-01' }

  it('is said beside the earlier assessed tier, which it does not replace', () => {
    const note = retakeNote(lesion)
    expect(note).toContain('could not be assessed')
    expect(note).toContain('High risk')
    expect(note).toContain('2025-06-01')
    expect(RETAKE_LABEL).toBe('latest photo: cannot assess — retake')
  })

  it('asks for a retake when no photo of the lesion was ever assessed', () => {
    const note = retakeNote({ latest_risk: 'cannot_assess', latest_visit_risk: 'cannot_assess', latest_risk_taken_at: '2025-07-01' })
    expect(note).toContain('no earlier photo was')
    expect(note).not.toContain('tier shown')
  })

  it('says nothing when the latest photo was assessed or there is none', () => {
    expect(retakeNote({ ...lesion, latest_visit_risk: 'high' })).toBeNull()
    expect(retakeNote({ latest_risk: null, latest_visit_risk: null, latest_risk_taken_at: null })).toBeNull()
  })

  it('counts the lesions to photograph again on the patient list', () => {
    expect(retakeCount(0)).toBeNull()
    expect(retakeCount(undefined)).toBeNull()
    expect(retakeCount(1)).toBe('1 lesion: latest photo cannot be assessed — retake')
    expect(retakeCount(3)).toBe('3 lesions: latest photos cannot be assessed — retake')
  })
})

describe('a visit left without a date', () => {
  it('is stored under the browser’s own day, not the server’s UTC day', () => {
    // 23:30 local on 2026-03-14 (the Date is built from local fields, whatever the time zone)
    expect(localDay(new Date(2026, 2, 14, 23, 30))).toBe('2026-03-14')
    expect(localDay(new Date(2026, 0, 1, 0, 5))).toBe('2026-01-01')
  })
})
