import type { Flag } from '../api.ts'
import { PHOTO_TIPS, riskText } from '../content.ts'
import type { Audience } from '../hooks.ts'
import { FlagList } from './FlagList.tsx'
import { IconAlert, IconCheck, IconEye, IconQuestion } from './Icons.tsx'

interface Props {
  risk: string
  flags: Flag[]
  audience: Audience
  predictionName?: string
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
export function RiskBanner({ risk, flags, audience, predictionName }: Props) {
  const t = riskText(risk)
  const known = ['high', 'moderate', 'low', 'cannot_assess'].includes(risk)
  const cannot = risk === 'cannot_assess'
  const blocking = flags.filter((f) => f.blocking !== false)
  const shownFlags = cannot ? (blocking.length ? blocking : flags) : []
  // non-blocking warnings (e.g. not a dermoscopic image: accuracy unknown) go with a valid result
  const warnings = cannot ? [] : flags.filter((f) => f.blocking === false)
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
        <p className="risk-label">{audience === 'patient' ? t.patientLabel : t.label}</p>
        <p className="risk-next">{t.nextStep}</p>
        {!cannot && audience === 'clinician' && predictionName && (
          <p className="risk-pred">
            Most likely class: <strong>{predictionName}</strong>
          </p>
        )}
        <FlagList flags={warnings} className="risk-warnings" testId="risk-warnings" />
        {cannot && (
          <>
            <FlagList flags={shownFlags} className="risk-flags" />
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
