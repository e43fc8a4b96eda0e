// The accessibility audit's findings on the session timeout and on a few pages (WCAG 2.2 AA):
//
// * 2.2.1 Timing Adjustable: the page warned nobody before hiding itself after the idle timeout.
//   Now a modal alert dialog comes 2 minutes before, "Stay signed in" tells the server (GET
//   /auth/me, which the server counts as activity) and puts focus back; typing on the page is
//   passed on to the server at most every few minutes, so the server does not end a session
//   that the page keeps open (a long note sends no request).
// * the patient search's count is said in a polite status line once the search has answered;
// * the model card's JSON box, which scrolls, is a named region reachable with Tab;
// * the admin page's tables are named after their section's heading (so two scrolling boxes get
//   two names), the all-tokens table says when it is empty, the token Delete button says which
//   token and is a 24 px target at least;
// * a route change focuses the new page's heading, not the whole of <main>.
//
// No DOM here (no jsdom): components run in the one-component host of src/testing/hookHost.ts
// and the test reads the element tree they return.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { focusNewPage, modalHoldsFocus, visibleHeading } from '../App.tsx'
import * as clinicApi from './api.ts'
import { ClinicContext, keepAliveEveryMs, pageIdleMs, serverSlackMs, startIdleTimer, startKeepAlive, useIdleTimeout, warnBeforeMs } from './session.ts'
import type { ApiTokenInfo, Session, User } from './types.ts'
import { SessionTimeoutWarning, focusBack, timeLeftText, warningKey } from '../components/SessionTimeoutWarning.tsx'
import { scrollRegionName, tableName } from '../components/TableWrap.tsx'
import { ClinicAdminPage } from '../pages/ClinicAdminPage.tsx'
import { ClinicPatientsPage, patientSearchStatus } from '../pages/ClinicPatientsPage.tsx'
import { RawCard } from '../pages/ModelPage.tsx'
import { byTestId, text, walk, type El, type Props } from '../testing/tree.ts'

const host = await vi.hoisted(async () => (await import('../testing/hookHost.ts')).createHookHost())
vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

vi.mock('./api.ts', async (original) => ({
  ...(await original<typeof import('./api.ts')>()),
  listPatients: vi.fn(),
  listTokens: vi.fn(),
  listUsers: vi.fn(),
  listAllTokens: vi.fn(),
  listAudit: vi.fn(),
}))
const api = vi.mocked(clinicApi)

const MIN = 60_000

/** The clinic's stylesheet as written (Vitest hands CSS imports over empty, `?raw` included). */
const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }

// --- reading the rendered tree --------------------------------------------------------------------

const all = (tree: unknown, pred: (el: El) => boolean) => [...walk(tree)].map((hit) => hit.el).filter(pred)
const settle = () => new Promise((resolve) => setTimeout(resolve, 0))

