// The server's health (GET /api/v1/health), kept current: the footer's "Server: ok" line, whether
// the clinic pages exist, and the largest upload the server accepts. It is checked at load, again
// when the window comes back into view or focus, and every `HEALTH_POLL_MS` while it is visible,
// one request at a time, so the footer does not keep saying "ok" after the server went down (nor
// "not reachable" after it came back).

import { createContext, useContext, useEffect, useState } from 'react'
import { API, ApiError, getJSON, type Health } from './api.ts'

/** How often a visible page re-checks the server. */
export const HEALTH_POLL_MS = 30_000
/** A focus or visibility change within this long after the last check does not check again. */
export const HEALTH_MIN_GAP_MS = 5_000
/** How long one check may take before it counts as "not reachable". */
export const HEALTH_TIMEOUT_MS = 10_000

export interface HealthState {
  /** the last answer the server gave (kept while a later check fails: the clinic pages and the
   * upload limit do not vanish because the server was briefly down) */
  data: Health | null
  /** why the latest check failed; null when it succeeded */
  error: Error | null
  /** no check has finished yet */
  loading: boolean
}

export const NO_HEALTH: HealthState = { data: null, error: null, loading: true }

/** What the footer says about the server. */
export function healthStatusText(h: HealthState): string {
  if (h.error) {
    const status = h.error instanceof ApiError ? h.error.status : 0
    if (status === 401) return 'needs an API token'
    // no answer, a timeout, or a proxy in front saying the server behind it is down
    if (status === 0 || status === 502 || status === 503 || status === 504) return 'not reachable'
    return `error (${h.error.message})`
  }
  if (h.loading || !h.data) return 'checking…'
  const m = h.data.model
  return `${h.data.status ?? 'unknown'}${m ? ` · model ${[m.name, m.version].filter(Boolean).join(' ')}` : ''}`
}

export interface PollerDeps {
  /** one check; the poller never starts a second one while it runs */
  check: () => Promise<void>
  /** whether the page is visible (no periodic checks for a hidden tab) */
  visible: () => boolean
  now?: () => number
  intervalMs?: number
  minGapMs?: number
}

/** Runs `check` at start, on `poke()` (focus, visibility) and every `intervalMs` while visible;
 * at most one check in flight, and a poke soon after the last check is ignored. */
export class Poller {
  private readonly deps: Required<PollerDeps>
  private inFlight = false
  private lastStart = Number.NEGATIVE_INFINITY
  private timer: ReturnType<typeof setInterval> | null = null
  private stopped = false

  constructor(deps: PollerDeps) {
    this.deps = {
      now: () => Date.now(),
      intervalMs: HEALTH_POLL_MS,
      minGapMs: HEALTH_MIN_GAP_MS,
      ...deps,
    }
  }

  start(): void {
    this.stopped = false
    this.run()
    this.timer = setInterval(() => {
      if (this.deps.visible()) this.run()
    }, this.deps.intervalMs)
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /** The window came back into view or focus: check now unless a check is recent or running. */
  poke(): void {
    if (!this.deps.visible()) return
    if (this.deps.now() - this.lastStart < this.deps.minGapMs) return
    this.run()
  }

  private run(): void {
    if (this.inFlight || this.stopped) return
    this.inFlight = true
    this.lastStart = this.deps.now()
    this.deps.check().finally(() => {
      this.inFlight = false
    })
  }
}

/** The app's health state, polled as described at the top of this file; App provides it.
 * `authVersion` (a new API token was entered) checks again at once. */
export function useHealthPoll(authVersion: number): HealthState {
  const [state, setState] = useState<HealthState>(NO_HEALTH)
  useEffect(() => {
    let live = true
    const check = () =>
      getJSON<Health>(`${API}/health`, AbortSignal.timeout(HEALTH_TIMEOUT_MS)).then(
        (data) => {
          if (live) setState({ data, error: null, loading: false })
        },
        (error: Error) => {
          if (live) setState((s) => ({ data: s.data, error, loading: false }))
        },
      )
    const poller = new Poller({ check, visible: () => document.visibilityState === 'visible' })
    const poke = () => poller.poke()
    poller.start()
    window.addEventListener('focus', poke)
    document.addEventListener('visibilitychange', poke)
    window.addEventListener('online', poke)
    return () => {
      live = false
      poller.stop()
      window.removeEventListener('focus', poke)
      document.removeEventListener('visibilitychange', poke)
      window.removeEventListener('online', poke)
    }
  }, [authVersion])
  return state
}

export const HealthContext = createContext<HealthState>(NO_HEALTH)

/** The server's health as last checked (see `useHealthPoll`). */
export const useHealth = () => useContext(HealthContext)
