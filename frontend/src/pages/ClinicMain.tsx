import type { ClinicRoute } from '../clinic/format.ts'
import { useClinic } from '../clinic/session.ts'
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
}

/** The clinic page for a route: the sign-in page until someone is signed in. When the server
 * ended the session (idle timeout) the page stays mounted but hidden — its typed-in state kept,
 * its patient data off the screen — under a sign-in form for the same user (`resumeAs`). */
export function ClinicMain({
  route,
  checked,
  resumeAs = null,
  onSwitchUser,
}: {
  route: ClinicRoute
  checked: boolean
  resumeAs?: string | null
  onSwitchUser?: () => void
}) {
  const { session } = useClinic()
  if (!checked) return <p className="muted">Checking your session…</p>
  if (!session && !resumeAs) return <LoginPage key="sign-in" />
  return (
    <>
      {!session && resumeAs && <LoginPage key={`resume:${resumeAs}`} resumeAs={resumeAs} onSwitchUser={onSwitchUser} />}
      <div hidden={!session} data-testid="clinic-page-holder">
        <ClinicPage route={route} />
      </div>
    </>
  )
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
  }
}
