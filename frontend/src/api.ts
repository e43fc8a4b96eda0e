// Client for the dermsight REST API (/api/v1). Every request goes through `apiFetch`, which adds
// the optional bearer token, turns error bodies ({detail: ...}) into readable messages, and tells
// the app when the server asks for a token (HTTP 401).

import { errorMessageFrom } from './format.ts'
import type { ModelCard as CardDocument } from './generated/card.ts'

export type Risk = 'high' | 'moderate' | 'low' | 'cannot_assess'

export interface Flag {
  code: string
  message: string
  blocking?: boolean
}

/** What the model computed for an image the gate refused: not a valid result, never shown as one. */
export interface Unreliable {
  note?: string
  probabilities?: Record<string, number>
  prediction?: string
  prediction_name?: string
  malignant_probability?: number
}

export interface PredictResponse {
  /** Absent when risk is "cannot_assess" (then only under `unreliable`). */
  probabilities?: Record<string, number>
  prediction?: string
  prediction_name?: string
  decision_rule?: string
  malignant_probability?: number
  unreliable?: Unreliable | null
  risk: Risk | string
  flags?: Flag[]
  ood_score?: number | null
  model?: { name?: string; version?: string }
  input?: { age?: number | null; sex?: string | null; site?: string | null }
  timing_ms?: number
  disclaimer?: string
  heatmap?: string | null
}

export interface LesionClassInfo {
  code: string
  name: string
  lay: string
  malignant: boolean
  premalignant?: boolean
}

export interface ExampleImage {
  code: string
  image_id: string
  url: string
  credit?: string
  name?: string
  license?: string
  license_url?: string
  attribution?: string
}

export interface Health {
  status: string
  model?: { name?: string; version?: string }
  /** true when the server stores cases (`dermsight serve --database URL`): the clinic pages */
  clinic?: boolean
  /** the largest accepted image file in MiB (`DERMSIGHT_MAX_UPLOAD_MB`): a larger one gets a 413 */
  max_upload_mb?: number
}

/** What GET /api/v1/model adds to the card: where the bundle's report and plots are served. */
export interface ModelCardLinks {
  report: string | null
  plots: Record<string, string>
}

/** The model card (GET /api/v1/model): card.json typed by the schema generated from the Python
 * card model (src/generated/card.ts, `npm run gen:types`), plus the API's links. The server only
 * serves cards that pass that schema, but the pages still render every field defensively (a
 * field may be absent and report sections are open), so all fields are optional here. */
export type ModelCard = Partial<CardDocument> & { links?: ModelCardLinks }

export const API = '/api/v1'
const TOKEN_KEY = 'dermsight.apiToken'

export class ApiError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

// --- bearer token -------------------------------------------------------------------------------

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY)
  } catch {
    return null
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    else sessionStorage.removeItem(TOKEN_KEY)
  } catch {
    /* storage unavailable (private mode): the token lives only for this request cycle */
  }
}

type Listener = () => void
const authListeners = new Set<Listener>()

/** Subscribe to "the server answered 401"; returns an unsubscribe function. */
export function onAuthRequired(fn: Listener): () => void {
  authListeners.add(fn)
  return () => authListeners.delete(fn)
}

// --- fetch --------------------------------------------------------------------------------------

export const UNREACHABLE = 'Cannot reach the dermsight server. Check your connection and try again.'
export const TIMED_OUT = 'The dermsight server did not answer in time. It may be busy or down; try again in a moment.'
export const UNREADABLE =
  'The server sent an answer this page cannot read (not the dermsight API; perhaps a proxy or login page), so no result is shown.'

/** How long a page's reference data (classes, model card, examples) may take before the page says so. */
export const GET_TIMEOUT_MS = 30_000

/** The JSON body of an error response (`{"detail": ...}`), or null when it is not JSON. */
export async function errorBody(res: Response): Promise<unknown> {
  try {
    return await res.json()
  } catch {
    return null
  }
}

export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  const token = getToken()
  if (token) headers.set('Authorization', `Bearer ${token}`)
  let res: Response
  try {
    res = await fetch(path, { ...init, headers })
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err
    if (err instanceof DOMException && err.name === 'TimeoutError') throw new ApiError(0, TIMED_OUT)
    throw new ApiError(0, UNREACHABLE)
  }
  if (res.ok) return res
  const body = await errorBody(res)
  if (res.status === 401) authListeners.forEach((fn) => fn())
  throw new ApiError(res.status, errorMessageFrom(res.status, body))
}

export async function getJSON<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await apiFetch(path, { signal, headers: { Accept: 'application/json' } })
  return (await readJSON(res)) as T
}

/** A response's JSON body; a body that is not JSON (a proxy's HTML page) is a readable ApiError. */
async function readJSON(res: Response): Promise<unknown> {
  try {
    return await res.json()
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err
    if (err instanceof DOMException && err.name === 'TimeoutError') throw new ApiError(0, TIMED_OUT)
    throw new ApiError(res.status, UNREADABLE)
  }
}

export interface PredictInput {
  image: File
  age?: number | null
  sex?: string | null
  site?: string | null
}

export async function predict(input: PredictInput, signal?: AbortSignal): Promise<PredictResponse> {
  const form = new FormData()
  form.append('image', input.image, input.image.name || 'image')
  if (input.age !== undefined && input.age !== null) form.append('age', String(input.age))
  if (input.sex) form.append('sex', input.sex)
  if (input.site) form.append('site', input.site)
  const res = await apiFetch(`${API}/predict?heatmap=true`, {
    method: 'POST',
    body: form,
    signal,
    headers: { Accept: 'application/json' },
  })
  return (await readJSON(res)) as PredictResponse
}

// --- shared GET cache ---------------------------------------------------------------------------
// Classes, model card and examples rarely change; pages share one request per path. A failed
// request is dropped from the cache so a retry (e.g. after entering a token) fetches again.

const cache = new Map<string, Promise<unknown>>()

export function cachedJSON<T>(path: string): Promise<T> {
  let p = cache.get(path) as Promise<T> | undefined
  if (!p) {
    // a server that accepts the connection but never answers must not leave a page loading for ever
    p = getJSON<T>(path, AbortSignal.timeout(GET_TIMEOUT_MS))
    cache.set(path, p)
    p.catch(() => cache.delete(path))
  }
  return p
}

export function clearCache(): void {
  cache.clear()
}

/** Fetch an image with the auth header and return a blob: URL (img tags cannot send headers). */
export async function fetchImageUrl(path: string, signal?: AbortSignal): Promise<string> {
  const res = await apiFetch(path, { signal })
  const blob = await res.blob()
  return URL.createObjectURL(blob)
}
