import type { ClinicRoute } from '../clinic/format.ts'
import { clinicHref } from '../clinic/format.ts'
import type { Session } from '../clinic/types.ts'
import type { Audience } from '../hooks.ts'
import '../clinic/clinic.css'

/** The account page's link in the navigation, for admins and clinicians alike. */
export const CLINIC_ACCOUNT_LINK = 'Account'

/** The clinic's links in the main navigation (only when the server stores cases). */
export function ClinicNavLinks({ route, session }: { route: ClinicRoute | null; session: Session | null }) {
  const page = route?.page
  const links: { key: string; href: string; label: string; current: boolean }[] = [
    { key: 'patients', href: clinicHref.patients, label: 'Patients', current: page === 'patients' || page === 'patient' || page === 'lesion' },
    { key: 'dashboard', href: clinicHref.dashboard, label: 'Dashboard', current: page === 'dashboard' },
  ]
  // "Account" for everyone: the page's heading (and the tab's title) starts with it, "Account and
  // administration" for an admin; the password page (#/clinic/account) is part of it
  if (session) links.push({ key: 'admin', href: clinicHref.admin, label: CLINIC_ACCOUNT_LINK, current: page === 'admin' || page === 'account' })
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

/** Why the clinic pages have no Clinician / Patient switch (the hint in its place). */
export const CLINIC_AUDIENCE_WHY =
  'the clinic pages are written for clinicians and have no patient view; the Patient view is on the Assess page'

/** `CLINIC_AUDIENCE_WHY` as the sentence the note shows when opened. */
export function audienceWhySentence(): string {
  return `${CLINIC_AUDIENCE_WHY.charAt(0).toUpperCase()}${CLINIC_AUDIENCE_WHY.slice(1)}.`
}

/** The audience switch ("View: Clinician | Patient"). Only the Assess page has a patient view
 * (lay wording, no class codes); the clinic pages are written for clinicians and have none, so
 * there the switch would change nothing while seeming to. On clinic pages it is replaced by a
 * note that says so: a screen turned towards a patient there shows the clinician view. */
export function AudienceSwitch({
  audience,
  onChoose,
  clinic,
}: {
  audience: Audience
  onChoose: (a: Audience) => void
  clinic: boolean
}) {
  if (clinic) {
    // the reason is shown on a tap or a key press (a `title` alone reaches no touch screen)
    return (
      <details className="audience-note" data-testid="audience-clinic-note">
        <summary data-testid="audience-clinic-why">
          Clinician view only <span className="audience-why">(why?)</span>
        </summary>
        <p className="audience-note-text">{audienceWhySentence()}</p>
      </details>
    )
  }
  return (
    // its name starts with the word shown ("View"), the word the Assess page's prompt tells people to look for
    <div className="audience" role="group" aria-label="View: show results for" data-testid="audience-toggle" data-audience={audience}>
      <span className="audience-label" aria-hidden="true">
        View:
      </span>
      {(['clinician', 'patient'] as Audience[]).map((a) => (
        <button key={a} type="button" aria-pressed={audience === a} onClick={() => onChoose(a)} data-testid={`audience-${a}`}>
          {a === 'clinician' ? 'Clinician' : 'Patient'}
        </button>
      ))}
    </div>
  )
}
