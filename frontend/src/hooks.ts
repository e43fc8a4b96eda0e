import { createContext, useCallback, useContext, useEffect, useState } from 'react'
import { cachedJSON, fetchImageUrl } from './api.ts'
import { clinicRouteFromHash } from './clinic/format.ts'

// --- hash routing -------------------------------------------------------------------------------

export type Route = 'assess' | 'learn' | 'model' | 'notfound'

/** The page of a hash outside the clinic's own routes (`clinicRouteFromHash`, which App tries
 * first). A clinic address that no clinic page answers ("#/clinic/visits/1", a mistyped or old
 * link) is 'notfound': said so, never the Assess page in its place (which looked like lost data).
 * Any other unknown hash is the Assess page, the start page. */
export function routeFromHash(hash: string): Route {
  const path = hash.replace(/^#/, '').replace(/\/+$/, '')
  if (path === '/learn') return 'learn'
  if (path === '/model') return 'model'
  if ((path === '/clinic' || path.startsWith('/clinic/')) && !clinicRouteFromHash(hash)) return 'notfound'
  return 'assess'
}

export function useHashRoute(): Route {
  const [route, setRoute] = useState<Route>(() => routeFromHash(window.location.hash))
  useEffect(() => {
    const onChange = () => setRoute(routeFromHash(window.location.hash))
    window.addEventListener('hashchange', onChange)
    return () => window.removeEventListener('hashchange', onChange)
  }, [])
  return route
}

// --- audience (clinician / patient), remembered in localStorage ---------------------------------

export type Audience = 'clinician' | 'patient'
const AUDIENCE_KEY = 'dermsight.audience'

/** The view saved in this browser, or null when nobody has chosen one yet (a first visit; or
 * storage that cannot be read). */
export function storedAudience(): Audience | null {
  try {
    const v = localStorage.getItem(AUDIENCE_KEY)
    return v === 'patient' || v === 'clinician' ? v : null
  } catch {
    return null
  }
}

/** The view the results are shown in: the saved choice; until one is made, the Patient view (plain
 * wording, all the safety advice), since the reader is not known: a member of the public on a
 * phone read "Low risk" and a class name in the Clinician view. The Assess page asks once
 * (`AudiencePrompt`); a signed-in clinic session chooses the Clinician view. */
export function loadAudience(): Audience {
  return storedAudience() ?? 'patient'
}

export function saveAudience(a: Audience): void {
  try {
    localStorage.setItem(AUDIENCE_KEY, a)
  } catch {
    /* ignore */
  }
}

export const AudienceContext = createContext<Audience>('clinician')
export const useAudience = () => useContext(AudienceContext)

/** Whether the view has been chosen in this browser (the Assess page's question is then not
 * shown), and how to choose it (saved, as the header's switch does). */
export interface AudienceChoice {
  chosen: boolean
  choose: (a: Audience) => void
}
export const AudienceChoiceContext = createContext<AudienceChoice>({ chosen: true, choose: () => {} })
export const useAudienceChoice = () => useContext(AudienceChoiceContext)

/** Bumped when the user enters a new API token, so pages re-fetch. */
export const AuthVersionContext = createContext(0)

// --- data loading -------------------------------------------------------------------------------

export interface Loaded<T> {
  data: T | null
  error: Error | null
  loading: boolean
}

/** GET a JSON resource through the shared cache; re-fetches when the auth version changes. */
export function useApiData<T>(path: string): Loaded<T> {
  const authVersion = useContext(AuthVersionContext)
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: true })
  useEffect(() => {
    let live = true
    setState((s) => ({ ...s, loading: true, error: null }))
    cachedJSON<T>(path).then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error: Error) => live && setState({ data: null, error, loading: false }),
    )
    return () => {
      live = false
    }
  }, [path, authVersion])
  return state
}

const NO_IMAGE: { src: string | null; failed: boolean } = { src: null, failed: false }

/** An API image fetched with the auth header, as a blob: URL (null while loading, on error, or
 * without a path). The URL is released once the image is gone: another path, no path, unmount.
 * The state remembers its path (and auth version), so the render that follows a path change (before the effect)
 * never shows the earlier path's URL, which that effect's cleanup is about to release. */
export function useApiImage(path: string | null): { src: string | null; failed: boolean } {
  const authVersion = useContext(AuthVersionContext)
  const [state, setState] = useState<{ path: string | null; auth: number; src: string | null; failed: boolean }>({ path, auth: authVersion, ...NO_IMAGE })
  useEffect(() => {
    setState({ path, auth: authVersion, ...NO_IMAGE }) // never the URL of an earlier path (released when its effect ended)
    if (!path) return
    const ctrl = new AbortController()
    let url: string | null = null
    fetchImageUrl(path, ctrl.signal).then(
      (u) => {
        if (ctrl.signal.aborted) {
          URL.revokeObjectURL(u)
          return
        }
        url = u
        setState({ path, auth: authVersion, src: u, failed: false })
      },
      () => {
        if (!ctrl.signal.aborted) setState({ path, auth: authVersion, src: null, failed: true })
      },
    )
    return () => {
      ctrl.abort()
      if (url) URL.revokeObjectURL(url)
    }
  }, [path, authVersion])
  return state.path === path && state.auth === authVersion ? { src: state.src, failed: state.failed } : NO_IMAGE
}

/** True only once `active` has stayed true for `delayMs` (avoids spinner flicker). */
export function useDelayedFlag(active: boolean, delayMs = 150): boolean {
  const [shown, setShown] = useState(false)
  useEffect(() => {
    if (!active) {
      setShown(false)
      return
    }
    const t = window.setTimeout(() => setShown(true), delayMs)
    return () => window.clearTimeout(t)
  }, [active, delayMs])
  return shown
}

/**
 * A form's busy flag and error message. `submit(action, onError)` runs the action with the form
 * busy and the old error cleared; a thrown error's message becomes the form's error (then
 * `onError` runs, e.g. to clear a password). Validation before it uses `setError`.
 */
export function useFormAction(): {
  busy: boolean
  error: string | null
  setError: (e: string | null) => void
  submit: (action: () => Promise<void>, onError?: () => void) => Promise<void>
} {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)
  const submit = useCallback(async (action: () => Promise<void>, onError?: () => void) => {
    setBusy(true)
    setError(null)
    try {
      await action()
    } catch (err) {
      setError((err as Error).message)
      onError?.()
    } finally {
      setBusy(false)
    }
  }, [])
  return { busy, error, setError, submit }
}
