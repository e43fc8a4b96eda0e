import { useId } from 'react'
import { confirmedExportUrl, getDashboard } from '../clinic/api.ts'
import { ClinicNotice, ErrorBox } from '../clinic/badges.tsx'
import { formatEstimate, isWithheld, smallCount, SMALL_COUNT } from '../clinic/format.ts'
import { useLoad } from '../clinic/session.ts'
import type { Estimate, ModelFigures } from '../clinic/types.ts'
import { TableWrap } from '../components/TableWrap.tsx'

function EstimateRow({ label, e, testId, sides }: { label: string; e: Estimate | null | undefined; testId: string; sides?: [string, string] }) {
  const withheld = isWithheld(e)
  return (
    <tr data-testid={testId} data-withheld={withheld}>
      <th scope="row">{label}</th>
      <td className={withheld ? 'muted' : undefined}>{formatEstimate(e, sides)}</td>
    </tr>
  )
}

function Confusion({ confusion }: { confusion: NonNullable<ModelFigures['confusion']> }) {
  const { labels, matrix } = confusion
  return (
    <TableWrap>
      <table className="data-table confusion" data-testid="confusion-matrix">
        <caption>Confusion matrix: rows are the confirmed diagnoses, columns the model’s suggested class (counts of lesions).</caption>
        <thead>
          <tr>
            <th scope="col">Confirmed ↓ / model →</th>
            {labels.map((l) => (
              <th key={l} scope="col">
                {l}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, i) => (
            <tr key={labels[i] ?? i}>
              <th scope="row">{labels[i]}</th>
              {row.map((n, j) => (
                <td key={j} className={i === j && n > 0 ? 'cm-diag' : n > 0 ? 'cm-off' : 'muted'}>
                  {n}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </TableWrap>
  )
}

function ModelBlock({ m }: { m: ModelFigures }) {
  const ids = useId()
  const slug = `${m.name}-${m.version}`.replace(/[^A-Za-z0-9.-]+/g, '-')
  return (
    <section className="card-block" aria-labelledby={`${ids}-h`} data-testid={`dashboard-model-${slug}`}>
      <h2 id={`${ids}-h`}>
        {m.name} <span className="muted">{m.version}</span>
      </h2>
      <p data-testid="dashboard-counts">
        <strong>{m.n_lesions}</strong> confirmed lesion{m.n_lesions === 1 ? '' : 's'} assessed by this model version:{' '}
        {m.n_malignant} malignant, {m.n_mel} melanoma{m.n_mel === 1 ? '' : 's'}. Each lesion counts once, with its
        latest visit assessed by this model version.
      </p>
      {smallCount(m.n_lesions) && (
        <p className="status-warning" data-testid="small-count-warning">
          Fewer than {SMALL_COUNT} confirmed lesions: the intervals are wide and the figures can change a lot with every
          new case. Do not judge the model on them yet.
        </p>
      )}
      <table className="data-table" data-testid="dashboard-figures">
        <tbody>
          <EstimateRow label="Sensitivity of the refer tier (malignant lesions called high risk)" e={m.refer?.sensitivity} testId="fig-sensitivity" />
          <EstimateRow label="Specificity of the refer tier (benign lesions not called high risk)" e={m.refer?.specificity} testId="fig-specificity" />
          <EstimateRow label="Melanoma AUC (melanoma vs the rest)" e={m.mel_auc} testId="fig-mel-auc" sides={['melanoma', 'other']} />
        </tbody>
      </table>
      {m.note && <p className="hint" data-testid="dashboard-note">{m.note}</p>}
      {m.confusion && m.confusion.labels.length > 0 ? (
        <Confusion confusion={m.confusion} />
      ) : (
        <p className="muted">Confusion matrix withheld: too few cases.</p>
      )}
    </section>
  )
}

/** The page-level line for confirmed lesions that appear in no figures (no photo could be assessed). */
export function leftOut(n: number): string {
  const many = n !== 1
  return `${n} confirmed lesion${many ? 's appear' : ' appears'} in no figures: none of ${many ? 'their' : 'its'} photos could be assessed ("cannot assess"). ${many ? 'They are' : 'It is'} included once a photo of ${many ? 'them' : 'it'} can be assessed (if the lesion is still there).`
}

/** The page-level line for confirmed lesions left out because every assessable photo of them carries a
 * body-site warning (the photo may be of another lesion). */
export function leftOutSiteInDoubt(n: number): string {
  const many = n !== 1
  return `${n} confirmed lesion${many ? 's appear' : ' appears'} in no figures: every photo of ${many ? 'them' : 'it'} that could be assessed carries a warning that its body site contradicts the lesion's or another visit's (the photo may be of another lesion).`
}

/** The clinic's own figures: how the model did on this clinic's confirmed cases, per model version. */
export function DashboardPage() {
  const dash = useLoad(getDashboard, 'dashboard')
  const models = dash.data?.models ?? []
  return (
    <div className="clinic-page" data-testid="dashboard-page">
      <h1 className="page-title">Clinic dashboard</h1>
      <p className="lead">
        How the model did on <strong>this clinic’s own confirmed cases only</strong> — lesions with a diagnosis
        recorded here — per model version, with 95% confidence intervals over patients (Wilson intervals for
        sensitivity and specificity, so a perfect score on few cases still shows its uncertainty; bootstrap for the
        AUC, which shows no interval, and says so, when every resample gives the same value, as a perfect AUC on few
        lesions does) and the counts behind them. Lesions confirmed Other / unknown are neither benign nor malignant,
        so they are in no sensitivity, specificity or AUC. These
        are not the figures on the Model page, which come from public data sets with other cameras and patients.
        Values are withheld when there are too few cases to say anything.
      </p>
      <ErrorBox error={dash.error} what="Could not load the dashboard." />
      {dash.loading && <p className="muted">Loading…</p>}
      {!dash.loading && !dash.error && models.length === 0 && (
        <p className="muted" data-testid="dashboard-empty">
          No confirmed cases yet. Record a diagnosis on a lesion page to start.
        </p>
      )}
      {(dash.data?.n_left_out_cannot_assess ?? 0) > 0 && (
        <p className="status-warning" data-testid="dashboard-left-out">
          {leftOut(dash.data?.n_left_out_cannot_assess ?? 0)}
        </p>
      )}
      {(dash.data?.n_left_out_site_in_doubt ?? 0) > 0 && (
        <p className="status-warning" data-testid="dashboard-left-out-site">
          {leftOutSiteInDoubt(dash.data?.n_left_out_site_in_doubt ?? 0)}
        </p>
      )}
      {models.map((m) => (
        <ModelBlock key={`${m.name} ${m.version}`} m={m} />
      ))}
      <section className="card-block">
        <h2>Export</h2>
        <p className="hint">
          Confirmed cases as a <code>metadata.csv</code> and their images, in the layout <code>dermsight evaluate</code> and{' '}
          <code>dermsight train</code> read directly. Visits whose photo could not be assessed are left out;
          README.txt in the ZIP says how many. The export is written to the audit log; per-patient exports are on
          each patient’s page.
        </p>
        <a className="btn btn-secondary" href={confirmedExportUrl()} download data-testid="export-confirmed">
          Export confirmed cases (ZIP)
        </a>
      </section>
      <ClinicNotice />
    </div>
  )
}
