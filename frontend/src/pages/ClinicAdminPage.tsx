import { useId, useRef, useState, type FormEvent } from 'react'
import { createToken, createUser, deleteToken, listAudit, listTokens, listUsers } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { useClinic, useLoad } from '../clinic/session.ts'
import { TOKEN_DAYS, type NewApiToken, type Role } from '../clinic/types.ts'
import { formatTimestamp } from '../format.ts'
import { TableWrap } from '../components/TableWrap.tsx'

function Tokens() {
  const ids = useId()
  const tokens = useLoad(listTokens, 'tokens')
  const [name, setName] = useState('')
  const [days, setDays] = useState(String(TOKEN_DAYS.default))
  const [made, setMade] = useState<NewApiToken | null>(null)
  const [error, setError] = useState<string | null>(null)
  // "Token “x” deleted.", said in the section's status line
  const [deleted, setDeleted] = useState<string | null>(null)
  const headingRef = useRef<HTMLHeadingElement | null>(null)

  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    setDeleted(null)
    if (!name.trim()) {
      setError('Give the token a name (e.g. the script or device that uses it).')
      return
    }
    const lifetime = Number(days)
    if (!Number.isInteger(lifetime) || lifetime < TOKEN_DAYS.min || lifetime > TOKEN_DAYS.max) {
      setError(`Give the number of days the token works, ${TOKEN_DAYS.min} to ${TOKEN_DAYS.max}.`)
      return
    }
    setError(null)
    try {
      setMade(await createToken(name.trim(), lifetime))
      setName('')
      setDays(String(TOKEN_DAYS.default))
      tokens.reload()
    } catch (err) {
      setError((err as Error).message)
    }
  }
  const onDelete = async (id: number, tokenName: string) => {
    setError(null)
    setDeleted(null)
    try {
      await deleteToken(id)
      setMade(null)
      setDeleted(`Token “${tokenName}” deleted.`)
      // its Delete button goes with its row: focus the section, not <body>
      headingRef.current?.focus()
      tokens.reload()
    } catch (err) {
      setError((err as Error).message)
    }
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
          <input id={`${ids}-name`} value={name} maxLength={100} onChange={(e) => setName(e.target.value)} data-testid="token-name" />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-days`}>Works for (days)</label>
          <input
            id={`${ids}-days`}
            type="number"
            inputMode="numeric"
            min={TOKEN_DAYS.min}
            max={TOKEN_DAYS.max}
            step={1}
            value={days}
            onChange={(e) => setDays(e.target.value)}
            data-testid="token-days"
          />
        </div>
        <button type="submit" className="btn btn-primary" data-testid="token-create">
          Create token
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
      <ErrorBox error={error ?? tokens.error} />
      {tokens.data?.length === 0 ? (
        <p className="muted" data-testid="token-empty">
          No tokens yet.
        </p>
      ) : (
        <TableWrap>
          <table className="data-table" data-testid="token-list">
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
                    {formatTimestamp(t.expires_at)}
                    {t.expired && <strong> (expired: make a new token)</strong>}
                  </td>
                  <td>
                    <button type="button" className="btn-link" onClick={() => onDelete(t.id, t.name)} data-testid={`token-delete-${t.id}`}>
                      Delete
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
  const [error, setError] = useState<string | null>(null)
  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    if (!username.trim() || !password) {
      setError('Enter a user name and a password.')
      return
    }
    setError(null)
    try {
      await createUser(username.trim(), password, role)
      setUsername('')
      setPassword('')
      users.reload()
    } catch (err) {
      setError((err as Error).message)
    }
  }
  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="users-section">
      <h2 id={`${ids}-h`}>Users</h2>
      <form className="inline-form" onSubmit={onCreate} noValidate>
        <div className="field">
          <label htmlFor={`${ids}-u`}>User name</label>
          <input id={`${ids}-u`} value={username} autoComplete="off" onChange={(e) => setUsername(e.target.value)} data-testid="user-username" />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-p`}>Password</label>
          <input id={`${ids}-p`} type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} data-testid="user-password" />
        </div>
        <div className="field">
          <label htmlFor={`${ids}-r`}>Role</label>
          <select id={`${ids}-r`} value={role} onChange={(e) => setRole(e.target.value as Role)} data-testid="user-role">
            <option value="clinician">Clinician</option>
            <option value="admin">Admin</option>
          </select>
        </div>
        <button type="submit" className="btn btn-primary" data-testid="user-create">
          Add user
        </button>
      </form>
      <ErrorBox error={error ?? users.error} />
      <table className="data-table" data-testid="user-list">
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
        </tbody>
      </table>
    </section>
  )
}

function Audit() {
  const ids = useId()
  const audit = useLoad(() => listAudit(100), 'audit')
  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid="audit-section">
      <h2 id={`${ids}-h`}>Audit log</h2>
      <p className="hint">Who created, viewed, exported or deleted what: ids and times only, never images or demographics. Latest 100.</p>
      <ErrorBox error={audit.error} />
      <TableWrap>
        <table className="data-table" data-testid="audit-log">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">User</th>
              <th scope="col">Action</th>
              <th scope="col">Object</th>
            </tr>
          </thead>
          <tbody>
            {(audit.data ?? []).map((a, i) => (
              <tr key={i}>
                <td>{formatTimestamp(a.at)}</td>
                <td>{a.user ?? '—'}</td>
                <td>{a.action}</td>
                <td>{a.object_type ? `${a.object_type}${a.object_id !== null && a.object_id !== undefined ? ` ${a.object_id}` : ''}` : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
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
        Signed in as <strong>{session?.user.username}</strong> ({session?.user.role}).
      </p>
      <Tokens />
      {isAdmin && <Users />}
      {isAdmin && <Audit />}
    </div>
  )
}
