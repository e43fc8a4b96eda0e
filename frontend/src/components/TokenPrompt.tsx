import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { getToken, setToken } from '../api.ts'

interface Props {
  onSaved: () => void
  onDismiss: () => void
}

/** Whether focus is nowhere the user put it: on the page itself, or on the <main> landmark the
 * app moves it to (a new page, a token just saved). */
function focusIsIdle(): boolean {
  const active = document.activeElement
  return !active || active === document.body || active.tagName === 'MAIN'
}

/** Shown after a 401: the token is kept in sessionStorage (this tab only) and sent as a bearer. */
export function TokenPrompt({ onSaved, onDismiss }: Props) {
  const [value, setValue] = useState('')
  const id = useId()
  const inputRef = useRef<HTMLInputElement | null>(null)
  const hadToken = Boolean(getToken())

  // The page cannot be used without the token: when it first asks, and again when the token just
  // saved was refused (the Save button is gone), focus goes to the field, which reads the heading
  // (why it asks) and the hint; never taken from a field the user is in.
  useEffect(() => {
    if (focusIsIdle()) inputRef.current?.focus()
  }, [])

  const submit = (e: FormEvent) => {
    e.preventDefault()
    const t = value.trim()
    if (!t) return
    setToken(t)
    setValue('')
    onSaved()
  }
  return (
    <section className="token-prompt" aria-labelledby={`${id}-title`} data-testid="token-prompt">
      <form onSubmit={submit} className="container token-form">
        <h2 id={`${id}-title`} className="token-title">
          {hadToken ? 'The API token was not accepted' : 'This server needs an API token'}
        </h2>
        <div className="token-row">
          <label htmlFor={id}>API token</label>
          <input
            id={id}
            ref={inputRef}
            type="password"
            autoComplete="off"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            aria-describedby={`${id}-title ${id}-hint`}
            data-testid="token-input"
          />
          <button type="submit" className="btn btn-primary" data-testid="token-save">
            Save token
          </button>
          <button type="button" className="btn btn-ghost" onClick={onDismiss} data-testid="token-dismiss">
            Dismiss
          </button>
        </div>
        <p className="hint" id={`${id}-hint`}>
          Kept only in this browser tab (session storage) and sent as “Authorization: Bearer”.
        </p>
      </form>
    </section>
  )
}
