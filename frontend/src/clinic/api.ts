// Client for the clinic API. The session lives in an HttpOnly cookie; the CSRF token the server
// hands out at login (or /auth/me) is kept in memory only, never in storage, and sent as
// `X-CSRF-Token` on every unsafe request (see `withCsrf`).

import { API, ApiError, UNREACHABLE, errorBody } from '../api.ts'
import { asSentence, errorMessageFrom } from '../format.ts'
import { isUnsafeMethod, readableWait, withCsrf } from './format.ts'
import type {
  AdminApiTokenInfo,
  ApiTokenInfo,
  AuditEntry,
  AuditQuery,
  Dashboard,
  Diagnosis,
  Lesion,
  LesionDetail,
  MapPoint,
  NewApiToken,
  Patient,
  PatientSummary,
  Role,
  Session,
  Side,
  User,
  Visit,
  VisitSimilar,
} from './types.ts'

let csrfToken: string | null = null
// the user whose session the page shows (its CSRF token above): a token found afresh for the
// browser's cookie (`refreshCsrf`) is taken only when it is this user's
let csrfUserId: number | null = null

/** The CSRF token sent on this page's unsafe requests, and the id of the user whose session it is
 * (unknown: the token is never refreshed, see `refreshCsrf`). */
export function setCsrfToken(token: string | null, userId: number | null = null): void {
  csrfToken = token
  csrfUserId = token === null ? null : userId
}

/** The CSRF token this page sends now (null: none), e.g. after `refreshCsrf` took a new one. */
export function currentCsrfToken(): string | null {
  return csrfToken
}

/** Whether a 403 is the server refusing a request's CSRF token (missing, or out of date: another
 * tab of the browser changed the password and the cookie now opens a new session). */
function csrfRefused(status: number, message: string): boolean {
  return status === 403 && /security token|csrf/i.test(message)
}

/** The cookie's session now has another CSRF token than the page's (another tab changed the
 * password: the server replaced the browser's session with a new one, for the same user). Takes
 * the token `GET /auth/me` answers when that session is the page's user's (never another user's:
 * see `sessionNow`). Returns whether a new token was taken. */
async function refreshCsrf(): Promise<boolean> {
  if (csrfUserId === null) return false
  const userId = csrfUserId
  let res: Response
  try {
    res = await fetch(`${API}/auth/me`, withCsrf({ headers: { Accept: 'application/json' } }, null))
  } catch {
    return false
  }
  if (!res.ok) return false
  const s = (await res.json().catch(() => null)) as Session | null
  if (!s || !s.user || s.user.id !== userId || !s.csrf_token || s.csrf_token === csrfToken) return false
  csrfToken = s.csrf_token
  csrfTokenListeners.forEach((fn) => fn(s))
  return true
}

const csrfTokenListeners = new Set<(s: Session) => void>()

/** Subscribe to "the page took the new CSRF token of its user's session" (`refreshCsrf`); returns
 * an unsubscribe function. */
export function onCsrfRefreshed(fn: (s: Session) => void): () => void {
  csrfTokenListeners.add(fn)
  return () => csrfTokenListeners.delete(fn)
}

type Listener = () => void
const expiredListeners = new Set<Listener>()

/** Subscribe to "the session is gone" (a 401 from a clinic call); returns an unsubscribe function. */
export function onSessionExpired(fn: Listener): () => void {
  expiredListeners.add(fn)
  return () => expiredListeners.delete(fn)
}

