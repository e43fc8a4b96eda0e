import type { ReactNode } from 'react'

export interface Choice {
  value: string
  label: string
}

interface Props {
  id: string
  label: string
  value: string
  onChange: (v: string) => void
  choices: readonly Choice[]
  testId: string
  /** shown under the list (e.g. a hint) */
  children?: ReactNode
  /** the id(s) of what the list is described by (aria-describedby: e.g. a warning under it, read
   * with the list when it takes focus, already shown or not) */
  describedBy?: string
}

/** A labelled list with "Not stated" first: sex, body site, side (Assess page and clinic forms). */
export function ChoiceField({ id, label, value, onChange, choices, testId, children, describedBy }: Props) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-describedby={describedBy || undefined}
        data-testid={testId}
      >
        <option value="">Not stated</option>
        {choices.map((c) => (
          <option key={c.value} value={c.value}>
            {c.label}
          </option>
        ))}
      </select>
      {children}
    </div>
  )
}