let unmount: (() => void) | null = null
afterEach(() => {
  unmount?.()
  unmount = null
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

// --- the idle timeout: a warning first, and the server kept informed ------------------------------

describe('the idle timer’s warning', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-03-14T09:00:00Z'))
  })

  it('warns 2 minutes before the page is hidden (at least 60 s, WCAG 2.2.1), then hides it', () => {
    const onIdle = vi.fn()
    const onWarn = vi.fn()
    const start = Date.now()
    startIdleTimer(30 * MIN, onIdle, Date.now, { beforeMs: warnBeforeMs(30 * MIN), onWarn })
    vi.advanceTimersByTime(28 * MIN - 1)
    expect(onWarn).not.toHaveBeenCalled()
    vi.advanceTimersByTime(1)
    expect(onWarn).toHaveBeenCalledTimes(1)
    expect(onWarn).toHaveBeenCalledWith(start + 30 * MIN) // the deadline it is about
    expect(onIdle).not.toHaveBeenCalled()
    vi.advanceTimersByTime(2 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
    expect(onWarn).toHaveBeenCalledTimes(1)
    expect(warnBeforeMs(30 * MIN)).toBeGreaterThanOrEqual(MIN)
    expect(warnBeforeMs(5 * MIN)).toBe(2 * MIN)
    expect(warnBeforeMs(1 * MIN)).toBe(30_000) // a 1-minute timeout: half of it
  })

  it('only "Stay signed in" answers the warning: a key press in it (Tab) does not dismiss it', () => {
    const onIdle = vi.fn()
    const onWarn = vi.fn()
    const timer = startIdleTimer(30 * MIN, onIdle, Date.now, { beforeMs: 2 * MIN, onWarn })
    vi.advanceTimersByTime(28 * MIN)
    expect(onWarn).toHaveBeenCalledTimes(1)
    expect(timer.activity()).toBe(false) // Tab to "Sign out"
    vi.advanceTimersByTime(1 * MIN)
    timer.extend() // "Stay signed in"
    vi.advanceTimersByTime(27 * MIN)
    expect(onIdle).not.toHaveBeenCalled()
    expect(onWarn).toHaveBeenCalledTimes(1)
    expect(timer.activity()).toBe(true) // before the next warning a key press counts again
    vi.advanceTimersByTime(28 * MIN)
    expect(onWarn).toHaveBeenCalledTimes(2)
    vi.advanceTimersByTime(2 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
  })

  it('a computer woken past the deadline hides the page at once, without a warning first', () => {
    const onIdle = vi.fn()
    const onWarn = vi.fn()
    const timer = startIdleTimer(30 * MIN, onIdle, Date.now, { beforeMs: 2 * MIN, onWarn })
    vi.setSystemTime(Date.now() + 45 * MIN)
    timer.check()
    expect(onIdle).toHaveBeenCalledTimes(1)
    expect(onWarn).not.toHaveBeenCalled()
  })

  it('says the time left once, in words', () => {
    expect(timeLeftText(10 * MIN + 2 * MIN, 10 * MIN)).toBe('in about 2 minutes')
    expect(timeLeftText(61_000, 0)).toBe('in about 1 minute')
    expect(timeLeftText(40_000, 0)).toBe('in about 40 seconds')
  })
})

describe('passing activity on the page on to the server', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-03-14T09:00:00Z'))
  })

  it('at most every few minutes, and once more after the last key press, so the server never ends first', () => {
    const ping = vi.fn()
    const every = keepAliveEveryMs(30 * MIN)
    expect(every).toBe(5 * MIN)
    const keep = startKeepAlive(every, ping)
    for (let i = 0; i < 40; i++) {
      vi.advanceTimersByTime(MIN)
      keep.activity() // a key press a minute: a long note typed for 40 minutes
    }
    // 40 minutes of typing: about one ping per 5 minutes, not one per key press
    expect(ping.mock.calls.length).toBeGreaterThanOrEqual(7)
    expect(ping.mock.calls.length).toBeLessThanOrEqual(9)
    const before = ping.mock.calls.length
    vi.advanceTimersByTime(every) // the last key presses are passed on at the end of the interval
    expect(ping).toHaveBeenCalledTimes(before + 1)
    vi.advanceTimersByTime(60 * MIN) // nobody at the screen: no more pings
    expect(ping).toHaveBeenCalledTimes(before + 1)
    keep.now()
    expect(ping).toHaveBeenCalledTimes(before + 2)
    keep.stop()
    keep.activity()
    vi.advanceTimersByTime(60 * MIN)
    expect(ping).toHaveBeenCalledTimes(before + 2)
  })
})