async function clinicFetch(path: string, init: RequestInit = {}, notifyExpired = true, retried = false): Promise<Response> {
  let res: Response
  try {
    res = await fetch(`${API}${path}`, withCsrf(init, csrfToken))
  } catch {
    throw new ApiError(0, UNREACHABLE)
  }
  if (res.ok) return res
  const body = await errorBody(res)
  // a CSRF token out of date (another tab changed the password): the session's token is fetched
  // again and the request sent once more, with it
  if (!retried && isUnsafeMethod(init.method) && csrfRefused(res.status, errorMessageFrom(res.status, body)) && (await refreshCsrf())) {
    return clinicFetch(path, init, notifyExpired, true)
  }
  if (res.status === 401 && notifyExpired) expiredListeners.forEach((fn) => fn())
  let message = errorMessageFrom(res.status, body)
  if (res.status === 401) {
    // The server says why ("your session ended (signed out after 30 minutes without
    // activity): sign in again", "your account has been disabled: ..."); a refused save also
    // says it was not saved, as the words stay on the form after signing in again.
    const said = asSentence(message) || 'Your session has ended: sign in again.'
    message =
      notifyExpired && isUnsafeMethod(init.method) ? `Not saved. ${said} Once you are signed in again, save again.` : said
  }
  if (res.status === 429) {
    const wait = Number(res.headers.get('Retry-After'))
    if (Number.isFinite(wait) && wait > 0 && !/try again in/i.test(message)) message = `${message} Try again in ${Math.ceil(wait / 60)} min.`
    message = readableWait(message)
  }
  // The server's sentences start in lower case ("wrong user name or password"); shown after
  // "Could not sign in." they read as a fragment.
  throw new ApiError(res.status, message.charAt(0).toUpperCase() + message.slice(1))
}

async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers)
  headers.set('Accept', 'application/json')
  if (typeof init.body === 'string') headers.set('Content-Type', 'application/json')
  const res = await clinicFetch(path, { ...init, headers })
  return (await res.json()) as T
}

const send = (method: string, body?: unknown): RequestInit => ({
  method,
  body: body === undefined ? undefined : JSON.stringify(body),
})

// --- auth -----------------------------------------------------------------------------------------

export async function login(username: string, password: string): Promise<Session> {
  const res = await clinicFetch(
    '/auth/login',
    { method: 'POST', body: JSON.stringify({ username, password }), headers: { 'Content-Type': 'application/json', Accept: 'application/json' } },
    false,
  )
  const s = (await res.json()) as Session
  setCsrfToken(s.csrf_token, s.user.id)
  return s
}

/** The session the browser's cookie opens now, or null when nobody is signed in; its CSRF token
 * is NOT taken for this page's requests. The cookie is shared by every tab: another tab may have
 * signed out and in as someone else since this page was signed in, and taking that session's
 * token would make this page's writes count as that user's while it shows its own user. For a
 * check of a session the page already has (the keep-alive), compared with it (`sameSession`). */
export async function sessionNow(): Promise<Session | null> {
  try {
    const res = await clinicFetch('/auth/me', { headers: { Accept: 'application/json' } }, false)
    return (await res.json()) as Session
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null
    throw err
  }
}

/** Whether `now` (what `sessionNow` found) is the session the page shows (`page`): the same user
 * and the same session (its CSRF token, made once per sign-in, says which; or the one the page
 * took since for its user, see `refreshCsrf`). */
export function sameSession(page: Session, now: Session | null): boolean {
  return (
    now !== null &&
    now.user.id === page.user.id &&
    (now.csrf_token === page.csrf_token || (csrfToken !== null && now.csrf_token === csrfToken))
  )
}

/** Sign out (`POST /auth/logout`). Resolves when the session is ended: signed out, or already gone
 * (401); rejects (an ApiError) when the server did not end it (not reachable, a refusal that a new
 * CSRF token did not cure): the session is then still open and the page must not say otherwise. */
export async function logout(): Promise<void> {
  try {
    await clinicFetch('/auth/logout', { method: 'POST' }, false)
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) throw err
  }
  setCsrfToken(null)
}

/** What changing your own password answers: the new session of this browser (as login answers
 * it), and how many of your other sessions ended and API tokens were revoked. */
export interface PasswordChanged extends Session {
  sessions_ended: number
  tokens_revoked: number
}

