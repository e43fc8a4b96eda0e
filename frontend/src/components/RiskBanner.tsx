import type { Flag } from '../api.ts'
import { PHOTO_TIPS, SUGGESTED_CLASS, riskHeadline } from '../content.ts'
import { formatProbability, mostProbableOther } from '../format.ts'
import type { Audience } from '../hooks.ts'
import { resultNotes } from '../clinic/timelineSafety.ts'
import { FlagList } from './FlagList.tsx'
import { IconAlert, IconCheck, IconEye, IconQuestion } from './Icons.tsx'

interface Props {
  risk: string
  flags: Flag[]
  audience: Audience
  predictionName?: string
  /** the suggested class's code and the class probabilities: to say when the most probable
   * class is another one */
  prediction?: string
  probabilities?: Record<string, number>
  /** a class's display name by code */
  nameOf?: (code: string) => string
}

/** Non-blocking flags that say the result's reliability is not known (the model was not tested on
 * such images): the server's `not_dermoscopic` (an ordinary photo, not a dermatoscope picture).
 * `out_of_distribution` is blocking (no result at all); `compressed` says only "may be less
 * reliable". */
export const RELIABILITY_UNKNOWN_CODES: ReadonlySet<string> = new Set(['not_dermoscopic'])

/** Whether a valid result carries a flag saying its reliability is not known (see
 * `RELIABILITY_UNKNOWN_CODES`). */
export function reliabilityUnknown(risk: string, flags: Flag[] | null | undefined): boolean {
  return risk !== 'cannot_assess' && (flags ?? []).some((f) => RELIABILITY_UNKNOWN_CODES.has(f.code))
}

/** The patient view's headline in place of "Lower risk" when the result's reliability is not
 * known: a worried reader must not take a green tick on an untested kind of photo as "it is fine". */
export const UNCERTAIN_HEADLINE = {
  label: 'Result uncertain',
  nextStep: 'It cannot be relied on for this kind of photo',
}

/** Whether the patient view shows `UNCERTAIN_HEADLINE` instead of the tier: a reassuring (low)
 * tier whose reliability is not known. A higher tier stays: its advice (see a doctor) is the safe
 * one either way. */
export function patientUncertain(risk: string, flags: Flag[] | null | undefined, audience: Audience): boolean {
  return audience === 'patient' && risk === 'low' && reliabilityUnknown(risk, flags)
}

function RiskIcon({ risk, uncertain }: { risk: string; uncertain: boolean }) {
  // no reassuring tick on a result whose reliability is not known
  if (uncertain && risk === 'low') return <IconQuestion size={36} />
  switch (risk) {
    case 'high':
      return <IconAlert size={36} />
    case 'moderate':
      return <IconEye size={36} />
    case 'low':
      return <IconCheck size={36} />
    default:
      return <IconQuestion size={36} />
  }
}

/** The headline of a result: colour + icon + words (never colour alone). */
export function RiskBanner({ risk, flags, audience, predictionName, prediction, probabilities = {}, nameOf = (c) => c }: Props) {
  const unsure = reliabilityUnknown(risk, flags)
  const neutral = patientUncertain(risk, flags, audience)
  const t = neutral ? UNCERTAIN_HEADLINE : riskHeadline(risk, audience)
  const known = ['high', 'moderate', 'low', 'cannot_assess'].includes(risk)
  const cannot = risk === 'cannot_assess'
  // why it could not be assessed; non-blocking warnings (e.g. not a dermoscopic image: accuracy
  // unknown) go with a valid result, and a clinician sees the safety ones (the photo may be of
  // another lesion) beside the reason too (`resultNotes`, as the clinic's visit cards)
  const { reasons: shownFlags, warnings } = resultNotes(flags, cannot, audience)
  const other = mostProbableOther(prediction, probabilities)
  return (
    <div
      className={`risk-banner risk-${known && !neutral ? risk : 'unknown'}`}
      data-testid="risk-banner"
      data-risk={risk}
      data-uncertain={unsure ? 'true' : undefined}
    >
      <div className="risk-icon">
        <RiskIcon risk={risk} uncertain={unsure} />
      </div>
      <div className="risk-body">
        <p className="risk-label">{t.label}</p>
        <p className="risk-next">{t.nextStep}</p>
        {!cannot && audience === 'clinician' && predictionName && (
          <p className="risk-pred">
            {SUGGESTED_CLASS}: <strong>{predictionName}</strong>
            {other && (
              <span className="risk-pred-note" data-testid="most-probable-other">
                {' '}
                (by the model’s decision rule, not the highest bar: most probable is {nameOf(other[0])},{' '}
                {formatProbability(other[1])})
              </span>
            )}
          </p>
        )}
        <FlagList flags={warnings} className="risk-warnings" testId="risk-warnings" audience={audience} />
        {cannot && (
          <>
            <FlagList flags={shownFlags} className="risk-flags" audience={audience} />
            <p className="risk-tips-title">How to take a better image:</p>
            <ul className="risk-tips">
              {PHOTO_TIPS.map((tip) => (
                <li key={tip}>{tip}</li>
              ))}
            </ul>
          </>
        )}
      </div>
    </div>
  )
}
