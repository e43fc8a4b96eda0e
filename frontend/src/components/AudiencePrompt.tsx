import { useId, useRef } from 'react'
import { focusLost } from '../clinic/focus.ts'
import { useAudienceChoice, type Audience } from '../hooks.ts'

/** The question, and what the results look like until it is answered. */
export const AUDIENCE_PROMPT_QUESTION = 'Who is using dermsight?'
export const AUDIENCE_PROMPT_HINT =
  'Until you choose, results are shown in plain words for patients. You can change this later with “View” at the top of the page.'
export const AUDIENCE_PROMPT_CHOICES: { audience: Audience; label: string }[] = [
  { audience: 'clinician', label: 'I am a health professional' },
  { audience: 'patient', label: 'I am a patient or member of the public' },
]

/** After a choice the prompt (and the button pressed) is gone: focus goes to the next step, the
 * Assess page's "Choose image", unless it was put somewhere else meanwhile. */
function focusNextStep(root: Element | null): void {
  window.setTimeout(() => {
    if (!focusLost()) return
    root?.querySelector<HTMLElement>('[data-testid="file-input"]')?.focus({ preventScroll: true })
  }, 0)
}

/** The Assess page asks once per browser who is reading (the header's "View: Clinician | Patient"
 * switch is easily missed on a phone): inline above the upload, never a modal, and it takes no
 * focus on load. The answer is saved as the switch's is; the prompt is then gone for good. Until
 * then, results are shown in the Patient view (`loadAudience`). Nothing is shown once a view is
 * chosen: by this prompt, by the switch, or by signing in to the clinic. */
export function AudiencePrompt() {
  const { chosen, choose } = useAudienceChoice()
  const ids = useId()
  const ref = useRef<HTMLDivElement>(null)
  if (chosen) return null
  const pick = (a: Audience) => {
    const root = ref.current?.closest('form') ?? null
    choose(a)
    focusNextStep(root)
  }
  return (
    <div
      ref={ref}
      className="audience-prompt no-print"
      role="group"
      aria-labelledby={`${ids}-q`}
      aria-describedby={`${ids}-hint`}
      data-testid="audience-prompt"
    >
      <p id={`${ids}-q`} className="audience-prompt-question">
        {AUDIENCE_PROMPT_QUESTION}
      </p>
      <p id={`${ids}-hint`} className="hint">
        {AUDIENCE_PROMPT_HINT}
      </p>
      <div className="audience-prompt-choices">
        {AUDIENCE_PROMPT_CHOICES.map((c) => (
          <button
            key={c.audience}
            type="button"
            className="btn btn-secondary"
            onClick={() => pick(c.audience)}
            data-testid={`audience-prompt-${c.audience}`}
          >
            {c.label}
          </button>
        ))}
      </div>
    </div>
  )
}