/** Change your own password (`POST /auth/password`, from this signed-in session). The server ends
 * your other sessions, revokes your API tokens and opens a new session for this browser: its CSRF
 * token is taken for this page's requests. A wrong current password is a 422 (and counts towards
 * the lock of failed sign-ins), not a 401: this page stays signed in. */
export async function changePassword(currentPassword: string, newPassword: string): Promise<PasswordChanged> {
  const s = await json<PasswordChanged>(
    '/auth/password',
    send('POST', { current_password: currentPassword, new_password: newPassword }),
  )
  setCsrfToken(s.csrf_token, s.user.id)
  return s
}

export const listTokens = () => json<ApiTokenInfo[]>('/auth/tokens')
/** `days`: how long it works (1-365; the server's default, 90, when left out) */
export const createToken = (name: string, days?: number) =>
  json<NewApiToken>('/auth/tokens', send('POST', days === undefined ? { name } : { name, days }))
export const deleteToken = (id: number) => clinicFetch(`/auth/tokens/${id}`, { method: 'DELETE' }).then(() => undefined)

// --- admin ----------------------------------------------------------------------------------------

export const listUsers = () => json<User[]>('/admin/users')
export const createUser = (username: string, password: string, role: Role) =>
  json<User>('/admin/users', send('POST', { username, password, role }))
/** The audit log's address for a page of `query` (filters left out when empty). */
export function auditPath(query: AuditQuery = {}): string {
  const params = new URLSearchParams({ limit: String(query.limit ?? 100) })
  if (query.before !== undefined) params.set('before', String(query.before))
  if (query.user?.trim()) params.set('user', query.user.trim())
  if (query.patient !== undefined) params.set('patient', String(query.patient))
  return `/admin/audit?${params.toString()}`
}
export const listAudit = (query: AuditQuery = {}) => json<AuditEntry[]>(auditPath(query))
/** Every user's API tokens (admin) */
export const listAllTokens = () => json<AdminApiTokenInfo[]>('/admin/tokens')
/** Revoke any user's API token (admin; audited) */
export const revokeAnyToken = (id: number) => clinicFetch(`/admin/tokens/${id}`, { method: 'DELETE' }).then(() => undefined)

// --- patients, lesions, visits --------------------------------------------------------------------

export const listPatients = (q: string) => json<PatientSummary[]>(`/patients${q.trim() ? `?q=${encodeURIComponent(q.trim())}` : ''}`)
export const createPatient = (ref: string) => json<PatientSummary>('/patients', send('POST', { ref }))
export const getPatient = (id: number) => json<Patient>(`/patients/${id}`)
export const deletePatient = (id: number) => clinicFetch(`/patients/${id}`, { method: 'DELETE' }).then(() => undefined)
/** Corrects a patient's reference (a name typed into it by mistake, a wrong record number): the
 * rules of a new patient; 409 when another patient has the reference (ignoring case). */
export const updatePatientRef = (id: number, ref: string) => json<Patient>(`/patients/${id}`, send('PATCH', { ref }))
export const patientExportUrl = (id: number) => `${API}/patients/${id}/export`
export const confirmedExportUrl = () => `${API}/clinic/export/confirmed`

export interface NewLesion {
  body_site: string | null
  side: Side | null
  location: string | null
  map: MapPoint | null
}

export const createLesion = (patientId: number, l: NewLesion) => json<Lesion>(`/patients/${patientId}/lesions`, send('POST', l))
export const getLesion = (id: number) => json<LesionDetail>(`/lesions/${id}`)

/** A lesion's corrections: its free-text location and its side (null: removed); at least one.
 * The body site is not changed this way: the lesion's visits were assessed with it. */
export interface LesionChange {
  location?: string | null
  side?: Side | null
  /** the pin on the body map (null: removed) */
  map?: MapPoint | null
}

