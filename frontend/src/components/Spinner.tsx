/** A busy line. By itself a polite status (role="status"), so that what is going on is said to
 * screen readers too; `live={false}` where the text is said otherwise: inside a live region the
 * page keeps (which says it once it is put there), or beside one that says the same words. */
export function Spinner({ label, live = true }: { label: string; live?: boolean }) {
  return (
    <div className="spinner-row" role={live ? 'status' : undefined} data-testid="spinner">
      <span className="spinner" aria-hidden="true" />
      <span>{label}</span>
    </div>
  )
}
