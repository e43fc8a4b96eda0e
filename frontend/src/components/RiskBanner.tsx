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

function RiskIcon({ risk }: { risk: string }) {
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
  const t = riskHeadline(risk, audience)
  const known = ['high', 'moderate', 'low', 'cannot_assess'].includes(risk)
  const cannot = risk === 'cannot_assess'
  // why it could not be assessed; non-blocking warnings (e.g. not a dermoscopic image: accuracy
  // unknown) go with a valid result, and a clinician sees the safety ones (the photo may be of
  // another lesion) beside the reason too (`resultNotes`, as the clinic's visit cards)
  const { reasons: shownFlags, warnings } = resultNotes(flags, cannot, audience)
  const other = mostProbableOther(prediction, probabilities)
  return (
    <div
      className={`risk-banner risk-${known ? risk : 'unknown'}`}
      data-testid="risk-banner"
      data-risk={risk}
    >
      <div className="risk-icon">
        <RiskIcon risk={risk} />
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