describe('useIdleTimeout', () => {
  const session = { user: { id: 1, username: 'ana', role: 'clinician' }, csrf_token: 't', idle_minutes: 30 } as Session
  let page: EventTarget

  beforeEach(() => {
    vi.useFakeTimers()
    vi.setSystemTime(new Date('2026-03-14T09:00:00Z'))
    page = new EventTarget()
    vi.stubGlobal('window', page)
    vi.stubGlobal('document', Object.assign(new EventTarget(), { visibilityState: 'visible' }))
  })

  function mount(ping: () => Promise<unknown>, onEnded = vi.fn()) {
    const onIdle = vi.fn()
    const m = host.mount(() => useIdleTimeout(session, onIdle, ping, onEnded))
    unmount = m.unmount
    return { onIdle, onEnded, result: m.result }
  }

  it('tells the server of typing on the page (GET /auth/me), so its session does not end first', () => {
    const ping = vi.fn(async () => session)
    const { onIdle } = mount(ping)
    for (let i = 0; i < 45; i++) {
      vi.advanceTimersByTime(MIN)
      page.dispatchEvent(new Event('keydown'))
    }
    expect(onIdle).not.toHaveBeenCalled()
    expect(ping.mock.calls.length).toBeGreaterThanOrEqual(8) // 45 minutes: every 5 minutes or so
    expect(ping.mock.calls.length).toBeLessThanOrEqual(10)
  })

  it('shows the warning 2 minutes before; "Stay signed in" tells the server at once and starts again', () => {
    const ping = vi.fn(async () => session)
    const { onIdle, result } = mount(ping)
    expect(result().deadline).toBeNull()
    vi.advanceTimersByTime(27 * MIN) // the page's timeout: a minute before the server's (30)
    const warned = result()
    expect(warned.deadline).toBe(new Date('2026-03-14T09:29:00Z').getTime())
    expect(ping).not.toHaveBeenCalled()
    warned.stay()
    expect(ping).toHaveBeenCalledTimes(1)
    expect(result().deadline).toBeNull()
    vi.advanceTimersByTime(26 * MIN)
    expect(onIdle).not.toHaveBeenCalled()
    vi.advanceTimersByTime(3 * MIN) // the warning again at 27, then hidden at 29
    expect(onIdle).toHaveBeenCalledTimes(1)
    expect(onIdle).toHaveBeenCalledWith(30) // said as the server's timeout
  })

  it('hides the page (and warns) before the server may end the session, which records a use at most every minute', () => {
    // the server writes a session's last use at most every minute (a quarter of a shorter
    // timeout): its idle time may have started up to that long before the page's
    expect(serverSlackMs(30 * MIN)).toBe(MIN)
    expect(serverSlackMs(2 * MIN)).toBe(30_000)
    expect(pageIdleMs(30 * MIN)).toBe(29 * MIN)
    const ping = vi.fn(async () => session)
    const { onIdle, result } = mount(ping)
    vi.advanceTimersByTime(27 * MIN - 1)
    expect(result().deadline).toBeNull()
    vi.advanceTimersByTime(1)
    // the countdown says the page's (earlier) deadline: "Stay signed in" up to its last second
    // still finds the server's session
    expect(result().deadline).toBe(Date.now() + 2 * MIN)
    vi.advanceTimersByTime(2 * MIN)
    expect(onIdle).toHaveBeenCalledTimes(1)
    expect(Date.now()).toBe(new Date('2026-03-14T09:29:00Z').getTime())
  })

  it('a ping that finds another session (another tab signed out and in again) ends the page’s', async () => {
    // the cookie is the browser's: another tab signed in as bob; the page still shows ana
    const bob = { user: { id: 2, username: 'bob', role: 'clinician' }, csrf_token: 'b', idle_minutes: 30 } as Session
    const ping = vi.fn(async () => bob)
    const { onEnded, onIdle, result } = mount(ping)
    vi.advanceTimersByTime(27 * MIN)
    result().stay()
    await vi.advanceTimersByTimeAsync(0)
    expect(onEnded).toHaveBeenCalledTimes(1)
    expect(result().deadline).toBeNull()
    vi.advanceTimersByTime(60 * MIN)
    expect(onIdle).not.toHaveBeenCalled() // ended once: the page's timer stopped
  })

  it('a ping that finds the same user in another session (signed in again elsewhere) ends the page’s too', async () => {
    const again = { ...session, csrf_token: 'another' } as Session
    const { onEnded, result } = mount(vi.fn(async () => again))
    vi.advanceTimersByTime(27 * MIN)
    result().stay()
    await vi.advanceTimersByTimeAsync(0)
    expect(onEnded).toHaveBeenCalledTimes(1)
  })

  it('a ping that finds the page’s own session changes nothing', async () => {
    const { onEnded, result } = mount(vi.fn(async () => ({ ...session })))
    vi.advanceTimersByTime(27 * MIN)
    result().stay()
    await vi.advanceTimersByTimeAsync(0)
    expect(onEnded).not.toHaveBeenCalled()
  })

  it('a server that finds the session gone (the ping answers null) ends it on the page too', async () => {
    const ping = vi.fn(async () => null)
    const { onEnded, result } = mount(ping)
    vi.advanceTimersByTime(28 * MIN)
    result().stay()
    await vi.advanceTimersByTimeAsync(0)
    expect(onEnded).toHaveBeenCalledTimes(1)
  })
})

