// Pure helpers of the clinic pages (no DOM, no React): unit-tested with Vitest.

import { riskText } from '../content.ts'
import { formatPercent } from '../format.ts'
import type { Change, Diagnosis, Estimate, Lesion, Visit } from './types.ts'

// --- CSRF -----------------------------------------------------------------------------------------

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/** Whether a request changes state (and so must carry the CSRF token with cookie auth). */
export function isUnsafeMethod(method: string | undefined): boolean {
  return !SAFE_METHODS.has((method ?? 'GET').toUpperCase())
}

/**
 * The request options for a clinic call: the session cookie goes along (same origin only) and
 * every unsafe request carries `X-CSRF-Token` when a token is known. Nothing else is changed.
 */
export function withCsrf(init: RequestInit, csrf: string | null): RequestInit {
  const headers = new Headers(init.headers)
  if (csrf && isUnsafeMethod(init.method)) headers.set('X-CSRF-Token', csrf)
  return { ...init, headers, credentials: 'same-origin' }
}

// --- routes ---------------------------------------------------------------------------------------

export type ClinicRoute =
  | { page: 'patients' }
  | { page: 'patient'; id: number }
  | { page: 'lesion'; id: number }
  | { page: 'dashboard' }
  | { page: 'admin' }
  | { page: 'account' }

