// Small pieces shared by the clinic pages: tier and "risk rose" badges, error box, the notice.

import { useId } from 'react'
import { latestSummary, tierLabel } from './format.ts'

export function TierBadge({ risk, p, testId }: { risk: string | null; p?: number | null; testId?: string }) {
  return (
    <span className={`tier-badge tier-${risk ?? 'none'}`} data-testid={testId} data-risk={risk ?? ''}>
      {p === undefined ? tierLabel(risk) : latestSummary(risk, p)}
    </span>
  )
}

export function RiskRoseBadge({ rose, testId = 'risk-rose' }: { rose: boolean; testId?: string }) {
  if (!rose) return null
  return (
    <span className="risk-rose" data-testid={testId} title="The model's risk for this lesion rose between two visits">
      <span aria-hidden="true">▲ </span>risk rose
    </span>
  )
}

/**
 * Said beside the tier when the latest photo could not be assessed (the tier is then an earlier
 * photo's). `note`, the why and the date, is in the page's text for screen readers too (a hidden
 * span the badge points to), not only in a tooltip that keyboard and touch users never see.
 */
export function RetakeBadge({ text, note, testId = 'retake' }: { text: string | null; note?: string | null; testId?: string }) {
  const id = useId()
  if (!text) return null
  return (
    <>
      <span className="retake-badge" data-testid={testId} title={note ?? undefined} aria-describedby={note ? id : undefined}>
        {text}
      </span>
      {note && (
        <span id={id} className="visually-hidden" data-testid={`${testId}-note`}>
          {' '}
          {note}
        </span>
      )}
    </>
  )
}

/** A form's or a page's error, announced (role=alert). `id`: for the fields it is about to point
 * to it (aria-describedby, see `fieldErrorProps`). */
export function ErrorBox({
  error,
  what,
  testId = 'error-message',
  id,
  quiet = false,
}: {
  error: Error | string | null
  what?: string
  testId?: string
  id?: string
  /** shown where the focus is put, or in the description of the field that gets it: no
   * role="alert", so that a screen reader reads it once, as the focus arrives, not twice */
  quiet?: boolean
}) {
  if (!error) return null
  return (
    <div className="error-message" role={quiet ? undefined : 'alert'} data-testid={testId} id={id}>
      {what && <strong>{what} </strong>}
      {typeof error === 'string' ? error : error.message}
    </div>
  )
}

/** The wording every clinic page carries. */
export function ClinicNotice() {
  return (
    <p className="notice" role="note" data-testid="clinic-notice">
      <strong>Decision support, not a diagnosis.</strong> Tiers and probabilities come from the model and help a
      trained clinician decide; the clinician decides. A rise between visits is a reason to look again, not a
      finding.
    </p>
  )
}
