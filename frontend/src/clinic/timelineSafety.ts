// What a result's flags say beside its tier, and which two visits "Compare two" starts with.
// Shared by the clinic's visit cards (VisitTimeline.tsx) and the Assess page's banner
// (RiskBanner.tsx), so that both follow one rule.

import type { Flag } from '../api.ts'
import type { Audience } from '../hooks.ts'

/** Non-blocking warnings that are about the patient's safety rather than the photo's quality:
 * the photo may be of another lesion (its recorded site contradicts the lesion's, or an earlier
 * visit's). A clinician must see them even when the photo cannot be assessed, where only the
 * reason it cannot would otherwise be shown (and retaking the photo would not settle them). */
export const SAFETY_WARNING_CODES: ReadonlySet<string> = new Set(['site_contradicts_lesion', 'site_contradicts_earlier_visit'])

/** Whether `flag` is a non-blocking safety warning (see `SAFETY_WARNING_CODES`; any later
 * `site_contradicts_…` code counts too). */
export function isSafetyWarning(flag: Flag): boolean {
  return flag.blocking === false && (SAFETY_WARNING_CODES.has(flag.code) || flag.code.startsWith('site_contradicts'))
}

/** The flags shown with a result: `reasons`, why it could not be assessed (its blocking flags,
 * else all its flags); `warnings`, the non-blocking warnings. With a valid result, every
 * non-blocking warning; with none, only the safety warnings, and only to a clinician (the
 * patient view keeps to why the photo could not be assessed and how to take another). */
export function resultNotes(flags: Flag[] | null | undefined, cannotAssess: boolean, audience: Audience = 'clinician'): { reasons: Flag[]; warnings: Flag[] } {
  const all = flags ?? []
  if (!cannotAssess) return { reasons: [], warnings: all.filter((f) => f.blocking === false) }
  const blocking = all.filter((f) => f.blocking !== false)
  return {
    reasons: blocking.length ? blocking : all.filter((f) => !(audience === 'clinician' && isSafetyWarning(f))),
    warnings: audience === 'clinician' ? all.filter(isSafetyWarning) : [],
  }
}

interface ComparableVisit {
  id: number
  result: { risk: string; malignant_probability?: number | null }
}

/** Whether a visit has a result to compare (it could be assessed, with a malignant share). */
export function isAssessed(v: ComparableVisit): boolean {
  return v.result.risk !== 'cannot_assess' && typeof v.result.malignant_probability === 'number'
}

/** The two visits "Compare two" starts with (`visits` oldest first; left, right): the last two
 * assessed visits; with only one assessed, that one beside the latest other visit (in date
 * order); with none, the first and the last visit. [0, 0] without visits. */
export function defaultComparePair(visits: ComparableVisit[]): [number, number] {
  if (visits.length === 0) return [0, 0]
  const assessed = visits.filter(isAssessed)
  if (assessed.length >= 2) return [assessed[assessed.length - 2].id, assessed[assessed.length - 1].id]
  if (assessed.length === 1 && visits.length >= 2) {
    const one = assessed[0]
    const last = visits[visits.length - 1]
    const other = last.id !== one.id ? last : visits[visits.length - 2]
    const i = visits.indexOf(one)
    const j = visits.indexOf(other)
    return i < j ? [one.id, other.id] : [other.id, one.id]
  }
  return [visits[0].id, visits[visits.length - 1].id]
}
