import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import {
  createToken,
  createUser,
  deleteToken,
  listAllTokens,
  listAudit,
  listTokens,
  listUsers,
  revokeAnyToken,
} from '../clinic/api.ts'
import type { ApiError } from '../api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { fieldErrorProps, refusedInput } from '../clinic/fieldErrors.ts'
import { focusLost } from '../clinic/focus.ts'
import { useClinic, useLoad } from '../clinic/session.ts'
import { TOKEN_DAYS, type ApiTokenInfo, type AuditEntry, type AuditQuery, type NewApiToken, type Role } from '../clinic/types.ts'
import { clinicHref } from '../clinic/format.ts'
import { formatTimestamp } from '../format.ts'
import { EmptyRow, TableWrap } from '../components/TableWrap.tsx'
import { useFormAction } from '../hooks.ts'

/** What the Expires column adds to a token's date: that it has expired, or in how many days it
 * will (within the server's 7 days), or nothing. */
export function expiryNote(t: Pick<ApiTokenInfo, 'expired' | 'expires_soon' | 'expires_in_days'>): string | null {
  if (t.expired) return 'expired: make a new token'
  if (!t.expires_soon) return null
  const days = t.expires_in_days ?? 0
  if (days < 1) return 'expires within a day'
  return `expires in ${days} day${days === 1 ? '' : 's'}`
}

/** The field of "Add user" a refusal is about: the server's password messages start with "a /
 * the / this password"; the others (a taken name, 409, or an invalid one) are about the user
 * name, which a message may quote (a user named "password1"). */
export function userErrorField(message: string, status?: number): 'username' | 'password' {
  if (status === 409) return 'username'
  return /^(a|the|this) password\b/i.test(message.trim()) ? 'password' : 'username'
}

/** The field of the token form a refusal is about: the days, or the name. */
export function tokenErrorField(message: string): 'name' | 'days' {
  return /\bdays?\b/i.test(message) ? 'days' : 'name'
}

/** The `before` of the next, older page of the audit log: the last event's id when the page was
 * full (there may be more), else null (the log's start is reached). */
export function olderCursor(page: readonly AuditEntry[], limit: number): number | null {
  const last = page[page.length - 1]
  return page.length >= limit && last?.id !== undefined ? last.id : null
}

/** A token's Expires cell: the date and what `expiryNote` says. */
export function TokenExpiry({ token }: { token: Pick<ApiTokenInfo, 'expires_at' | 'expired' | 'expires_soon' | 'expires_in_days'> }) {
  const note = expiryNote(token)
  return (
    <>
      {formatTimestamp(token.expires_at)}
      {note && <strong> ({note})</strong>}
    </>
  )
}

/** Whether focus is nowhere useful once an action is over: on <body> or gone (focusLost), or on
 * the page's <main> (tabindex=-1), where the second press of a double click puts it: its mousedown
 * lands on the button the first press disabled and focuses the nearest focusable element around it. */
export function actionFocusLost(): boolean {
  if (focusLost()) return true
  const active = document.activeElement
  return !!active && active.tagName === 'MAIN'
}

/**
 * A section's actions (create, delete, revoke), one at a time: `useFormAction`'s busy flag and
 * error, and which action runs (`doing`, for its button's wording). The section's buttons are
 * disabled while one runs, so a double click sends one request. A browser moves focus off a
 * button it disables (to <body>, or to <main> on a double click): once the action is over, the
 * button pressed takes it back when the action put it nowhere else and the button is still in the
 * page.
 */
function useSectionAction(): {
  busy: boolean
  doing: string | null
  error: string | null
  setError: (e: string | null) => void
  run: (what: string, button: HTMLElement | null, action: () => Promise<void>) => Promise<void>
} {
  const { busy, error, setError, submit } = useFormAction()
  const [doing, setDoing] = useState<string | null>(null)
  const pressed = useRef<HTMLElement | null>(null)
  useEffect(() => {
    if (busy) return
    const button = pressed.current
    pressed.current = null
    if (button?.isConnected && actionFocusLost()) button.focus()
  }, [busy])
  const run = async (what: string, button: HTMLElement | null, action: () => Promise<void>) => {
    setDoing(what)
    pressed.current = button
    await submit(action)
    setDoing(null)
  }
  return { busy, doing: busy ? doing : null, error, setError, run }
}

