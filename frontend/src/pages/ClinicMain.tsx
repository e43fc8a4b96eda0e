import { useEffect, useRef, useState } from 'react'
import { focusHeadingWhenShown, focusRequested, onAnnounce, type Announcement } from '../clinic/focus.ts'
import type { ClinicRoute } from '../clinic/format.ts'
import { useClinic } from '../clinic/session.ts'
import type { Session } from '../clinic/types.ts'
import { ClinicAccountPage } from './ClinicAccountPage.tsx'
import { ClinicAdminPage } from './ClinicAdminPage.tsx'
import { ClinicLesionPage } from './ClinicLesionPage.tsx'
import { ClinicPatientPage } from './ClinicPatientPage.tsx'
import { ClinicPatientsPage } from './ClinicPatientsPage.tsx'
import { DashboardPage } from './DashboardPage.tsx'
import { LoginPage } from './LoginPage.tsx'

export const CLINIC_TITLES: Record<ClinicRoute['page'], string> = {
  patients: 'Patients',
  patient: 'Patient',
  lesion: 'Lesion',
  dashboard: 'Clinic dashboard',
  admin: 'Account',
  account: 'Change your password',
}

/** The title of the clinic page on screen, as its heading says it: the sign-in page's while nobody
 * is signed in (`resumeAs`: the session of that user ended and the page waits under the sign-in
 * form); an admin's account page is also the administration page (ClinicAdminPage's heading).
 * `checked` false: the session is still being checked, the route's page is what is awaited. */
export function clinicPageTitle(
  page: ClinicRoute['page'],
  session: Pick<Session, 'user'> | null,
  resumeAs: string | null = null,
  checked = true,
): string {
  if (checked && !session) return resumeAs ? 'Your session has ended' : 'Sign in to the clinic'
  if (page === 'admin' && session?.user.role === 'admin') return 'Account and administration'
  return CLINIC_TITLES[page]
}

/** The clinic page for a route: the sign-in page until someone is signed in. When the server
 * ended the session (idle timeout) the page stays mounted but hidden — its typed-in state kept,
 * its patient data off the screen — under a sign-in form for the same user (`resumeAs`); the same
 * when the page saw the idle time pass unused (`hiddenWhy` says so in one line). */
export function ClinicMain({
  route,
  checked,
  resumeAs = null,
  hiddenWhy = null,
  onSwitchUser,
}: {
  route: ClinicRoute
  checked: boolean
  resumeAs?: string | null
  hiddenWhy?: string | null
  onSwitchUser?: () => void
}) {
  const { session } = useClinic()
  const holderRef = useRef<HTMLDivElement | null>(null)
  const status = useAnnouncement()

  // Signed in (or back in): the sign-in form that had focus is gone; the page's heading takes it.
  useEffect(() => {
    if (!session || !holderRef.current || !focusRequested('heading', 'signed-in')) return
    return focusHeadingWhenShown(holderRef.current)
  }, [session])

  // one polite live region for the whole clinic, present before any message is put in it
  const statusLine = (
    <div role="status" aria-live="polite" className="clinic-status" data-testid="clinic-status">
      {status && <p className="notice">{status}</p>}
    </div>
  )
  if (!checked) return <p className="muted">Checking your session…</p>
  if (!session && !resumeAs) return <LoginPage key="sign-in" />
  return (
    <>
      {!session && resumeAs && (
        <LoginPage key={`resume:${resumeAs}`} resumeAs={resumeAs} reason={hiddenWhy ?? undefined} onSwitchUser={onSwitchUser} />
      )}
      <div hidden={!session} data-testid="clinic-page-holder" ref={holderRef}>
        {statusLine}
        <ClinicPage route={route} />
      </div>
    </>
  )
}

/** The message announced for the page on screen (see `announce`): shown on the page it names,
 * dropped once the user goes to another page. */
function useAnnouncement(): string | null {
  const [current, setCurrent] = useState<Announcement | null>(null)
  const [hash, setHash] = useState(() => window.location.hash)
  useEffect(() => onAnnounce(setCurrent), [])
  useEffect(() => {
    const onChange = () => {
      setHash(window.location.hash)
      // a later page: the message was about the one before
      setCurrent((a) => (a && a.hash === window.location.hash ? a : null))
    }
    window.addEventListener('hashchange', onChange)
    return () => window.removeEventListener('hashchange', onChange)
  }, [])
  return current && current.hash === hash ? current.text : null
}

function ClinicPage({ route }: { route: ClinicRoute }) {
  switch (route.page) {
    case 'patients':
      return <ClinicPatientsPage />
    case 'patient':
      return <ClinicPatientPage key={route.id} id={route.id} />
    case 'lesion':
      return <ClinicLesionPage key={route.id} id={route.id} />
    case 'dashboard':
      return <DashboardPage />
    case 'admin':
      return <ClinicAdminPage />
    case 'account':
      return <ClinicAccountPage />
  }
}
