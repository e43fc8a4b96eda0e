// The signed-in clinic user, shared by the clinic pages, and a small loader for clinic data.

import { createContext, useCallback, useContext, useEffect, useMemo, useState } from 'react'
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
