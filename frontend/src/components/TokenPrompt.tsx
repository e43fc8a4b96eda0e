import { useId, useState, type FormEvent } from 'react'
import { getToken, setToken } from '../api.ts'

interface Props {
  onSaved: () => void
  onDismiss: () => void
}

/** Shown after a 401: the token is kept in sessionStorage (this tab only) and sent as a bearer. */
export function TokenPrompt({ onSaved, onDismiss }: Props) {
  const [value, setValue] = useState('')
  const id = useId()
  const hadToken = Boolean(getToken())
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
            type="password"
            autoComplete="off"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            data-testid="token-input"
          />
          <button type="submit" className="btn btn-primary" data-testid="token-save">
            Save token
          </button>
          <button type="button" className="btn btn-ghost" onClick={onDismiss}>
            Dismiss
          </button>
        </div>
        <p className="hint">Kept only in this browser tab (session storage) and sent as “Authorization: Bearer”.</p>
      </form>
    </section>
  )
}
