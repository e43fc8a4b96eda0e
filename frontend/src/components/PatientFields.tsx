import { useId, type ReactNode, type Ref } from 'react'
import { SEXES, SITES, SITE_LABELS } from '../content.ts'
import { BodyMap } from './BodyMap.tsx'

interface Props {
  legend: string
  age: string
  sex: string
  site: string
  onAge: (v: string) => void
  onSex: (v: string) => void
  onSite: (v: string) => void
  ageRef?: Ref<HTMLInputElement>
  /** shown under the legend (e.g. "age is kept from the previous image") */
  children?: ReactNode
  /** false: no body map under the site list (e.g. when the page shows its own lesion map) */
  bodyMap?: boolean
}

/** Age, sex and body site (list + body map) of one image: Assess page and clinic visits. */
export function PatientFields({ legend, age, sex, site, onAge, onSex, onSite, ageRef, children, bodyMap = true }: Props) {
  const ids = useId()
  return (
    <fieldset className="demographics">
      <legend>{legend}</legend>
      {children}
      <div className="field-row">
        <div className="field">
          <label htmlFor={`${ids}-age`}>Age (years)</label>
          <input
            id={`${ids}-age`}
            type="number"
            inputMode="numeric"
            min={0}
            max={120}
            step={1}
            ref={ageRef}
            value={age}
            onChange={(e) => onAge(e.target.value)}
            data-testid="age-input"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-sex`}>Sex</label>
          <select id={`${ids}-sex`} value={sex} onChange={(e) => onSex(e.target.value)} data-testid="sex-select">
            <option value="">Not stated</option>
            {SEXES.map((s) => (
              <option key={s.value} value={s.value}>
                {s.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <div className="field">
        <label htmlFor={`${ids}-site`}>Body site</label>
        <select id={`${ids}-site`} value={site} onChange={(e) => onSite(e.target.value)} data-testid="site-select">
          <option value="">Not stated</option>
          {SITES.map((s) => (
            <option key={s} value={s}>
              {SITE_LABELS[s]}
            </option>
          ))}
        </select>
        {bodyMap && <p className="hint">Or tap the body map:</p>}
      </div>
      {bodyMap && <BodyMap value={site} onChange={onSite} />}
    </fieldset>
  )
}