describe('checking the session from the page (the keep-alive)', () => {
  const ana = { user: { id: 1, username: 'ana', role: 'clinician' }, csrf_token: 'ana-token', idle_minutes: 30 } as Session
  const bob = { user: { id: 2, username: 'bob', role: 'clinician' }, csrf_token: 'bob-token', idle_minutes: 30 } as Session

  it('does not take on the CSRF token of a session another tab opened: the page’s writes stay its user’s', async () => {
    const sent: (string | null)[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string, init: RequestInit = {}) => {
        // the cookie is the browser's: another tab signed out and in as bob
        if (url.endsWith('/auth/me')) return new Response(JSON.stringify(bob), { status: 200 })
        sent.push(new Headers(init.headers).get('X-CSRF-Token'))
        return new Response(JSON.stringify({ id: 5, ref: 'P-1' }), { status: 201 })
      }),
    )
    clinicApi.setCsrfToken(ana.csrf_token) // signed in as ana on this page
    const found = await clinicApi.sessionNow()
    expect(found?.user.username).toBe('bob')
    expect(clinicApi.sameSession(ana, found)).toBe(false)
    await clinicApi.createPatient('P-1')
    expect(sent).toEqual(['ana-token']) // not bob's: the server refuses it rather than crediting bob
    expect(clinicApi.sameSession(ana, { ...ana })).toBe(true)
    expect(clinicApi.sameSession(ana, null)).toBe(false)
    clinicApi.setCsrfToken(null)
  })
})

