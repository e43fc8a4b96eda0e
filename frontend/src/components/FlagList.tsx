import type { Flag } from '../api.ts'
import { patientFlagText } from '../content.ts'
import { capitalize } from '../format.ts'
import type { Audience } from '../hooks.ts'

/** One flag's text: the server's message for clinicians, plain words for patients (by its code). */
export function flagText(flag: Flag, audience: Audience = 'clinician'): string {
  return audience === 'patient' ? patientFlagText(flag) : capitalize(flag.message)
}

/** A result's flags as a list of their messages (each item carries its code), or nothing. In the
 * patient view two flags that read the same (e.g. two codes without plain wording) are said once. */
export function FlagList({
  flags,
  className,
  testId,
  audience = 'clinician',
}: {
  flags: Flag[]
  className: string
  testId?: string
  audience?: Audience
}) {
  const items: { code: string; text: string }[] = []
  for (const f of flags) {
    const text = flagText(f, audience)
    if (audience === 'patient' && items.some((i) => i.text === text)) continue
    items.push({ code: f.code, text })
  }
  if (items.length === 0) return null
  return (
    <ul className={className} data-testid={testId}>
      {items.map((f, i) => (
        <li key={`${f.code}-${i}`} data-code={f.code}>
          {f.text}
        </li>
      ))}
    </ul>
  )
}
