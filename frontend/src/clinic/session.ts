// The signed-in clinic user, shared by the clinic pages, and a small loader for clinic data.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react'
import { sameSession } from './api.ts'
import { clinicRouteFromHash, type ClinicRoute } from './format.ts'
import type { Session } from './types.ts'

export interface ClinicState {
  session: Session | null
  setSession: (s: Session | null) => void
}

export const ClinicContext = createContext<ClinicState>({ session: null, setSession: () => {} })
export const useClinic = () => useContext(ClinicContext)

export interface Loaded<T> {
  data: T | null
  error: Error | null
  loading: boolean
  reload: () => void
}

/** Run `load` (a clinic API call) when `key` changes or on `reload()`; never cached. */
export function useLoad<T>(load: () => Promise<T>, key: string): Loaded<T> {
  const [version, setVersion] = useState(0)
  const [state, setState] = useState<{ data: T | null; error: Error | null; loading: boolean }>({
    data: null,
    error: null,
    loading: true,
  })
  useEffect(() => {
    let live = true
    setState((s) => ({ ...s, loading: true, error: null }))
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: Error) => live && setState({ data: null, error, loading: false }),
    )
    return () => {
      live = false
    }
    // `load` is a new closure every render; `key` says when it asks for something else
  }, [key, version])
  const reload = useCallback(() => setVersion((v) => v + 1), [])
  return { ...state, reload }
}

/** The clinic page the hash names, or null outside the clinic (see `clinicRouteFromHash`). */
export function useClinicRoute(): ClinicRoute | null {
  const [hash, setHash] = useState(() => window.location.hash)
  useEffect(() => {
    const onChange = () => setHash(window.location.hash)
    window.addEventListener('hashchange', onChange)
    return () => window.removeEventListener('hashchange', onChange)
  }, [])
  return useMemo(() => clinicRouteFromHash(hash), [hash])
}

// --- hiding the page after the session's idle timeout --------------------------------------------

/** The server's idle timeout when it does not say its own (`dermsight serve
 * --session-idle-minutes`' default, `SESSION_IDLE_MINUTES` in src/dermsight/clinic/config.py). */
export const DEFAULT_IDLE_MINUTES = 30

/** What counts as someone at the screen: a key, a click or touch, the mouse wheel. Moving the
 * mouse does not (a nudged mouse is nobody working), nor does a request the page makes alone. */
export const ACTIVITY_EVENTS = ['keydown', 'pointerdown', 'wheel', 'touchstart'] as const

/** The idle timeout (minutes) the server reports with the session (`GET /auth/me`, login:
 * `idle_minutes`), else `DEFAULT_IDLE_MINUTES` (a server that does not report it). */
export function idleMinutesOf(session: unknown): number {
  const said = (session as { idle_minutes?: unknown } | null)?.idle_minutes
  return typeof said === 'number' && Number.isFinite(said) && said > 0 ? said : DEFAULT_IDLE_MINUTES
}

/** One line saying why the page was hidden (shown on the sign-in form). `minutes` is the server's
 * idle timeout; the page hides a little sooner (`pageIdleMs`: up to a minute, a quarter of the
 * timeout where that is shorter), hence "about". */
export function idleReason(minutes: number): string {
  return `Signed out after about ${minutes} minute${minutes === 1 ? '' : 's'} without activity, so that nobody else sees the patient’s data.`
}

export interface IdleTimer {
  /** someone used the page: the idle time starts again. Ignored (returns false) once the page is
   * hidden, and while the warning is shown: then only `extend()` (its "Stay signed in") counts,
   * so that moving between the warning's buttons with Tab does not dismiss it unseen. */
  activity: () => boolean
  /** "Stay signed in": the idle time starts again, also while the warning is shown */
  extend: () => void
  /** look now (e.g. the tab came back after the computer slept): `onWarn` / `onIdle` if due */
  check: () => void
  stop: () => void
}

