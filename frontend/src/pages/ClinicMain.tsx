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

/** The clinic page for a route: the sign-in page until someone is signed in. */
export function ClinicMain({ route, checked }: { route: ClinicRoute; checked: boolean }) {
  const { session } = useClinic()
  if (!checked) return <p className="muted">Checking your session…</p>
  if (!session) return <LoginPage />
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
