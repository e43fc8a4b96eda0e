import { afterEach, describe, expect, it, vi } from 'vitest'
import { changeVisitDate, createPatient, deleteVisit, listPatients, login, logout, removeDiagnosis, setCsrfToken, updateVisitNote } from './api.ts'

function reply(body: unknown, status = 200): Response {
  return new Response(body === null ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

afterEach(() => {
  vi.unstubAllGlobals()
})

describe('clinic API client', () => {
  it('keeps the CSRF token from login in memory and sends it on unsafe requests only', async () => {
    const calls: { url: string; init: RequestInit }[] = []
    const answers = [
      reply({ user: { id: 1, username: 'ana', role: 'clinician' }, csrf_token: 'csrf-abc' }),
      reply([]),
      reply({ id: 3, ref: 'P-1' }),
      new Response(null, { status: 204 }),
      reply({ detail: 'CSRF token missing' }, 403),
    ]
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, init })
      return answers.shift()!
    })
    await login('ana', 'pw')
    await listPatients('P')
    await createPatient('P-1')
    await logout()
    await expect(createPatient('P-2')).rejects.toThrow('CSRF token missing')

    const header = (i: number) => new Headers(calls[i].init.headers).get('X-CSRF-Token')
    expect(calls[0].url).toBe('/api/v1/auth/login')
    expect(header(0)).toBeNull() // no token before login
    expect(calls[1].url).toBe('/api/v1/patients?q=P')
    expect(header(1)).toBeNull() // GET
    expect(calls[2].init.method).toBe('POST')
    expect(header(2)).toBe('csrf-abc')
    expect(JSON.parse(String(calls[2].init.body))).toEqual({ ref: 'P-1' })
    expect(header(3)).toBe('csrf-abc') // logout itself is protected
    expect(header(4)).toBeNull() // forgotten after logout
    for (const c of calls) expect(c.init.credentials).toBe('same-origin')
  })

  it('says why a session ended, as the server does, and that a refused save was not saved', async () => {
    const detail = 'your session ended (signed out after 30 minutes without activity): sign in again'
    vi.stubGlobal('fetch', async () => reply({ detail }, 401))
    await expect(listPatients('P')).rejects.toThrow(
      'Your session ended (signed out after 30 minutes without activity): sign in again.',
    )
    await expect(createPatient('P-9')).rejects.toThrow(
      'Not saved. Your session ended (signed out after 30 minutes without activity): sign in again. Once you are signed in again, save again.',
    )
  })

  it('turns a failed login into the server’s message', async () => {
    vi.stubGlobal('fetch', async () => reply({ detail: 'Wrong user name or password.' }, 401))
    await expect(login('ana', 'bad')).rejects.toThrow('Wrong user name or password.')
  })

  it('says how long to wait after too many attempts', async () => {
    vi.stubGlobal(
      'fetch',
      async () => new Response(JSON.stringify({ detail: 'Too many failed sign-ins.' }), { status: 429, headers: { 'Retry-After': '600' } }),
    )
    await expect(login('ana', 'bad')).rejects.toThrow('Too many failed sign-ins. Try again in 10 min.')
  })

  it('does not repeat the wait when the server already says it', async () => {
    const detail = 'too many failed logins: try again in 600 s'
    vi.stubGlobal('fetch', async () => new Response(JSON.stringify({ detail }), { status: 429, headers: { 'Retry-After': '600' } }))
    // said once, in minutes, as a sentence
    await expect(login('ana', 'bad')).rejects.toThrow(/^Too many failed logins: try again in 10 min\.$/)
  })

  it('corrects a wrongly filed visit or diagnosis with the CSRF header: delete, new date, remove', async () => {
    const calls: { url: string; init: RequestInit }[] = []
    vi.stubGlobal('fetch', async (url: string, init: RequestInit) => {
      calls.push({ url, init })
      return init.method === 'DELETE' ? new Response(null, { status: 204 }) : reply({ id: 12 })
    })
    setCsrfToken('csrf-xyz')
    try {
      await expect(deleteVisit(12)).resolves.toBeUndefined()
      await changeVisitDate(12, '2024-02-29')
      await updateVisitNote(12, 'seen again')
      await expect(removeDiagnosis(70)).resolves.toBeUndefined()
    } finally {
      setCsrfToken(null)
    }
    expect(calls.map((c) => `${c.init.method} ${c.url}`)).toEqual([
      'DELETE /api/v1/visits/12',
      'PATCH /api/v1/visits/12',
      'PATCH /api/v1/visits/12',
      'DELETE /api/v1/lesions/70/diagnosis',
    ])
    for (const c of calls) expect(new Headers(c.init.headers).get('X-CSRF-Token')).toBe('csrf-xyz')
    // only the key being changed is sent: a new date does not touch the note
    expect(JSON.parse(String(calls[1].init.body))).toEqual({ taken_at: '2024-02-29' })
    expect(JSON.parse(String(calls[2].init.body))).toEqual({ note: 'seen again' })
    expect(new Headers(calls[1].init.headers).get('Content-Type')).toBe('application/json')
  })
})