/** Calls `onIdle` once when `idleMs` have passed since the start or the last `activity()`, and,
 * given `warn`, `warn.onWarn(deadline)` `warn.beforeMs` before that (once per idle period; the
 * deadline as a `now()` time). Activity only records the time (no timer per key press); the
 * timer, when it fires, waits out what is left. A timer that fires late (a background tab, a
 * sleeping computer) still compares the clock, and `check()` looks at once; a page found past
 * its deadline is hidden without a warning first. */
export function startIdleTimer(
  idleMs: number,
  onIdle: () => void,
  now: () => number = Date.now,
  warn?: { beforeMs: number; onWarn: (deadline: number) => void },
): IdleTimer {
  let last = now()
  let timer: ReturnType<typeof setTimeout> | undefined
  let done = false
  let warned = false
  const warnAfter = warn ? Math.max(0, idleMs - warn.beforeMs) : idleMs
  const check = () => {
    if (done) return
    clearTimeout(timer)
    const t = now()
    const left = last + idleMs - t
    if (left <= 0) {
      done = true
      onIdle()
      return
    }
    if (warn && !warned) {
      const toWarn = last + warnAfter - t
      if (toWarn <= 0) {
        warned = true
        warn.onWarn(last + idleMs)
      } else {
        timer = setTimeout(check, toWarn)
        return
      }
    }
    timer = setTimeout(check, left)
  }
  const restart = () => {
    last = now()
    warned = false
    check()
  }
  timer = setTimeout(check, warnAfter)
  return {
    activity: () => {
      if (done || warned) return false
      last = now()
      return true
    },
    extend: () => {
      if (!done) restart()
    },
    check,
    stop: () => {
      done = true
      clearTimeout(timer)
    },
  }
}

/** How long before the page's idle timeout the warning comes: 2 minutes (WCAG 2.2.1 asks for at
 * least 20 seconds to answer), half the timeout where that is shorter (a 1-minute timeout). */
export function warnBeforeMs(idleMs: number): number {
  return Math.min(2 * 60_000, idleMs / 2)
}

/** How much earlier than the server the page ends an idle session: the server records a request
 * as the session's last use at most every minute (every quarter of the timeout where that is
 * shorter: `session_lookup` in src/dermsight/clinic/accounts.py), so its idle time may have
 * started up to that long before the page's. The page hides itself (and warns) that much sooner,
 * so that "Stay signed in", pressed in the warning's last moments, still finds the session. */
export function serverSlackMs(idleMs: number): number {
  return Math.min(60_000, idleMs / 4)
}

/** The page's own idle timeout: the server's, less `serverSlackMs`. */
export function pageIdleMs(idleMs: number): number {
  return idleMs - serverSlackMs(idleMs)
}

/** How often, at most, activity on the page is passed on to the server (`GET /auth/me`, which
 * the server counts as activity: `session_lookup` in src/dermsight/clinic/accounts.py marks the
 * session used): every 5 minutes, or a quarter of the timeout where that is shorter (never more
 * often than the server records it: every minute, or a quarter of the timeout). */
export function keepAliveEveryMs(idleMs: number): number {
  return Math.min(5 * 60_000, idleMs / 4)
}

export interface KeepAlive {
  /** someone used the page: the server hears of it now, or at the end of the current interval */
  activity: () => void
  /** tell the server now (the warning's "Stay signed in") */
  now: () => void
  stop: () => void
}

/** Passes activity on the page (typing a long note sends no request) on to the server, at most
 * once per `everyMs`: at once when the last `ping` is that old, else once at the end of the
 * interval (so the server's idle time never starts before the page's: the server keeps the
 * session at least as long as the page shows it, at most `everyMs` longer). */
export function startKeepAlive(everyMs: number, ping: () => void, now: () => number = Date.now): KeepAlive {
  let last = now() // the session was just opened or checked: the server has seen it
  let trailing: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const send = () => {
    if (stopped) return
    clearTimeout(trailing)
    trailing = undefined
    last = now()
    ping()
  }
  return {
    activity: () => {
      if (stopped || trailing !== undefined) return
      const wait = last + everyMs - now()
      if (wait <= 0) send()
      else trailing = setTimeout(send, wait)
    },
    now: send,
    stop: () => {
      stopped = true
      clearTimeout(trailing)
    },
  }
}

