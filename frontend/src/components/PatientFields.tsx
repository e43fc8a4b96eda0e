import { useId, type ReactNode, type Ref } from 'react'
import { SEXES, SITE_CHOICES } from '../content.ts'
import { AGE_MAX, AGE_MIN } from '../format.ts'
import { ChoiceField } from './ChoiceField.tsx'
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
  /** why the age cannot be sent (shown under the field, which is marked invalid) */
  ageError?: string | null
  /** shown under the legend (e.g. "age is kept from the previous image") */
  children?: ReactNode
  /** false: no body map under the site list (e.g. when the page shows its own lesion map) */
  bodyMap?: boolean
}

/** Age, sex and body site (list + body map) of one image: Assess page and clinic visits. */
export function PatientFields({ legend, age, sex, site, onAge, onSex, onSite, ageRef, ageError, children, bodyMap = true }: Props) {
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
            inputMode="decimal"
            min={AGE_MIN}
            max={AGE_MAX}
            step="any"
            ref={ageRef}
            value={age}
            onChange={(e) => onAge(e.target.value)}
            aria-invalid={ageError ? true : undefined}
            aria-describedby={ageError ? `${ids}-age-error` : undefined}
            data-testid="age-input"
          />
          {ageError && (
            <p className="field-error" id={`${ids}-age-error`} role="alert" data-testid="age-error">
              {ageError}
            </p>
          )}
        </div>
        <ChoiceField id={`${ids}-sex`} label="Sex" value={sex} onChange={onSex} choices={SEXES} testId="sex-select" />
      </div>
      <ChoiceField id={`${ids}-site`} label="Body site" value={site} onChange={onSite} choices={SITE_CHOICES} testId="site-select">
        {bodyMap && <p className="hint">Or tap the body map:</p>}
      </ChoiceField>
      {/* a pointer shortcut for the list above, which keyboard and screen-reader users have */}
      {bodyMap && <BodyMap value={site} onChange={onSite} pointerOnly />}
    </fieldset>
  )
}