/** "#/clinic/lesions/7" -> {page: 'lesion', id: 7}; null for hashes outside the clinic. */
export function clinicRouteFromHash(hash: string): ClinicRoute | null {
  const path = hash.replace(/^#/, '').replace(/\/+$/, '')
  if (path === '/clinic' || path === '/clinic/patients') return { page: 'patients' }
  if (path === '/clinic/dashboard') return { page: 'dashboard' }
  if (path === '/clinic/admin') return { page: 'admin' }
  if (path === '/clinic/account') return { page: 'account' }
  const m = /^\/clinic\/(patients|lesions)\/(\d+)$/.exec(path)
  if (m) return { page: m[1] === 'patients' ? 'patient' : 'lesion', id: Number(m[2]) }
  return null
}

export const clinicHref = {
  patients: '#/clinic',
  patient: (id: number) => `#/clinic/patients/${id}`,
  lesion: (id: number) => `#/clinic/lesions/${id}`,
  dashboard: '#/clinic/dashboard',
  admin: '#/clinic/admin',
  account: '#/clinic/account',
}

// --- changes between visits -----------------------------------------------------------------------

/** A change in the malignant share in percentage points: 0.123 -> "+12.3 points". */
export function formatDelta(delta: number | null | undefined): string {
  if (typeof delta !== 'number' || !Number.isFinite(delta)) return 'not available'
  const pts = Math.abs(delta * 100)
  const s = pts.toFixed(1)
  if (Number(s) === 0) return 'no change (0.0 points)'
  return `${delta > 0 ? '+' : '−'}${s} points`
}

/** 0 -> "same day", 1 -> "1 day", 45 -> "45 days", 400 -> "400 days (1.1 years)". */
export function formatDays(days: number | null | undefined): string {
  if (typeof days !== 'number' || !Number.isFinite(days) || days < 0) return 'unknown interval'
  const d = Math.round(days)
  if (d === 0) return 'same day'
  if (d === 1) return '1 day'
  if (d >= 365) return `${d} days (${(d / 365.25).toFixed(1)} years)`
  return `${d} days`
}

/** The tier's short label ("High risk"), or "no result" for a visit the model could not assess. */
export function tierLabel(risk: string | null | undefined): string {
  if (!risk) return 'no result'
  if (risk === 'cannot_assess') return 'Cannot assess'
  return riskText(risk).label
}

/** One sentence for the change between two visits. */
export function describeChange(c: Change): string {
  const tiers =
    c.tier_from === c.tier_to
      ? `tier unchanged (${tierLabel(c.tier_to)})`
      : `tier ${tierLabel(c.tier_from)} → ${tierLabel(c.tier_to)}`
  const parts = [`After ${formatDays(c.days)}: malignant share ${formatDelta(c.malignant_delta)}`, tiers]
  return `${parts.join('; ')}${c.risk_rose ? '. Risk rose.' : '.'}`
}

// --- lesions --------------------------------------------------------------------------------------

/** "Left, arm — 3 cm above the elbow" from the lesion's side, site and free-text location. */
export function lesionPlace(l: Pick<Lesion, 'side' | 'body_site' | 'location'>, siteLabels: Record<string, string> = {}): string {
  const side = l.side ? l.side.charAt(0).toUpperCase() + l.side.slice(1) : ''
  const site = l.body_site ? (siteLabels[l.body_site] ?? l.body_site) : ''
  const head = [side, side ? site.toLowerCase() : site].filter(Boolean).join(', ')
  const loc = l.location?.trim() ?? ''
  if (head && loc) return `${head} — ${loc}`
  return head || loc || 'location not recorded'
}

/** The tier with the visit's malignant share (the clinic's figure, (MEL + BCC + SCC) / (1 − UNK)
 * for the shipped model): "High risk · malignant share 71.2%". */
export function latestSummary(risk: string | null, p: number | null | undefined): string {
  if (!risk) return 'no visit yet'
  return typeof p === 'number' ? `${tierLabel(risk)} · malignant share ${formatPercent(p)}` : tierLabel(risk)
}

/** What the lesion page's header calls the tier it shows: "last assessed" when the latest photo
 * was refused but an earlier one was assessed; "latest" otherwise (also when none was assessed). */
export function lesionTierWord(l: Pick<Lesion, 'latest_risk' | 'latest_visit_risk' | 'latest_risk_taken_at'>): string {
  return retakeNote(l) !== null && l.latest_risk !== 'cannot_assess' ? 'last assessed' : 'latest'
}

/** When the tier was assessed, for the patient's lesion list beside a retake badge: "assessed
 * 2025-06-01" (null when no retake is needed or no photo was ever assessed). */
export function assessedOn(l: Pick<Lesion, 'latest_risk' | 'latest_visit_risk' | 'latest_risk_taken_at'>): string | null {
  if (lesionTierWord(l) !== 'last assessed' || !l.latest_risk_taken_at) return null
  return `assessed ${l.latest_risk_taken_at.slice(0, 10)}`
}

/**
 * The lesion's rise (`risk_rose`: its last two assessed visits) said in words when no change
 * of the timeline shows it, i.e. a refused photo lies between those two visits; null otherwise.
 */
export function riseAcrossRefused(
  rose: boolean,
  visits: Pick<Visit, 'id' | 'taken_at' | 'result'>[],
  changes: Pick<Change, 'from_visit' | 'to_visit' | 'risk_rose'>[],
): string | null {
  if (!rose) return null
  const done = visits.filter((v) => v.result.risk !== 'cannot_assess')
  const [a, b] = done.slice(-2)
  if (!a || !b) return null
  if (changes.some((c) => c.from_visit === a.id && c.to_visit === b.id && c.risk_rose)) return null
  const day = (v: Pick<Visit, 'taken_at'>) => v.taken_at.slice(0, 10)
  const between = visits.indexOf(b) - visits.indexOf(a) > 1
  return `Risk rose between the assessed visits of ${day(a)} and ${day(b)}${between ? '; a photo in between could not be assessed' : ''}.`
}

/** The short badge text when the latest photo could not be assessed. */
export const RETAKE_LABEL = 'latest photo: cannot assess — retake'

/**
 * Why a lesion needs a new photo, or null: its latest visit could not be assessed. The tier the
 * page shows is then that of the last assessed visit (`latest_risk`, dated `latest_risk_taken_at`),
 * which a refused photo never replaces.
 */
export function retakeNote(
  l: Pick<Lesion, 'latest_risk' | 'latest_visit_risk' | 'latest_risk_taken_at'>,
): string | null {
  if (l.latest_visit_risk !== 'cannot_assess') return null
  const assessed = l.latest_risk && l.latest_risk !== 'cannot_assess'
  if (!assessed) return 'The latest photo could not be assessed and no earlier photo was: take it again.'
  const when = l.latest_risk_taken_at ? ` of ${l.latest_risk_taken_at.slice(0, 10)}` : ''
  return `The latest photo could not be assessed: take it again. The tier shown (${tierLabel(l.latest_risk)}) is that of the last assessed photo${when}.`
}

/** "1 lesion: latest photo cannot be assessed — retake" (null for none). */
export function retakeCount(n: number | null | undefined): string | null {
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 1) return null
  return n === 1 ? '1 lesion: latest photo cannot be assessed — retake' : `${n} lesions: latest photos cannot be assessed — retake`
}

