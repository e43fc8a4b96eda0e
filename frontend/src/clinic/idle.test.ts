// The clinic UI audit's three findings: the page hides patient data once the session's idle time
// has passed without activity (a client-side timer, not only at the next request); the
// Clinician | Patient switch, which changes nothing on clinic pages, is not offered there; a
// patient list cut at the server's limit says so.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { hideAfterIdle } from '../App.tsx'
import { AudienceSwitch } from '../components/ClinicNav.tsx'
import { forgetAssessCase } from '../pages/AssessPage.tsx'
import { ClinicMain } from '../pages/ClinicMain.tsx'
import { PATIENT_LIST_LIMIT, patientListCaption } from '../pages/ClinicPatientsPage.tsx'
import { ACTIVITY_EVENTS, DEFAULT_IDLE_MINUTES, idleMinutesOf, idleReason, startIdleTimer } from './session.ts'

vi.mock('../pages/AssessPage.tsx', async (original) => ({
  ...(await original<typeof import('../pages/AssessPage.tsx')>()),
  forgetAssessCase: vi.fn(),
}))

const MIN = 60_000
const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/<!-- -->/g, '').replace(/\s+/g, ' ')

describe('the idle timer', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-03-14T09:00:00Z'))
  })
  afterEach(() => vi.useRealTimers())

  it('hides the page once the idle time has passed without activity, and only once', () => {
    const onIdle = vi.fn()
    startIdleTimer(30 * MIN, onIdle)
    vi.advanceTimersByTime(30 * MIN - 1)
    expect(onIdle).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(onIdle).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(120 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
  })

  it('starts the idle time again at each activity', () => {
    const onIdle = vi.fn()
    const timer = startIdleTimer(30 * MIN, onIdle)
    vi.advanceTimersByTime(20 * MIN)
    timer.activity()
    vi.advanceTimersByTime(20 * MIN) // 40 min since the start, 20 since the key press
    expect(onIdle).not.toHaveBeenCalled()
    timer.activity()
    vi.advanceTimersByTime(29 * MIN)
    expect(onIdle).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
    timer.activity() // too late: the page is hidden, a key press on the sign-in form changes nothing
    vi.advanceTimersByTime(60 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
  })

  it('looks at the clock, not at how often its timer fired (a sleeping computer, a background tab)', () => {
    const onIdle = vi.fn()
    const timer = startIdleTimer(30 * MIN, onIdle)
    // the clock jumps 45 minutes while no timer ran (the computer slept); on waking the page looks
    vi.setSystemTime(Date.now() + 45 * MIN)
    timer.check()
    expect(onIdle).toHaveBeenCalledTimes(1)
  })

  it('a check before the time is up changes nothing; stop() ends it (signed out, a new session)', () => {
    const onIdle = vi.fn()
    const timer = startIdleTimer(5 * MIN, onIdle)
    vi.advanceTimersByTime(4 * MIN)
    timer.check()
    expect(onIdle).not.toHaveBeenCalled()
    timer.stop()
    vi.advanceTimersByTime(60 * MIN)
    timer.check()
    expect(onIdle).not.toHaveBeenCalled()
  })

  it("takes the server's idle timeout from the session, else the server's default of 30 minutes", () => {
    const session = { user: { id: 1, username: 'ana', role: 'clinician' }, csrf_token: 't' }
    expect(idleMinutesOf({ ...session, idle_minutes: 5 })).toBe(5)
    expect(idleMinutesOf(session)).toBe(DEFAULT_IDLE_MINUTES)
    expect(DEFAULT_IDLE_MINUTES).toBe(30)
    expect(idleMinutesOf({ ...session, idle_minutes: 0 })).toBe(30)
    expect(idleMinutesOf({ ...session, idle_minutes: 'soon' })).toBe(30)
  })

  it('counts key presses, clicks, touches and the wheel as activity, not a moving mouse', () => {
    // the page's listeners as useIdleTimeout adds them: each event of the list restarts the count
    const run = (type: string) => {
      const page = new EventTarget()
      const onIdle = vi.fn()
      const timer = startIdleTimer(30 * MIN, onIdle)
      ACTIVITY_EVENTS.forEach((e) => page.addEventListener(e, timer.activity))
      vi.advanceTimersByTime(20 * MIN)
      page.dispatchEvent(new Event(type))
      vi.advanceTimersByTime(20 * MIN) // 40 minutes since the start, 20 since the event
      const hidden = onIdle.mock.calls.length > 0
      timer.stop()
      return hidden
    }
    for (const type of ['keydown', 'pointerdown', 'wheel', 'touchstart']) expect(run(type), type).toBe(false)
    // a mouse moving over a screen left alone (a cat, a nudged desk) is not someone using it
    expect(run('mousemove')).toBe(true)
    expect(run('pointermove')).toBe(true)
  })
})

