export function Spinner({ label }: { label: string }) {
  return (
    <div className="spinner-row" data-testid="spinner">
      <span className="spinner" aria-hidden="true" />
      <span>{label}</span>
    </div>
  )
}
