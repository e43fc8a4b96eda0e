import { useId, useRef, useState, type FormEvent } from 'react'
import { ApiError } from '../api.ts'
import { changePassword, type PasswordChanged } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { refusedInput } from '../clinic/fieldErrors.ts'
import { clinicHref } from '../clinic/format.ts'
import { useClinic } from '../clinic/session.ts'
import { useFormAction } from '../hooks.ts'

/** The fields of the form in error (aria-invalid), until the user edits them. */
interface Invalid {
  current: boolean
  next: boolean
  confirm: boolean
}

const NONE: Invalid = { current: false, next: false, confirm: false }

/** What the form says when it is sent as it is, or null when it can be sent: every field filled,
 * the new password typed the same twice and not the current one. */
export function passwordFormProblem(
  current: string,
  next: string,
  confirm: string,
): { message: string; invalid: Invalid } | null {
  if (!current) return { message: 'Enter your current password.', invalid: { ...NONE, current: true } }
  if (!next) return { message: 'Enter a new password.', invalid: { ...NONE, next: true } }
  if (!confirm) return { message: 'Type the new password again to confirm it.', invalid: { ...NONE, confirm: true } }
  if (next !== confirm) {
    return {
      message: 'The two new passwords are not the same: type the new password again in both fields.',
      invalid: { ...NONE, next: true, confirm: true },
    }
  }
  if (next === current) {
    return { message: 'The new password is the same as the current one: choose another one.', invalid: { ...NONE, next: true, confirm: true } }
  }
  return null
}

/** The fields a refusal from the server is about: the current password when it was wrong (a 422
 * saying so), the new one when its rules refused it (another 422); none when the request failed
 * for another reason (too many tries, server not reachable). */
export function refusedFields(err: unknown): Invalid {
  if (!refusedInput(err, [422])) return NONE
  const message = err instanceof ApiError ? err.message : ''
  return /current password/i.test(message) ? { ...NONE, current: true } : { ...NONE, next: true, confirm: true }
}

/** One line saying what changing the password did. */
export function passwordChangedMessage(r: Pick<PasswordChanged, 'sessions_ended' | 'tokens_revoked'>): string {
  const sessions =
    r.sessions_ended === 1 ? '1 other session was signed out' : `${r.sessions_ended} other sessions were signed out`
  const tokens = r.tokens_revoked === 1 ? '1 API token was revoked' : `${r.tokens_revoked} API tokens were revoked`
  return `Your password was changed. ${sessions} and ${tokens}; this browser stays signed in.`
}

/** Change your own password (`#/clinic/account`): the current one, the new one twice. */
export function ClinicAccountPage() {
  const { session, setSession } = useClinic()
  const ids = useId()
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [confirm, setConfirm] = useState('')
  const [invalid, setInvalid] = useState<Invalid>(NONE)
  const [done, setDone] = useState<string | null>(null)
  const { busy, error, setError, submit } = useFormAction()
  const currentRef = useRef<HTMLInputElement | null>(null)
  const nextRef = useRef<HTMLInputElement | null>(null)
  const confirmRef = useRef<HTMLInputElement | null>(null)
  const doneRef = useRef<HTMLParagraphElement | null>(null)
  const errorId = `${ids}-error`
  const hintId = `${ids}-hint`

  /** After the render that ties the message to the fields (aria-describedby): the first field in
   * error takes focus, so that the message is read with it. */
  const focusFirst = (bad: Invalid) =>
    requestAnimationFrame(() => (bad.current ? currentRef : bad.next ? nextRef : confirmRef).current?.focus())

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    setDone(null)
    const problem = passwordFormProblem(current, next, confirm)
    if (problem) {
      setInvalid(problem.invalid)
      setError(problem.message)
      focusFirst(problem.invalid)
      return
    }
    setInvalid(NONE)
    let bad = NONE
    await submit(
      async () => {
        try {
          const changed = await changePassword(current, next)
          const { user, csrf_token, idle_minutes } = changed
          setSession({ user, csrf_token, idle_minutes }) // the new session's CSRF token
          setCurrent('')
          setNext('')
          setConfirm('')
          setDone(passwordChangedMessage(changed))
          // the button that had focus was disabled while saving: the message takes it
          requestAnimationFrame(() => doneRef.current?.focus())
        } catch (err) {
          bad = refusedFields(err)
          throw err
        }
      },
      () => {
        setInvalid(bad)
        if (bad.current) setCurrent('')
        focusFirst(bad.current || bad.next || bad.confirm ? bad : { ...NONE, current: true })
      },
    )
  }

  /** aria-describedby of a field: the hint (where it has one) and the message while one is shown. */
  const describedBy = (...parts: (string | null)[]) => parts.filter(Boolean).join(' ') || undefined
  const errorRef = error ? errorId : null

  return (
    <div className="clinic-page" data-testid="account-page">
      <h1 className="page-title">Change your password</h1>
      <p className="lead">
        Signed in as <strong>{session?.user.username}</strong>. If an administrator chose your password for you,
        change it here so that only you know it; change it too if you think someone else may know it.
      </p>
      <p>
        Changing it signs you out everywhere else (other browsers and devices) and revokes your API tokens; this browser
        stays signed in. Your API tokens are listed on the <a href={clinicHref.admin}>Account</a> page: create new ones
        there if a script needs one.
      </p>
      {/* no live region: the message takes the focus (the button pressed was disabled while
          saving), and is read then, once */}
      <div data-testid="account-status">
        {done && (
          <p className="notice" tabIndex={-1} ref={doneRef} data-testid="account-done">
            {done}
          </p>
        )}
      </div>
      <form className="card-block login-form" onSubmit={onSubmit} noValidate>
        <div className="field">
          <label htmlFor={`${ids}-current`}>Current password</label>
          <input
            id={`${ids}-current`}
            type="password"
            autoComplete="current-password"
            ref={currentRef}
            value={current}
            required
            aria-invalid={invalid.current || undefined}
            aria-describedby={describedBy(errorRef)}
            onChange={(e) => {
              setCurrent(e.target.value)
              setInvalid((v) => ({ ...v, current: false }))
            }}
            data-testid="account-current"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-new`}>New password</label>
          <input
            id={`${ids}-new`}
            type="password"
            autoComplete="new-password"
            ref={nextRef}
            value={next}
            required
            aria-invalid={invalid.next || undefined}
            aria-describedby={describedBy(hintId, errorRef)}
            onChange={(e) => {
              setNext(e.target.value)
              setInvalid((v) => ({ ...v, next: false }))
            }}
            data-testid="account-new"
          />
          <p className="muted" id={hintId}>
            8 to 256 characters, hard to guess: for example four or five unrelated words, or a password manager's
            random one. Not your user name.
          </p>
        </div>
        <div className="field">
          <label htmlFor={`${ids}-confirm`}>New password again</label>
          <input
            id={`${ids}-confirm`}
            type="password"
            autoComplete="new-password"
            ref={confirmRef}
            value={confirm}
            required
            aria-invalid={invalid.confirm || undefined}
            aria-describedby={describedBy(errorRef)}
            onChange={(e) => {
              setConfirm(e.target.value)
              setInvalid((v) => ({ ...v, confirm: false }))
            }}
            data-testid="account-confirm"
          />
        </div>
        {/* quiet: read as the focus goes to the field it describes (aria-describedby) */}
        <ErrorBox quiet error={error} what="Password not changed." testId="account-error" id={errorId} />
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="account-submit">
          {busy ? 'Changing the password…' : 'Change password'}
        </button>
      </form>
    </div>
  )
}