export const updateLesion = (id: number, change: LesionChange) => json<Lesion>(`/lesions/${id}`, send('PATCH', change))
/** Deletes a lesion created by mistake, with its visits, their images (where no other visit uses
 * them) and its diagnosis. */
export const deleteLesion = (id: number) => clinicFetch(`/lesions/${id}`, { method: 'DELETE' }).then(() => undefined)

/** The longest note (a visit's or a diagnosis's) the server stores, in characters: the server's
 * `NOTE_MAX` (src/dermsight/clinic/visits.py; a longer note is a 413). Change both together. */
export const NOTE_MAX = 2000

export interface NewVisit {
  image: File
  age: number | null
  sex: string | null
  site: string | null
  note: string
  taken_at: string | null
}

export async function createVisit(lesionId: number, v: NewVisit): Promise<Visit> {
  const form = new FormData()
  form.append('image', v.image, v.image.name || 'image')
  if (v.age !== null) form.append('age', String(v.age))
  if (v.sex) form.append('sex', v.sex)
  if (v.site) form.append('site', v.site)
  if (v.note.trim()) form.append('note', v.note.trim())
  if (v.taken_at) form.append('taken_at', v.taken_at)
  return json<Visit>(`/lesions/${lesionId}/visits`, { method: 'POST', body: form })
}

/** A visit's corrections: its note, or the date its image was taken (YYYY-MM-DD); at least one. */
export interface VisitChange {
  note?: string | null
  taken_at?: string
}

export const updateVisit = (id: number, change: VisitChange) => json<Visit>(`/visits/${id}`, send('PATCH', change))
export const updateVisitNote = (id: number, note: string) => updateVisit(id, { note })
export const changeVisitDate = (id: number, takenAt: string) => updateVisit(id, { taken_at: takenAt })
/** Deletes a visit wrongly filed (its image and heatmap too, where no other visit uses them). */
export const deleteVisit = (id: number) => clinicFetch(`/visits/${id}`, { method: 'DELETE' }).then(() => undefined)

/** A diagnosis as the page showed it: what a correction replaces. */
export interface DiagnosisRef {
  code: string
  method: string
  /** the note the page showed (null: none); sent when known, so a note corrected meanwhile is a
   * change the server reports (409) instead of one a save overwrites unseen */
  note?: string | null
}

export interface DiagnosisEntry {
  code: string
  method: string
  note: string
  /** the diagnosis the page showed when the user started (null: none); the server answers 409
   * when the lesion's diagnosis is another one by now, instead of overwriting it unseen */
  replaces: DiagnosisRef | null
}

export const recordDiagnosis = (lesionId: number, d: DiagnosisEntry) =>
  json<Diagnosis>(
    `/lesions/${lesionId}/diagnosis`,
    send('PUT', {
      code: d.code,
      method: d.method,
      note: d.note,
      replaces: d.replaces && {
        code: d.replaces.code,
        method: d.replaces.method,
        ...(d.replaces.note !== undefined ? { note: d.replaces.note } : {}),
      },
    }),
  )

/** Removes a lesion's confirmed diagnosis (recorded on the wrong lesion, or not confirmed after all). */
/** Removes the lesion's diagnosis `shown` (the one the page showed, sent as `code` and `method`):
 * the server answers 409 when the diagnosis recorded now is another one (recorded meanwhile).
 * Without `shown` the removal is unchecked. */
export const removeDiagnosis = (lesionId: number, shown?: DiagnosisRef) =>
  clinicFetch(`/lesions/${lesionId}/diagnosis${shown ? `?${new URLSearchParams({ code: shown.code, method: shown.method })}` : ''}`, { method: 'DELETE' }).then(() => undefined)

export const getDashboard = () => json<Dashboard>('/clinic/dashboard')

export const getSimilar = (visitId: number, k = 5) => json<VisitSimilar>(`/visits/${visitId}/similar?k=${k}`)