/** What `useIdleTimeout` gives the page: the warning, while shown, and its two answers. */
export interface IdleWarning {
  /** when the page will be hidden (a `Date.now()` time) while the warning is shown, else null */
  deadline: number | null
  /** "Stay signed in": the page's idle time starts again and the server hears of it at once */
  stay: () => void
}

/** While someone is signed in: `onIdle()` after the session's idle timeout without activity on
 * the page (`ACTIVITY_EVENTS`), so that a screen left alone stops showing patient data when
 * the server ends the session, not at the next request; `warnBeforeMs` before that, a warning
 * (`deadline`) that `stay()` answers. Activity on the page is passed on to the server
 * (`startKeepAlive`, with `ping`: `GET /auth/me`), so that typing a long note does not let the
 * server's session end while the page is kept open; a ping that finds the session gone
 * (`ping` resolves null: ended, or the account disabled) or replaced (another session, another
 * user: another tab of the browser signed out and in again; see `sameSession`) calls `onEnded`.
 * The page hides itself `serverSlackMs` before the server's timeout (`pageIdleMs`). */
export function useIdleTimeout(
  session: Session | null,
  onIdle: (minutes: number) => void,
  ping: () => Promise<unknown> = async () => undefined,
  onEnded: () => void = () => {},
): IdleWarning {
  const handlers = useRef({ onIdle, ping, onEnded })
  useEffect(() => {
    handlers.current = { onIdle, ping, onEnded }
  })
  const [deadline, setDeadline] = useState<number | null>(null)
  const control = useRef<{ timer: IdleTimer; keepAlive: KeepAlive } | null>(null)
  const minutes = session ? idleMinutesOf(session) : null
  useEffect(() => {
    if (minutes === null || session === null) return
    const serverIdleMs = minutes * 60_000
    const idleMs = pageIdleMs(serverIdleMs)
    let live = true
    const timer = startIdleTimer(
      idleMs,
      () => {
        setDeadline(null)
        handlers.current.onIdle(minutes)
      },
      Date.now,
      { beforeMs: warnBeforeMs(serverIdleMs), onWarn: (at) => setDeadline(at) },
    )
    const keepAlive = startKeepAlive(keepAliveEveryMs(serverIdleMs), () => {
      handlers.current.ping().then(
        (s) => {
          // gone, or another session than the page's (never taken on: its user is not the
          // one the page shows, and the page's writes must not count as theirs)
          const replaced = typeof s === 'object' && s !== null && 'user' in s && !sameSession(session, s as Session)
          if (live && (s === null || replaced)) {
            timer.stop()
            setDeadline(null)
            handlers.current.onEnded()
          }
        },
        () => {}, // not reached: the next request says so, or the page's timer hides it
      )
    })
    control.current = { timer, keepAlive }
    const onActivity = () => {
      if (timer.activity()) keepAlive.activity()
    }
    const onVisible = () => {
      if (document.visibilityState === 'visible') timer.check()
    }
    ACTIVITY_EVENTS.forEach((e) => window.addEventListener(e, onActivity, { capture: true, passive: true }))
    document.addEventListener('visibilitychange', onVisible)
    return () => {
      live = false
      timer.stop()
      keepAlive.stop()
      control.current = null
      setDeadline(null)
      ACTIVITY_EVENTS.forEach((e) => window.removeEventListener(e, onActivity, { capture: true }))
      document.removeEventListener('visibilitychange', onVisible)
    }
    // a new session (signed in again) starts a new timer
  }, [session, minutes])
  const stay = useCallback(() => {
    setDeadline(null)
    control.current?.timer.extend()
    control.current?.keepAlive.now()
  }, [])
  return { deadline, stay }
}