describe('the warning dialog', () => {
  const deadline = new Date('2026-03-14T09:30:00Z').getTime()

  /** A document whose keydown listeners a test can call, with focus on `active`. */
  function fakeDocument(active: unknown = null) {
    const doc = Object.assign(new EventTarget(), { body: { isConnected: true }, activeElement: active })
    vi.stubGlobal('document', doc)
    return doc
  }
  /** A key pressed anywhere in the page (heard by the document); returns whether it was prevented. */
  function key(doc: EventTarget, k: string, shiftKey = false): boolean {
    const e = Object.assign(new Event('keydown', { cancelable: true }), { key: k, shiftKey })
    doc.dispatchEvent(e)
    return e.defaultPrevented
  }
  /** A stand-in for a focusable element that takes focus in `doc`. */
  function focusable(doc: { activeElement: unknown }) {
    const el = { isConnected: true, focus: vi.fn(() => (doc.activeElement = el)) }
    return el
  }

  it('is a modal alert dialog named by its heading, with "Stay signed in" and "Sign out"', () => {
    vi.useFakeTimers()
    vi.setSystemTime(deadline - 2 * MIN)
    fakeDocument()
    const onStay = vi.fn()
    const onSignOut = vi.fn()
    const m = host.mount(() => SessionTimeoutWarning({ deadline, onStay, onSignOut, fallbackFocus: () => null }))
    unmount = m.unmount
    const tree = m.result()
    const dialog = byTestId(tree, 'session-warning').el
    expect(dialog.props.role).toBe('alertdialog')
    expect(dialog.props['aria-modal']).toBe('true')
    const title = all(tree, (el) => el.props.id === dialog.props['aria-labelledby'])[0]
    expect(text(title)).toBe('You will be signed out soon')
    const described = all(tree, (el) => el.props.id === dialog.props['aria-describedby'])[0]
    expect(text(described)).toMatch(/sign in again in about 2 minutes \(at /)
    expect(text(byTestId(tree, 'session-warning-stay').el)).toBe('Stay signed in')
    expect(text(byTestId(tree, 'session-warning-sign-out').el)).toBe('Sign out')
    ;(byTestId(tree, 'session-warning-sign-out').el.props.onClick as () => void)()
    expect(onSignOut).toHaveBeenCalledTimes(1)
  })

  it('puts focus back where it was after "Stay signed in" (also on Escape), once it is gone', () => {
    const field = { isConnected: true, focus: vi.fn() }
    const doc = fakeDocument(field)
    const onStay = vi.fn()
    const m = host.mount(() => SessionTimeoutWarning({ deadline, onStay, onSignOut: vi.fn(), fallbackFocus: () => null }))
    unmount = m.unmount
    // the dialog took focus: the field typed in was noted first
    ;(byTestId(m.result(), 'session-warning-stay').el.props.onClick as () => void)()
    expect(onStay).toHaveBeenCalledTimes(1)
    // the page behind is inert until the warning is gone (the same render): focus goes back then
    m.unmount()
    unmount = null
    expect(field.focus).toHaveBeenCalledTimes(1)
    const again = host.mount(() => SessionTimeoutWarning({ deadline, onStay, onSignOut: vi.fn(), fallbackFocus: () => null }))
    unmount = again.unmount
    expect(key(doc, 'Escape')).toBe(true)
    expect(onStay).toHaveBeenCalledTimes(2)
    again.unmount()
    unmount = null
    expect(field.focus).toHaveBeenCalledTimes(2)
  })

  it('keeps Tab and Escape in hand after a click on its text or beside it (focus on the dialog, or on <body>)', () => {
    const doc = fakeDocument()
    const onStay = vi.fn()
    const m = host.mount(() => SessionTimeoutWarning({ deadline, onStay, onSignOut: vi.fn(), fallbackFocus: () => null }))
    unmount = m.unmount
    const tree = m.result()
    const dialogProps = byTestId(tree, 'session-warning').el.props
    expect(dialogProps.tabIndex).toBe(-1) // a click on its text puts focus on it, not on <body>
    const stay = focusable(doc)
    const signOut = focusable(doc)
    const dialog = { contains: (n: unknown) => n === dialog || n === stay || n === signOut }
    ;(dialogProps.ref as { current: unknown }).current = dialog
    ;(byTestId(tree, 'session-warning-stay').el.props.ref as { current: unknown }).current = stay
    ;(byTestId(tree, 'session-warning-sign-out').el.props.ref as { current: unknown }).current = signOut
    // focus on <body> (a press beside the dialog in a browser that moved it): Tab goes in
    doc.activeElement = doc.body
    expect(key(doc, 'Tab')).toBe(true)
    expect(doc.activeElement).toBe(stay)
    doc.activeElement = doc.body
    expect(key(doc, 'Tab', true)).toBe(true)
    expect(doc.activeElement).toBe(signOut)
    // focus on the dialog itself (its text clicked): Shift+Tab does not leave it
    doc.activeElement = dialog
    expect(key(doc, 'Tab', true)).toBe(true)
    expect(doc.activeElement).toBe(signOut)
    expect(key(doc, 'Tab')).toBe(true) // round from the last button to the first
    expect(doc.activeElement).toBe(stay)
    doc.activeElement = doc.body
    expect(key(doc, 'Escape')).toBe(true)
    expect(onStay).toHaveBeenCalledTimes(1)
    // a press on the backdrop (not on the dialog) does not move focus
    const down = { target: {}, preventDefault: vi.fn() }
    ;(byTestId(tree, 'session-warning-backdrop').el.props.onMouseDown as (e: unknown) => void)(down)
    expect(down.preventDefault).toHaveBeenCalledTimes(1)
    const inside = { target: stay, preventDefault: vi.fn() }
    ;(byTestId(tree, 'session-warning-backdrop').el.props.onMouseDown as (e: unknown) => void)(inside)
    expect(inside.preventDefault).not.toHaveBeenCalled()
    // gone: the page's keys are its own again
    m.unmount()
    unmount = null
    expect(key(doc, 'Escape')).toBe(false)
  })

  it('leaves focus on the page, not on <body>, when it goes without "Stay signed in" (the page hidden)', () => {
    const doc = fakeDocument()
    const heading = focusable(doc)
    const m = host.mount(() => SessionTimeoutWarning({ deadline, onStay: vi.fn(), onSignOut: vi.fn(), fallbackFocus: () => heading as unknown as HTMLElement }))
    unmount = m.unmount
    doc.activeElement = doc.body // its focused button went with it (a public page: no sign-in form takes focus)
    m.unmount()
    unmount = null
    expect(heading.focus).toHaveBeenCalledTimes(1)
    // focus already somewhere (the sign-in form): left there
    const field = focusable(doc)
    doc.activeElement = field
    const again = host.mount(() => SessionTimeoutWarning({ deadline, onStay: vi.fn(), onSignOut: vi.fn(), fallbackFocus: () => heading as unknown as HTMLElement }))
    doc.activeElement = field
    again.unmount()
    expect(heading.focus).toHaveBeenCalledTimes(1)
  })

  it('handles Tab only at the ends of its buttons (a pure check of warningKey)', () => {
    const doc = fakeDocument()
    const stay = focusable(doc)
    const signOut = focusable(doc)
    const dialog = { contains: (n: unknown) => n === dialog || n === stay || n === signOut } as unknown as HTMLElement
    doc.activeElement = stay
    const e = { key: 'Tab', shiftKey: false, preventDefault: vi.fn() }
    expect(warningKey(e, dialog, stay as unknown as HTMLElement, signOut as unknown as HTMLElement, vi.fn())).toBe(false)
    expect(e.preventDefault).not.toHaveBeenCalled() // the browser's own Tab, to "Sign out"
  })

  it('focuses the page when the element that had focus is gone', () => {
    const main = { focus: vi.fn() } as unknown as HTMLElement
    vi.stubGlobal('document', { body: {} })
    focusBack({ isConnected: false, focus: vi.fn() } as unknown as Element, main)
    expect(main.focus).toHaveBeenCalledTimes(1)
  })
})

// --- the patient search's count, said to screen readers --------------------------------------------

describe('the patient search', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.stubGlobal('window', {
      setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
      clearTimeout: (t: ReturnType<typeof setTimeout>) => clearTimeout(t),
      location: { hash: '#/clinic/patients' },
    })
    api.listPatients.mockReset()
    api.listPatients.mockResolvedValue([])
  })

  it('says its count in a polite status line once the (debounced) search has answered', async () => {
    const m = host.mount(() => ClinicPatientsPage())
    unmount = m.unmount
    await vi.advanceTimersByTimeAsync(0)
    const first = m.result()
    const status = byTestId(first, 'patient-search-status').el
    expect(status.props.role).toBe('status')
    expect(status.props['aria-live']).toBe('polite')
    expect(text(status)).toBe('') // nothing said before a search
    ;(byTestId(first, 'patient-search').el.props.onChange as (e: unknown) => void)({ target: { value: 'zzz' } })
    m.result()
    await vi.advanceTimersByTimeAsync(100)
    expect(text(byTestId(m.result(), 'patient-search-status').el)).toBe('') // still typing
    await vi.advanceTimersByTimeAsync(200)
    m.result() // the debounced query is sent
    await vi.advanceTimersByTimeAsync(0)
    const after = m.result()
    expect(api.listPatients).toHaveBeenLastCalledWith('zzz')
    expect(text(byTestId(after, 'patient-search-status').el)).toBe('0 patients whose reference starts with “zzz”')
    expect(text(byTestId(after, 'patient-list-caption').el)).toBe('0 patients whose reference starts with “zzz”')
  })

  it('says nothing while loading or when the search failed', () => {
    expect(patientSearchStatus(true, true, false, 0, 'zz')).toBe('')
    expect(patientSearchStatus(true, false, true, 0, 'zz')).toBe('')
    expect(patientSearchStatus(false, false, false, 3, '')).toBe('')
    expect(patientSearchStatus(true, false, false, 3, '')).toBe('3 patients')
  })
})

