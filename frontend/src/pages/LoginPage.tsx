import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { login } from '../clinic/api.ts'
import { requestFocus } from '../clinic/focus.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { fieldErrorProps, loginInvalid, refusedInput } from '../clinic/fieldErrors.ts'
import { useClinic } from '../clinic/session.ts'
import { useFormAction } from '../hooks.ts'

/** Sign-in for the clinic (case storage); the session is an HttpOnly cookie set by the server.
 * `resumeAs`: the session of that user ended (idle timeout) and the page they were on waits,
 * hidden, below: only they can sign back in here; `onSwitchUser` discards it for another user
 * (asking first where it holds unsaved work: `switchUser` in App.tsx).
 * `reason`: one line saying why, when the page itself hid after the idle time. */
export function LoginPage({
  resumeAs,
  reason,
  onSwitchUser,
}: { resumeAs?: string; reason?: string; onSwitchUser?: () => void } = {}) {
  const { setSession } = useClinic()
  const ids = useId()
  const [username, setUsername] = useState(resumeAs ?? '')
  const [password, setPassword] = useState('')
  const { busy, error, setError, submit } = useFormAction()
  const passwordRef = useRef<HTMLInputElement | null>(null)
  const usernameRef = useRef<HTMLInputElement | null>(null)
  // the fields the error is about (aria-invalid), until the user edits them
  const [invalid, setInvalid] = useState({ username: false, password: false })
  const errorId = `${ids}-error`

  // The session ended under the user's page: the user name is known, so the password is what to
  // type (focus was on the page now hidden, i.e. nowhere).
  useEffect(() => {
    if (resumeAs) passwordRef.current?.focus()
  }, [resumeAs])

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    if (!username.trim() || !password) {
      const bad = loginInvalid(username, password, false, Boolean(resumeAs))
      setInvalid(bad)
      setError('Enter your user name and password.')
      // after the render that ties the error to the field (aria-describedby), so that it is read out
      requestAnimationFrame(() => (bad.username ? usernameRef : passwordRef).current?.focus())
      return
    }
    setInvalid({ username: false, password: false })
    let refused = false
    await submit(
      async () => {
        try {
          const session = await login(username.trim(), password)
          requestFocus('heading', 'signed-in') // this form goes: the page's heading takes focus
          setSession(session)
        } catch (err) {
          refused = refusedInput(err, [400, 401, 422])
          throw err
        }
      },
      () => {
        setPassword('')
        // wrong credentials: the fields are in error; not when the server could not be reached
        setInvalid(refused ? loginInvalid(username, '', true, Boolean(resumeAs)) : { username: false, password: false })
        // the button that had focus was disabled while signing in: the password is what to retype
        requestAnimationFrame(() => passwordRef.current?.focus())
      },
    )
  }

  return (
    <div className="login-page" data-testid="login-page" data-resume={resumeAs ? 'true' : undefined}>
      {resumeAs ? (
        <>
          <h1 className="page-title">Your session has ended</h1>
          {reason && (
            <p className="notice" data-testid="login-idle-reason">
              {reason}
            </p>
          )}
          <p className="lead" data-testid="login-resume-note">
            The server signed you out — usually after a while without activity, so that nobody else can use this
            screen. Sign in again
            as <strong>{resumeAs}</strong> to carry on: what you had entered on the page is kept, and anything you
            were saving when this appeared was not saved yet — save it again.
          </p>
        </>
      ) : (
        <>
          <h1 className="page-title">Sign in to the clinic</h1>
          <p className="lead">
            This server stores patients, lesions and visits. Sign in with the account your clinic's administrator
            made for you. The Assess, Learn and Model pages work without signing in and store nothing.
          </p>
        </>
      )}
      <form className="card-block login-form" onSubmit={onSubmit} noValidate>
        <div className="field">
          <label htmlFor={`${ids}-user`}>User name</label>
          <input
            id={`${ids}-user`}
            autoComplete="username"
            ref={usernameRef}
            value={username}
            readOnly={Boolean(resumeAs)}
            required
            {...fieldErrorProps(error ? errorId : null, invalid.username)}
            onChange={(e) => {
              setUsername(e.target.value)
              setInvalid((v) => ({ ...v, username: false }))
            }}
            data-testid="login-username"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-pw`}>Password</label>
          <input
            id={`${ids}-pw`}
            type="password"
            ref={passwordRef}
            autoComplete="current-password"
            value={password}
            required
            {...fieldErrorProps(error ? errorId : null, invalid.password)}
            onChange={(e) => {
              setPassword(e.target.value)
              setInvalid((v) => ({ ...v, password: false }))
            }}
            data-testid="login-password"
          />
        </div>
        <ErrorBox error={error} what="Could not sign in." testId="login-error" id={errorId} />
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="login-submit">
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {resumeAs && onSwitchUser && (
          <button type="button" className="btn btn-link" onClick={onSwitchUser} data-testid="login-switch-user">
            Sign in as someone else (discards the unsaved page)
          </button>
        )}
      </form>
    </div>
  )
}