// --- dashboard ------------------------------------------------------------------------------------

/** Whether the API withheld an estimate (null, or no value: too few cases). */
export function isWithheld(e: Estimate | null | undefined): boolean {
  return !e || typeof e.value !== 'number' || !Number.isFinite(e.value)
}

/** `count noun` with an English plural: (1, 'melanoma') -> "1 melanoma", (9, 'other') -> "9 others". */
function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`
}

/**
 * "0.833 (95% CI 0.600–1.000), 5 of 6" or "withheld: too few cases (2 melanomas)". An AUC names
 * both its sides (`sides`: the singular nouns of its positives and negatives): "n = 15: 6
 * melanomas, 9 others"; an estimate without an interval says why (its `note`).
 */
export function formatEstimate(e: Estimate | null | undefined, sides: [string, string] = ['positive', 'negative']): string {
  if (isWithheld(e)) {
    const why = typeof e?.reason === 'string' && e.reason.trim() ? e.reason.trim() : typeof e?.withheld === 'string' ? e.withheld : ''
    return why ? `withheld: ${why}` : 'withheld: too few cases'
  }
  const v = e as Estimate & { value: number }
  const ci =
    typeof v.lo === 'number' && typeof v.hi === 'number'
      ? ` (95% CI ${v.lo.toFixed(3)}–${v.hi.toFixed(3)})`
      : typeof v.note === 'string' && v.note.trim()
        ? ` (no interval: ${v.note.trim()})`
        : ''
  const both = typeof v.positives === 'number' && typeof v.negatives === 'number'
  const split = both ? `: ${counted(v.positives as number, sides[0])}, ${counted(v.negatives as number, sides[1])}` : ''
  const counts = typeof v.k === 'number' && typeof v.n === 'number' ? `, ${v.k} of ${v.n}` : typeof v.n === 'number' ? `, n = ${v.n}${split}` : ''
  return `${v.value.toFixed(3)}${ci}${counts}`
}

/** Below this many cases an estimate is shown with a small-count warning. */
export const SMALL_COUNT = 30

export function smallCount(n: number | null | undefined): boolean {
  return typeof n === 'number' && n < SMALL_COUNT
}

/** A wait in a server message said in minutes: "try again in 898 s" -> "try again in 15 min". */
export function readableWait(message: string): string {
  return message.replace(/\btry again in (\d+(?:\.\d+)?) ?(?:s|sec|seconds?)\b\.?/i, (_m, secs: string) => {
    const n = Number(secs)
    if (!Number.isFinite(n) || n < 60) return `try again in ${Math.max(1, Math.ceil(n))} s.`
    const min = Math.ceil(n / 60)
    return `try again in ${min} min.`
  })
}

/** The browser's own date as YYYY-MM-DD: the date a visit left without one is stored under
 * (the server's day is UTC, which is tomorrow or yesterday for an evening or early-morning
 * visit far from Greenwich). */
export function localDay(now: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`
}

/** A key for the diagnosis form: one form per saved version of the diagnosis (its code, method,
 * note and the day its code or method was set: a note-only edit keeps that day). */
export function diagnosisKey(d: Diagnosis | null): string {
  return d ? JSON.stringify([d.code, d.method, d.note, d.recorded_at]) : 'none'
}