describe('the idle timeout and the Assess page', () => {
  it('forgets the Assess page’s case (photo, result, age) and clears it from the screen, as signing out does', () => {
    vi.mocked(forgetAssessCase).mockClear()
    const set = { clearAssess: vi.fn(), setResumeAs: vi.fn(), setHiddenWhy: vi.fn(), setSession: vi.fn() }
    hideAfterIdle(15, 'dr.ana', set)
    expect(forgetAssessCase).toHaveBeenCalledTimes(1)
    expect(set.clearAssess).toHaveBeenCalledTimes(1)
    expect(set.setSession).toHaveBeenCalledWith(null)
    expect(set.setResumeAs).toHaveBeenCalledWith('dr.ana')
    expect(set.setHiddenWhy).toHaveBeenCalledWith(idleReason(15))
  })
})

describe('the hidden page', () => {
  beforeEach(() => vi.stubGlobal('window', { location: { hash: '#/clinic/patients' } }))
  afterEach(() => vi.unstubAllGlobals())

  it('is off the screen under a sign-in form for the same user that says in one line why', () => {
    const why = idleReason(30)
    const html = renderToStaticMarkup(
      createElement(ClinicMain, { route: { page: 'patients' }, checked: true, resumeAs: 'ana', hiddenWhy: why }),
    )
    expect(html).toMatch(/<div hidden="" data-testid="clinic-page-holder">/)
    expect(html).toContain('data-resume="true"')
    expect(html).toContain('data-testid="login-idle-reason"')
    expect(text(html)).toContain('Signed out after about 30 minutes without activity')
    expect(why.split('\n')).toHaveLength(1)
    expect(idleReason(1)).toContain('after about 1 minute without')
  })
})

describe('the Clinician | Patient switch', () => {
  it('is not offered on clinic pages, which have no patient view; a hint says so', () => {
    const html = renderToStaticMarkup(createElement(AudienceSwitch, { audience: 'patient', onChoose: () => {}, clinic: true }))
    expect(html).not.toContain('<button')
    expect(html).not.toContain('aria-pressed')
    expect(html).toContain('data-testid="audience-clinic-note"')
    expect(text(html)).toContain('Clinician view only')
    expect(text(html)).toMatch(/no patient view/)
  })

  it('is offered on the other pages, showing the chosen view', () => {
    const html = renderToStaticMarkup(createElement(AudienceSwitch, { audience: 'patient', onChoose: () => {}, clinic: false }))
    expect(html).toContain('data-testid="audience-toggle"')
    expect(html).toMatch(/<button[^>]*aria-pressed="true"[^>]*data-testid="audience-patient"/)
    expect(html).toMatch(/<button[^>]*aria-pressed="false"[^>]*data-testid="audience-clinician"/)
  })
})

describe('the patient list caption', () => {
  it("says when the server's limit cut the list (211 patients, 200 listed)", () => {
    expect(PATIENT_LIST_LIMIT).toBe(200)
    const cut = patientListCaption(200, '')
    expect(cut).toBe('The first 200 patients by reference are shown; search by reference to find others.')
    expect(cut).not.toMatch(/^200 patients/)
    expect(patientListCaption(200, 'P-')).toBe(
      'The first 200 patients whose reference starts with “P-” are shown (by reference); type more of the reference to find others.',
    )
  })

  it('counts a list under the limit as it is', () => {
    expect(patientListCaption(199, '')).toBe('199 patients')
    expect(patientListCaption(1, 'P-')).toBe('1 patient whose reference starts with “P-”')
    expect(patientListCaption(0, '')).toBe('0 patients')
  })
})
