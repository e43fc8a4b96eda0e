import type { LesionClassInfo } from '../api.ts'
import { patientPercent } from '../content.ts'
import { formatProbability, sortedByProbability } from '../format.ts'
import type { Audience } from '../hooks.ts'

interface Props {
  probabilities: Record<string, number>
  classes: LesionClassInfo[]
  prediction?: string
  audience: Audience
}

/** A class's percentage as the audience reads it: tenths for clinicians, whole percentages with
 * "under 1%" / "over 99%" at the ends for patients (`patientPercent`). */
export function probText(p: number, audience: Audience): string {
  return audience === 'patient' ? patientPercent(p) : formatProbability(p)
}

/** One bar per class, highest first, with the plain name, a cancer tag and the percentage. */
export function ProbBars({ probabilities, classes, prediction, audience }: Props) {
  const byCode = new Map(classes.map((c) => [c.code, c]))
  const rows = sortedByProbability(probabilities)
  return (
    <ul
      className="prob-bars"
      aria-label={audience === 'patient' ? 'The model’s estimate for each type of spot' : 'Probability for each lesion type'}
    >
      {rows.map(([code, p]) => {
        const info = byCode.get(code)
        const name = info?.name ?? code
        const pct = probText(p, audience)
        const width = Math.max(0, Math.min(100, p * 100))
        const tag = info?.malignant ? 'cancer' : info?.premalignant ? 'pre-cancer' : null
        return (
          <li
            key={code}
            className={`prob-row${code === prediction ? ' is-top' : ''}`}
            data-testid={`prob-bar-${code}`}
            data-value={p}
          >
            <div className="prob-head">
              <span className="prob-name">
                {name}
                {audience === 'clinician' && <span className="prob-code"> ({code})</span>}
                {tag && <span className={`tag tag-${tag === 'cancer' ? 'malignant' : 'premalignant'}`}>{tag}</span>}
              </span>
              <span className="prob-pct">{pct}</span>
            </div>
            <div className="prob-track" aria-hidden="true">
              <div
                className={`prob-fill${info?.malignant ? ' is-malignant' : info?.premalignant ? ' is-premalignant' : ''}`}
                style={{ width: `${width}%` }}
              />
            </div>
            {audience === 'patient' && info?.lay && <p className="prob-lay">{info.lay}</p>}
          </li>
        )
      })}
    </ul>
  )
}
