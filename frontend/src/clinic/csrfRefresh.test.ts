// Two tabs of one browser share the session cookie. A password changed in one tab replaces the
// browser's session (a new CSRF token, the old session ended): the other tab still held the old
// token, so its saves failed ("lacks the session's security token … reload the page") and its
// "Sign out" got a 403 that the page ignored, showing the sign-in page while the session stayed
// open. Now a refused CSRF token is fetched again (GET /auth/me, only for the page's own user) and
// the request sent once more; a sign-out that still fails is said, not hidden.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../api.ts'
import { signOutFailedText, pageTitleWith } from '../App.tsx'
import { createPatient, currentCsrfToken, login, logout, sameSession, setCsrfToken } from './api.ts'
import type { Session } from './types.ts'

function reply(body: unknown, status = 200): Response {
  return new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

const STALE = "This request lacks the session's security token (the X-CSRF-Token header): reload the page, or sign in again"
const ana: Session = { user: { id: 1, username: 'ana', role: 'clinician' }, csrf_token: 'old', idle_minutes: 30 }

type Call = { url: string; method: string; csrf: string | null }

/** A server whose cookie session is `cookie` (its CSRF token `token`, for user `user`). */
function server(state: { token: string; userId: number; meStatus?: number }) {
  const calls: Call[] = []
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    const method = (init.method ?? 'GET').toUpperCase()
    const csrf = new Headers(init.headers).get('X-CSRF-Token')
    calls.push({ url, method, csrf })
    if (url.endsWith('/auth/login')) return reply({ ...ana, csrf_token: 'old' })
    if (url.endsWith('/auth/me')) {
      if (state.meStatus) return reply({ detail: 'not signed in' }, state.meStatus)
      return reply({ user: { id: state.userId, username: state.userId === 1 ? 'ana' : 'ben', role: 'clinician' }, csrf_token: state.token, idle_minutes: 30 })
    }
    if (method !== 'GET' && csrf !== state.token) return reply({ detail: STALE.charAt(0).toLowerCase() + STALE.slice(1) }, 403)
    if (url.endsWith('/auth/logout')) return new Response(null, { status: 204 })
    return reply({ id: 5, ref: 'P-5' })
  })
  return calls
}

afterEach(() => {
  vi.unstubAllGlobals()
  setCsrfToken(null)
})

describe('a CSRF token out of date (another tab changed the password)', () => {
  it('is fetched again and the save sent once more', async () => {
    const state = { token: 'old', userId: 1 }
    const calls = server(state)
    await login('ana', 'pw')
    state.token = 'new' // tab 1 changed the password: the cookie now opens a new session
    await expect(createPatient('P-5')).resolves.toMatchObject({ ref: 'P-5' })
    expect(calls.slice(1).map((c) => `${c.method} ${c.url} ${c.csrf}`)).toEqual([
      'POST /api/v1/patients old',
      'GET /api/v1/auth/me null',
      'POST /api/v1/patients new',
    ])
    expect(currentCsrfToken()).toBe('new')
    // the keep-alive takes the refreshed session as the page's own (not "replaced")
    expect(sameSession(ana, { ...ana, csrf_token: 'new' })).toBe(true)
    expect(sameSession(ana, { ...ana, csrf_token: 'other' })).toBe(false)
  })

  it('signs out with the new token: the session really ends', async () => {
    const state = { token: 'old', userId: 1 }
    const calls = server(state)
    await login('ana', 'pw')
    state.token = 'new'
    await expect(logout()).resolves.toBeUndefined()
    expect(calls.filter((c) => c.url.endsWith('/auth/logout')).map((c) => c.csrf)).toEqual(['old', 'new'])
    expect(currentCsrfToken()).toBeNull()
  })

  it('is not taken from another user’s session (another tab signed in as someone else)', async () => {
    const state = { token: 'old', userId: 1 }
    const calls = server(state)
    await login('ana', 'pw')
    Object.assign(state, { token: 'bens', userId: 2 })
    await expect(createPatient('P-5')).rejects.toThrow(/security token/)
    expect(calls.filter((c) => c.method === 'POST' && c.url.endsWith('/patients'))).toHaveLength(1)
    expect(currentCsrfToken()).toBe('old')
  })

  it('a sign-out still refused rejects, and the page says so (not signed out on screen)', async () => {
    const state = { token: 'old', userId: 1 }
    server(state)
    await login('ana', 'pw')
    Object.assign(state, { token: 'bens', userId: 2 })
    const err = await logout().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(403)
    expect(currentCsrfToken()).toBe('old') // still the page's session
    expect(signOutFailedText(err)).toBe(`Could not sign out: ${STALE}. You are still signed in.`)
    expect(signOutFailedText(new ApiError(0, 'Cannot reach the dermsight server. Check your connection and try again.'))).toBe(
      'Could not sign out: Cannot reach the dermsight server. Check your connection and try again. You are still signed in.',
    )
  })

  it('a sign-out whose session is already gone (401) is a sign-out', async () => {
    const state = { token: 'old', userId: 1 }
    server(state)
    await login('ana', 'pw')
    vi.stubGlobal('fetch', async () => reply({ detail: 'not signed in' }, 401))
    await expect(logout()).resolves.toBeUndefined()
    expect(currentCsrfToken()).toBeNull()
  })

  it('is retried once only', async () => {
    const state = { token: 'old', userId: 1 }
    const calls = server(state)
    await login('ana', 'pw')
    // /auth/me answers a token the server then refuses again
    vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
      calls.push({ url, method: (init.method ?? 'GET').toUpperCase(), csrf: new Headers(init.headers).get('X-CSRF-Token') })
      if (url.endsWith('/auth/me')) return reply({ ...ana, csrf_token: `t${calls.length}` })
      return reply({ detail: STALE }, 403)
    })
    await expect(createPatient('P-5')).rejects.toThrow(/security token/)
    expect(calls.filter((c) => c.url.endsWith('/patients'))).toHaveLength(2)
  })
})

describe('the app’s title', () => {
  it('keeps a page’s own title ("Patient not found") while the page is shown, and again after signing in', () => {
    expect(pageTitleWith('Patient', true, 'Patient not found')).toBe('Patient not found')
    expect(pageTitleWith('Your session has ended', false, 'Patient not found')).toBe('Your session has ended')
    expect(pageTitleWith('Patient', true, null)).toBe('Patient')
  })
})

describe('"Sign out" that the server refused', () => {
  it('leaves the page signed in and says why; a sign-out that worked signs out', async () => {
    const { signOutThen } = await import('../App.tsx')
    const signedOut = vi.fn()
    const failed = vi.fn()
    await signOutThen(() => Promise.reject(new ApiError(403, STALE)), signedOut, failed)
    expect(signedOut).not.toHaveBeenCalled()
    expect(failed).toHaveBeenCalledWith(`Could not sign out: ${STALE}. You are still signed in.`)
    failed.mockClear()
    await signOutThen(() => Promise.resolve(), signedOut, failed)
    expect(signedOut).toHaveBeenCalledTimes(1)
    expect(failed).not.toHaveBeenCalled()
  })
})