function Tokens() {
  const ids = useId()
  const tokens = useLoad(listTokens, 'tokens')
  const [name, setName] = useState('')
  const [days, setDays] = useState(String(TOKEN_DAYS.default))
  const [made, setMade] = useState<NewApiToken | null>(null)
  const { busy, doing, error, setError, run } = useSectionAction()
  // the field the form's error is about, marked invalid and focused
  const [badField, setBadField] = useState<'name' | 'days' | null>(null)
  const nameRef = useRef<HTMLInputElement | null>(null)
  const daysRef = useRef<HTMLInputElement | null>(null)
  const createRef = useRef<HTMLButtonElement | null>(null)
  const formErrorId = `${ids}-form-error`
  // "Token “x” deleted.", said in the section's status line
  const [deleted, setDeleted] = useState<string | null>(null)
  const headingRef = useRef<HTMLHeadingElement | null>(null)

  const markField = (field: 'name' | 'days' | null) => {
    setBadField(field)
    if (field) requestAnimationFrame(() => (field === 'name' ? nameRef : daysRef).current?.focus())
  }
  const refuse = (message: string, field: 'name' | 'days' | null) => {
    setError(message)
    markField(field)
  }

  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    if (busy) return
    setDeleted(null)
    if (!name.trim()) {
      refuse('Give the token a name (e.g. the script or device that uses it).', 'name')
      return
    }
    const lifetime = Number(days)
    if (!Number.isInteger(lifetime) || lifetime < TOKEN_DAYS.min || lifetime > TOKEN_DAYS.max) {
      refuse(`Give the number of days the token works, ${TOKEN_DAYS.min} to ${TOKEN_DAYS.max}.`, 'days')
      return
    }
    setBadField(null)
    await run('create', createRef.current, async () => {
      try {
        setMade(await createToken(name.trim(), lifetime))
      } catch (err) {
        // the message becomes the form's error; the field it is about is marked
        markField(refusedInput(err) ? tokenErrorField((err as Error).message) : null)
        throw err
      }
      setName('')
      setDays(String(TOKEN_DAYS.default))
      tokens.reload()
    })
  }
  const onDelete = async (button: HTMLElement, id: number, tokenName: string) => {
    if (busy) return
    setBadField(null)
    setDeleted(null)
    await run(`delete-${id}`, button, async () => {
      await deleteToken(id)
      setMade(null)
      setDeleted(`Token “${tokenName}” deleted.`)
      // its Delete button goes with its row: focus the section, not <body>
      headingRef.current?.focus()
      tokens.reload()
    })
  }

  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="tokens-section">
      <h2 id={`${ids}-h`} ref={headingRef} tabIndex={-1}>
        Your API tokens
      </h2>
      <p className="hint">
        For scripts that use the API as you (<code>Authorization: Bearer …</code>). A token is shown once, when it is
        made; delete it when it is no longer used. It stops working after the days chosen ({TOKEN_DAYS.min} to{' '}
        {TOKEN_DAYS.max}); then make a new one.
      </p>
      <form className="inline-form" onSubmit={onCreate} noValidate>
        <div className="field">
          <label htmlFor={`${ids}-name`}>Token name</label>
          <input
            id={`${ids}-name`}
            ref={nameRef}
            value={name}
            maxLength={100}
            onChange={(e) => setName(e.target.value)}
            {...fieldErrorProps(error && badField ? formErrorId : null, badField === 'name')}
            data-testid="token-name"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-days`}>Works for (days)</label>
          <input
            id={`${ids}-days`}
            ref={daysRef}
            type="number"
            inputMode="numeric"
            min={TOKEN_DAYS.min}
            max={TOKEN_DAYS.max}
            step={1}
            value={days}
            onChange={(e) => setDays(e.target.value)}
            {...fieldErrorProps(error && badField ? formErrorId : null, badField === 'days')}
            data-testid="token-days"
          />
        </div>
        <button type="submit" className="btn btn-primary" ref={createRef} disabled={busy} data-testid="token-create">
          {doing === 'create' ? 'Creating…' : 'Create token'}
        </button>
      </form>
      {made && (
        <div className="notice" role="status">
          <p>
            Token “{made.name}”: copy it now, it will not be shown again. It works until{' '}
            {formatTimestamp(made.expires_at)}.
          </p>
          <code className="token-once" data-testid="new-token">
            {made.token}
          </code>
        </div>
      )}
      <div role="status" aria-live="polite" data-testid="token-status">
        {deleted && <p className="hint">{deleted}</p>}
      </div>
      <ErrorBox error={error} id={formErrorId} testId="token-error" />
      <ErrorBox error={tokens.error} />
      {tokens.data?.length === 0 ? (
        <p className="muted" data-testid="token-empty">
          No tokens yet.
        </p>
      ) : (
        <TableWrap>
          <table className="data-table" aria-labelledby={`${ids}-h`} data-testid="token-list">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {(tokens.data ?? []).map((t) => (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td>{formatTimestamp(t.created_at)}</td>
                  <td>{t.last_used_at ? formatTimestamp(t.last_used_at) : 'never'}</td>
                  <td data-testid={`token-expires-${t.id}`}>
                    <TokenExpiry token={t} />
                  </td>
                  <td>
                    <button
                      type="button"
                      className="btn-link row-action"
                      disabled={busy}
                      onClick={(e) => void onDelete(e.currentTarget, t.id, t.name)}
                      aria-label={doing === `delete-${t.id}` ? `Deleting token ${t.name}…` : `Delete token ${t.name}`}
                      data-testid={`token-delete-${t.id}`}
                    >
                      {doing === `delete-${t.id}` ? 'Deleting…' : 'Delete'}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableWrap>
      )}
    </section>
  )
}

function Users() {
  const ids = useId()
  const users = useLoad(listUsers, 'users')
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [role, setRole] = useState<Role>('clinician')
  const { busy, error, setError, run } = useSectionAction()
  const [badField, setBadField] = useState<'username' | 'password' | null>(null)
  const usernameRef = useRef<HTMLInputElement | null>(null)
  const passwordRef = useRef<HTMLInputElement | null>(null)
  const createRef = useRef<HTMLButtonElement | null>(null)
  const formErrorId = `${ids}-form-error`
  const markField = (field: 'username' | 'password' | null) => {
    setBadField(field)
    if (field) requestAnimationFrame(() => (field === 'username' ? usernameRef : passwordRef).current?.focus())
  }
  const refuse = (message: string, field: 'username' | 'password' | null) => {
    setError(message)
    markField(field)
  }
  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    if (busy) return
    if (!username.trim()) {
      refuse('Enter a user name.', 'username')
      return
    }
    if (!password) {
      refuse('Enter a password.', 'password')
      return
    }
    setBadField(null)
    await run('create', createRef.current, async () => {
      try {
        await createUser(username.trim(), password, role)
      } catch (err) {
        // the message becomes the form's error; the field it is about is marked
        markField(refusedInput(err) ? userErrorField((err as Error).message, (err as ApiError).status) : null)
        throw err
      }
      setUsername('')
      setPassword('')
      users.reload()
    })
  }
  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="users-section">
      <h2 id={`${ids}-h`}>Users</h2>
      <form className="inline-form" onSubmit={onCreate} noValidate>
        <div className="field">
          <label htmlFor={`${ids}-u`}>User name</label>
          <input
            id={`${ids}-u`}
            ref={usernameRef}
            value={username}
            autoComplete="off"
            onChange={(e) => setUsername(e.target.value)}
            {...fieldErrorProps(error && badField ? formErrorId : null, badField === 'username')}
            data-testid="user-username"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-p`}>Password</label>
          <input
            id={`${ids}-p`}
            ref={passwordRef}
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            {...fieldErrorProps(error && badField ? formErrorId : null, badField === 'password')}
            data-testid="user-password"
          />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-r`}>Role</label>
          <select id={`${ids}-r`} value={role} onChange={(e) => setRole(e.target.value as Role)} data-testid="user-role">
            <option value="clinician">Clinician</option>
            <option value="admin">Admin</option>
          </select>
        </div>
        <button type="submit" className="btn btn-primary" ref={createRef} disabled={busy} data-testid="user-create">
          {busy ? 'Adding…' : 'Add user'}
        </button>
      </form>
      <ErrorBox error={error} id={formErrorId} testId="user-error" />
      <ErrorBox error={users.error} />
      <table className="data-table" aria-labelledby={`${ids}-h`} data-testid="user-list">
        <thead>
          <tr>
            <th scope="col">User</th>
            <th scope="col">Role</th>
          </tr>
        </thead>
        <tbody>
          {(users.data ?? []).map((u) => (
            <tr key={u.id} data-testid={`user-row-${u.username}`}>
              <td>{u.username}</td>
              <td>{u.role}</td>
            </tr>
          ))}
          {users.data?.length === 0 && <EmptyRow columns={2} text="No users." testId="user-empty" />}
        </tbody>
      </table>
    </section>
  )
}

/** Every user's API tokens (admin): who holds which, until when; revoke one. */
function AllTokens() {
  const ids = useId()
  const tokens = useLoad(listAllTokens, 'all-tokens')
  const { busy, doing, error, setError, run } = useSectionAction()
  const [done, setDone] = useState<string | null>(null)
  const headingRef = useRef<HTMLHeadingElement | null>(null)
  const onRevoke = async (button: HTMLElement, id: number, label: string) => {
    if (busy) return
    setError(null)
    setDone(null)
    if (!window.confirm(`Revoke ${label}? A script that uses it stops working.`)) return
    await run(`revoke-${id}`, button, async () => {
      await revokeAnyToken(id)
      setDone(`${label} revoked.`)
      headingRef.current?.focus()
      tokens.reload()
    })
  }
  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="all-tokens-section">
      <h2 id={`${ids}-h`} ref={headingRef} tabIndex={-1}>
        All users’ API tokens
      </h2>
      <p className="hint">Every token, revoked ones too (never the token itself). Revoking one is recorded in the audit log.</p>
      <div role="status" aria-live="polite" data-testid="all-tokens-status">
        {done && <p className="hint">{done}</p>}
      </div>
      <ErrorBox error={error ?? tokens.error} />
      <TableWrap>
        <table className="data-table" aria-labelledby={`${ids}-h`} data-testid="all-token-list">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Name</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">Revoked</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(tokens.data ?? []).map((t) => (
              <tr key={t.id} data-testid={`all-token-${t.id}`}>
                <td>{t.user}</td>
                <td>{t.name}</td>
                <td>{formatTimestamp(t.created_at)}</td>
                <td>{t.last_used_at ? formatTimestamp(t.last_used_at) : 'never'}</td>
                <td>{t.revoked_at ? formatTimestamp(t.expires_at) : <TokenExpiry token={t} />}</td>
                <td>{t.revoked_at ? formatTimestamp(t.revoked_at) : '—'}</td>
                <td>
                  {!t.revoked_at && (
                    <button
                      type="button"
                      className="btn-link row-action"
                      disabled={busy}
                      onClick={(e) => void onRevoke(e.currentTarget, t.id, `${t.user}’s token “${t.name}”`)}
                      aria-label={doing === `revoke-${t.id}` ? `Revoking ${t.user}’s token ${t.name}…` : `Revoke ${t.user}’s token ${t.name}`}
                      data-testid={`all-token-revoke-${t.id}`}
                    >
                      {doing === `revoke-${t.id}` ? 'Revoking…' : 'Revoke'}
                    </button>
                  )}
                </td>
              </tr>
            ))}
            {tokens.data?.length === 0 && <EmptyRow columns={7} text="No API tokens yet." testId="all-tokens-empty" />}
          </tbody>
        </table>
      </TableWrap>
    </section>
  )
}

/** The audit log's page size in the admin page */
export const AUDIT_PAGE = 100

/** Numbers the requests of one list: `start()` gives the new request a check that is true
 * only while no later request was started, so an answer to an outdated query (an older page
 * of the previous filter, a filter replaced meanwhile) is dropped, never shown. */
export function latestRequest(): { start: () => () => boolean } {
  let last = 0
  return {
    start: () => {
      const mine = ++last
      return () => mine === last
    },
  }
}

function Audit() {
  const ids = useId()
  // the filters being typed, and those applied (a new search starts again at the newest event)
  const [userText, setUserText] = useState('')
  const [patientText, setPatientText] = useState('')
  const [applied, setApplied] = useState<AuditQuery>({})
  const [filterError, setFilterError] = useState<string | null>(null)
  const [entries, setEntries] = useState<AuditEntry[]>([])
  const [older, setOlder] = useState<number | null>(null)
  const [loading, setLoading] = useState(false)
  const [error, setError] = useState<Error | null>(null)
  const patientRef = useRef<HTMLInputElement | null>(null)
  const filterErrorId = `${ids}-filter-error`

  // the answer to an outdated query (a page of the filter replaced meanwhile) is dropped
  const requests = useRef(latestRequest())

  const load = async (query: AuditQuery, before: number | undefined, append: boolean) => {
    const current = requests.current.start()
    setLoading(true)
    setError(null)
    try {
      const page = await listAudit({ ...query, limit: AUDIT_PAGE, before })
      if (!current()) return
      setEntries((had) => (append ? [...had, ...page] : page))
      setOlder(olderCursor(page, AUDIT_PAGE))
    } catch (err) {
      if (current()) setError(err as Error)
    } finally {
      if (current()) setLoading(false)
    }
  }
  useEffect(() => {
    // a new filter: its newest page (`load` is a new closure every render)
    void load(applied, undefined, false)
  }, [applied])

  const onFilter = (e: FormEvent) => {
    e.preventDefault()
    const p = patientText.trim()
    if (p && !/^[1-9][0-9]{0,9}$/.test(p)) {
      setFilterError('The patient is given by the id the patient page shows (a whole number, e.g. 12).')
      requestAnimationFrame(() => patientRef.current?.focus())
      return
    }
    setFilterError(null)
    setApplied({ user: userText.trim() || undefined, patient: p ? Number(p) : undefined })
  }
  const filtered = Boolean(applied.user || applied.patient)

  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="audit-section">
      <h2 id={`${ids}-h`}>Audit log</h2>
      <p className="hint">
        Who created, viewed, exported or deleted what: ids and times only, never images or demographics. Newest first,{' '}
        {AUDIT_PAGE} at a time. A patient’s events (their records, images, exports) are found by the patient’s id, also after
        the patient’s deletion; events logged by releases before this one carry no patient and are not found this way.
      </p>
      <form className="inline-form" onSubmit={onFilter} noValidate data-testid="audit-filter">
        <div className="field">
          <label htmlFor={`${ids}-user`}>User name</label>
          <input id={`${ids}-user`} value={userText} autoComplete="off" maxLength={64} onChange={(e) => setUserText(e.target.value)} data-testid="audit-user" />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-patient`}>Patient id</label>
          <input
            id={`${ids}-patient`}
            ref={patientRef}
            inputMode="numeric"
            value={patientText}
            onChange={(e) => setPatientText(e.target.value)}
            {...fieldErrorProps(filterError ? filterErrorId : null, Boolean(filterError))}
            data-testid="audit-patient"
          />
        </div>
        <button type="submit" className="btn" data-testid="audit-apply">
          Show events
        </button>
      </form>
      <ErrorBox error={filterError} id={filterErrorId} testId="audit-filter-error" />
      <ErrorBox error={error} />
      {!loading && !error && entries.length === 0 && (
        <p className="muted" data-testid="audit-empty">
          {filtered ? 'No events match.' : 'No events yet.'}
        </p>
      )}
      <TableWrap>
        <table className="data-table" aria-labelledby={`${ids}-h`} data-testid="audit-log">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">User</th>
              <th scope="col">Action</th>
              <th scope="col">Object</th>
              <th scope="col">Patient</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((a, i) => (
              <tr key={a.id ?? `i${i}`}>
                <td>{formatTimestamp(a.at)}</td>
                <td>{a.user ?? '—'}</td>
                <td>{a.action}</td>
                <td>{a.object_type ? `${a.object_type}${a.object_id !== null && a.object_id !== undefined ? ` ${a.object_id}` : ''}` : '—'}</td>
                <td>{a.patient_id ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      {older !== null && (
        <button type="button" className="btn" disabled={loading} onClick={() => void load(applied, older, true)} data-testid="audit-older">
          Older events
        </button>
      )}
    </section>
  )
}

/** Account (API tokens) for everyone; users and the audit log for admins. */
export function ClinicAdminPage() {
  const { session } = useClinic()
  const isAdmin = session?.user.role === 'admin'
  return (
    <div className="clinic-page" data-testid="admin-page">
      <h1 className="page-title">{isAdmin ? 'Account and administration' : 'Account'}</h1>
      <p className="lead">
        Signed in as <strong>{session?.user.username}</strong> ({session?.user.role}).{' '}
        <a href={clinicHref.account} data-testid="change-password-link">Change your password</a>
      </p>
      <Tokens />
      {isAdmin && <Users />}
      {isAdmin && <AllTokens />}
      {isAdmin && <Audit />}
    </div>
  )
}