// --- the model card's JSON ---------------------------------------------------------------------------

describe('the full model card (JSON)', () => {
  it('is a named region in the tab order, so its scrolling box can be scrolled with the keyboard', () => {
    const pre = all(RawCard({ card: { model: 'x' } }), (el) => el.type === 'pre')[0]
    expect(pre.props.tabIndex).toBe(0)
    expect(pre.props.role).toBe('region')
    expect(pre.props['aria-label']).toBe('Full model card (JSON)')
  })
})

// --- the admin page's tables ---------------------------------------------------------------------------

describe('the admin page’s tables', () => {
  const admin: User = { id: 1, username: 'ana', role: 'admin' }
  const token: ApiTokenInfo = {
    id: 7,
    name: 'backup script',
    created_at: '2026-11-01T10:00:00+00:00',
    last_used_at: null,
    expires_at: '2027-01-30T10:00:00+00:00',
    expired: false,
  }

  beforeEach(() => {
    host.contexts.set(ClinicContext, { session: { user: admin, csrf_token: 'x' }, setSession: () => {} })
    api.listTokens.mockResolvedValue([token])
    api.listUsers.mockResolvedValue([admin])
    api.listAllTokens.mockResolvedValue([])
    api.listAudit.mockResolvedValue([])
    vi.stubGlobal('document', { body: {}, activeElement: null })
  })

  /** Section `name` of the admin page, mounted and loaded; returns its latest tree. */
  async function section(name: string): Promise<unknown> {
    const el = all(ClinicAdminPage(), (e) => typeof e.type === 'function' && e.type.name === name)[0]
    const component = el.type as (props: Props) => unknown
    const m = host.mount(() => component(el.props))
    unmount = m.unmount
    await settle()
    return m.result()
  }

  it.each([
    ['Tokens', 'token-list', 'Your API tokens'],
    ['Users', 'user-list', 'Users'],
    ['AllTokens', 'all-token-list', 'All users’ API tokens'],
    ['Audit', 'audit-log', 'Audit log'],
  ])('%s: the table is named after its section’s heading', async (name, tableId, heading) => {
    const tree = await section(name)
    const table = byTestId(tree, tableId).el
    const labelledBy = table.props['aria-labelledby']
    expect(labelledBy).toBeTruthy()
    const h2 = all(tree, (el) => el.type === 'h2')[0]
    expect(h2.props.id).toBe(labelledBy)
    expect(text(h2)).toBe(heading)
  })

  it('the all-tokens table says when there are none (not a header row alone)', async () => {
    const tree = await section('AllTokens')
    const empty = all(tree, (el) => el.props.testId === 'all-tokens-empty')[0] // an <EmptyRow>
    expect(empty).toBeTruthy()
    const row = (empty.type as (p: Props) => unknown)(empty.props)
    const cell = byTestId(row, 'all-tokens-empty').el
    expect(text(cell)).toBe('No API tokens yet.')
    expect(cell.props.colSpan).toBe(7) // across the table's 7 columns
  })

  it('a token’s Delete button says which token, and is a 24 px target at least (44 px on touch)', async () => {
    const tree = await section('Tokens')
    const button = byTestId(tree, 'token-delete-7').el
    expect(button.props['aria-label']).toBe('Delete token backup script')
    expect(text(button)).toBe('Delete') // the visible label starts the name (WCAG 2.5.3)
    expect(String(button.props.className)).toContain('row-action')
    const css = readFileSync(new URL('./clinic.css', import.meta.url), 'utf8')
    expect(css).toMatch(/\.data-table \.row-action \{[^}]*min-height: 24px/)
    expect(css).toMatch(/@media \(pointer: coarse\) \{\s*\.data-table \.row-action \{\s*min-height: 44px/)
  })

  it('a scrolling box is named after its table’s name, so two boxes on a page have two names', () => {
    const headings: Record<string, string> = { h1: 'Your API tokens', h2: 'All users’ API tokens' }
    const doc = { getElementById: (id: string) => ({ textContent: headings[id] }) }
    const box = (attrs: Record<string, string>, caption?: string) => ({
      ownerDocument: doc,
      querySelector: () => ({
        getAttribute: (a: string) => attrs[a] ?? null,
        querySelector: () => (caption ? { textContent: caption } : null),
      }),
    })
    const names = [box({ 'aria-labelledby': 'h1' }), box({ 'aria-labelledby': 'h2' })].map((b) =>
      scrollRegionName(tableName(b as unknown as HTMLElement)),
    )
    expect(names).toEqual(['Your API tokens (scrolls sideways)', 'All users’ API tokens (scrolls sideways)'])
    expect(tableName(box({}, 'Training log, per epoch') as unknown as HTMLElement)).toBe('Training log, per epoch')
    expect(tableName(box({ 'aria-label': 'Sizes' }, 'x') as unknown as HTMLElement)).toBe('Sizes')
  })
})

// --- a route change focuses the new page's heading -----------------------------------------------------

describe('a new page', () => {
  it('leaves focus in a modal (the session warning, the token prompt) on Back or Forward', () => {
    const inModal = { closest: (sel: string) => (sel.includes('[aria-modal="true"]') ? {} : null) }
    vi.stubGlobal('document', { body: {}, activeElement: inModal })
    expect(modalHoldsFocus()).toBe(true)
    vi.stubGlobal('document', { body: {}, activeElement: { closest: () => null } })
    expect(modalHoldsFocus()).toBe(false)
    vi.stubGlobal('document', { body: {}, activeElement: null })
    expect(modalHoldsFocus()).toBe(false)
  })

  function fakeMain(headings: { hidden: boolean }[]) {
    const hs = headings.map((h) => {
      const el = {
        attrs: {} as Record<string, string>,
        closest: () => (h.hidden ? {} : null),
        hasAttribute(a: string) {
          return a in this.attrs
        },
        setAttribute(a: string, v: string) {
          this.attrs[a] = v
        },
        focus: vi.fn(() => Object.assign(document, { activeElement: el })),
      }
      return el
    })
    const main = { querySelectorAll: () => hs, focus: vi.fn(() => Object.assign(document, { activeElement: main })) }
    return { main: main as unknown as HTMLElement, hs }
  }

  it('focuses its main heading (not the whole of <main>), skipping a page kept hidden', () => {
    vi.stubGlobal('document', { body: {}, activeElement: null })
    const { main, hs } = fakeMain([{ hidden: true }, { hidden: false }])
    expect(visibleHeading(main)).toBe(hs[1])
    focusNewPage(main)
    expect(hs[1].focus).toHaveBeenCalledTimes(1)
    expect(hs[1].attrs.tabindex).toBe('-1')
    expect(hs[0].focus).not.toHaveBeenCalled()
  })

  it('a page still loading: <main> holds focus until its heading is shown', () => {
    vi.stubGlobal('document', { body: {}, activeElement: null })
    let changed: () => void = () => {}
    vi.stubGlobal(
      'MutationObserver',
      class {
        constructor(fn: () => void) {
          changed = fn
        }
        observe() {}
        disconnect() {}
      },
    )
    vi.stubGlobal('window', { setTimeout: () => 1, clearTimeout: () => {} })
    const headings: { hidden: boolean }[] = []
    const { main } = fakeMain(headings)
    const shown = fakeMain([{ hidden: false }])
    focusNewPage(main)
    expect(main.focus).toHaveBeenCalledTimes(1)
    ;(main as unknown as { querySelectorAll: () => unknown[] }).querySelectorAll = () => shown.hs
    changed()
    expect(shown.hs[0].focus).toHaveBeenCalledTimes(1)
  })
})
