import type { Flag } from '../api.ts'
import { capitalize } from '../format.ts'

/** A result's flags as a list of their messages (each item carries its code), or nothing. */
export function FlagList({ flags, className, testId }: { flags: Flag[]; className: string; testId?: string }) {
  if (flags.length === 0) return null
  return (
    <ul className={className} data-testid={testId}>
      {flags.map((f) => (
        <li key={f.code} data-code={f.code}>
          {capitalize(f.message)}
        </li>
      ))}
    </ul>
  )
}
