import { clinicHref } from '../clinic/format.ts'

/** A clinic address that no page answers (`routeFromHash` 'notfound': "#/clinic/visits/1", a
 * mistyped or old link): said so, with the way to the patients, instead of another page shown in
 * its place. Its heading takes focus on arrival from another page, as every page's (App). */
export function NotFoundPage({ hash }: { hash: string }) {
  return (
    <div className="clinic-page" data-testid="not-found">
      <h1 className="page-title">Page not found</h1>
      <p>
        There is no page at the address <code data-testid="not-found-address">{hash || '#/'}</code>. The link may be
        mistyped or out of date.
      </p>
      <p>
        Patients, their lesions and visits are found from the{' '}
        <a href={clinicHref.patients} data-testid="not-found-patients">
          Patients
        </a>{' '}
        page.
      </p>
    </div>
  )
}
