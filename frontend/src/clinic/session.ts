// The signed-in clinic user, shared by the clinic pages, and a small loader for clinic data.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react'
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

/** One line saying why the page was hidden (shown on the sign-in form). */
export function idleReason(minutes: number): string {
  return `Signed out after ${minutes} minute${minutes === 1 ? '' : 's'} without activity, so that nobody else sees the patient’s data.`
}

export interface IdleTimer {
  /** someone used the page: the idle time starts again */
  activity: () => void
  /** look now (e.g. the tab came back after the computer slept): `onIdle` if the time has passed */
  check: () => void
  stop: () => void
}

/** Calls `onIdle` once when `idleMs` have passed since the start or the last `activity()`.
 * Activity only records the time (no timer per key press); the timer, when it fires, waits out
 * what is left. A timer that fires late (a background tab, a sleeping computer) still compares
 * the clock, and `check()` looks at once. */
export function startIdleTimer(idleMs: number, onIdle: () => void, now: () => number = Date.now): IdleTimer {
  let last = now()
  let timer: ReturnType<typeof setTimeout> | undefined
  let done = false
  const check = () => {
    if (done) return
    clearTimeout(timer)
    const left = last + idleMs - now()
    if (left <= 0) {
      done = true
      onIdle()
    } else {
      timer = setTimeout(check, left)
    }
  }
  timer = setTimeout(check, idleMs)
  return {
    activity: () => {
      if (!done) last = now()
    },
    check,
    stop: () => {
      done = true
      clearTimeout(timer)
    },
  }
}

/** While someone is signed in: `onIdle()` after the session's idle timeout without activity on
 * the page (`ACTIVITY_EVENTS`), so that a screen left alone stops showing patient data when
 * the server ends the session, not at the next request. */
export function useIdleTimeout(session: Session | null, onIdle: (minutes: number) => void): void {
  const onIdleRef = useRef(onIdle)
  useEffect(() => {
    onIdleRef.current = onIdle
  })
  const minutes = session ? idleMinutesOf(session) : null
  useEffect(() => {
    if (minutes === null) return
    const timer = startIdleTimer(minutes * 60_000, () => onIdleRef.current(minutes))
    const onVisible = () => {
      if (document.visibilityState === 'visible') timer.check()
    }
    ACTIVITY_EVENTS.forEach((e) => window.addEventListener(e, timer.activity, { capture: true, passive: true }))
    document.addEventListener('visibilitychange', onVisible)
    return () => {
      timer.stop()
      ACTIVITY_EVENTS.forEach((e) => window.removeEventListener(e, timer.activity, { capture: true }))
      document.removeEventListener('visibilitychange', onVisible)
    }
    // a new session (signed in again) starts a new timer
  }, [session, minutes])
}
