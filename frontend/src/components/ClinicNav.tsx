import type { ClinicRoute } from '../clinic/format.ts'
import { clinicHref } from '../clinic/format.ts'
import type { Session } from '../clinic/types.ts'
import '../clinic/clinic.css'

/** The clinic's links in the main navigation (only when the server stores cases). */
export function ClinicNavLinks({ route, session }: { route: ClinicRoute | null; session: Session | null }) {
  const page = route?.page
  const links: { key: string; href: string; label: string; current: boolean }[] = [
    { key: 'patients', href: clinicHref.patients, label: 'Patients', current: page === 'patients' || page === 'patient' || page === 'lesion' },
    { key: 'dashboard', href: clinicHref.dashboard, label: 'Dashboard', current: page === 'dashboard' },
  ]
  if (session) links.push({ key: 'admin', href: clinicHref.admin, label: session.user.role === 'admin' ? 'Admin' : 'Account', current: page === 'admin' })
  return (
    <>
      {links.map((n) => (
        <a key={n.key} href={n.href} className="nav-link" aria-current={n.current ? 'page' : undefined} data-testid={`nav-${n.key}`}>
          {n.label}
        </a>
      ))}
    </>
  )
}

/** Who is signed in, and the sign-out button; a sign-in link otherwise. */
export function ClinicUser({ session, onLogout }: { session: Session | null; onLogout: () => void }) {
  if (!session) {
    return (
      <a href={clinicHref.patients} className="nav-link clinic-user" data-testid="nav-login">
        Sign in
      </a>
    )
  }
  return (
    <div className="clinic-user" data-testid="clinic-user" data-role={session.user.role}>
      <span className="muted">{session.user.username}</span>
      <button type="button" className="btn btn-ghost" onClick={onLogout} data-testid="logout">
        Sign out
      </button>
    </div>
  )
}
