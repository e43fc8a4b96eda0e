import { useCallback, useEffect, useState, type ReactNode } from 'react'
import { API, type ModelCard } from '../api.ts'
import { cardList, cardMetricSets, cardString, cardThresholds } from '../card.ts'
import { Spinner } from '../components/Spinner.tsx'
import { RecordTable, ValueView, inlineValue, isEmpty, isRecord } from '../components/ValueView.tsx'
import { formatNumber, formatPercent, humanize, isInterval } from '../format.ts'
import { useApiData, useApiImage, useDelayedFlag } from '../hooks.ts'

const PLOTS = [
  {
    name: 'roc',
    title: 'ROC curves',
    alt: 'Receiver operating characteristic curves: true-positive rate against false-positive rate on the test set',
    caption: 'Sensitivity against 1 − specificity as the cut-off moves; the closer to the top-left corner, the better.',
  },
  {
    name: 'confusion',
    title: 'Confusion matrix',
    alt: 'Confusion matrix of true class against predicted class on the test set',
    caption: 'Rows are the true diagnosis, columns the model’s top class. The diagonal holds correct answers.',
  },
  {
    name: 'reliability',
    title: 'Reliability diagram',
    alt: 'Reliability diagram: predicted probability against observed frequency on the test set',
    caption: 'Calibration: when the model says 30%, about 30% of such lesions should be that class. Points near the diagonal are well calibrated.',
  },
]

const KNOWN = new Set([
  'schema_version', 'name', 'version', 'classes', 'class_names', 'input_spec', 'meta_spec', 'temperature',
  'thresholds', 'onnx', 'gate', 'metrics', 'subgroups', 'per_source', 'training', 'data', 'intended_use',
  'limitations', 'licence', 'license', 'outputs', 'links', 'status',
])

export function ModelPage() {
  const q = useApiData<ModelCard>(`${API}/model`)
  const spinner = useDelayedFlag(q.loading, 150)
  const card = q.data && isRecord(q.data) ? q.data : null

  return (
    <div className="model-page" data-testid="model-page">
      <h1 className="page-title">
        Model card{card && `: ${cardString(card, 'name') ?? ''} ${cardString(card, 'version') ?? ''}`}
      </h1>
      <p className="lead">
        What the model is, how it was built and tested, and where it should not be trusted.
      </p>
      {spinner && <Spinner label="Loading the model card…" />}
      {q.error && (
        <div className="error-message" role="alert" data-testid="error-message">
          <strong>Could not load the model card.</strong> {q.error.message}
        </div>
      )}
      {card && <CardView card={card} />}
    </div>
  )
}

function Block({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section className="card-block">
      <h2>{title}</h2>
      {children}
    </section>
  )
}

function CardView({ card }: { card: ModelCard }) {
  const sets = cardMetricSets(card)
  const t = cardThresholds(card)
  const limitations = cardList(card, 'limitations')
  const licence = card.licence ?? card.license
  const classNames = isRecord(card.class_names) ? (card.class_names as Record<string, string>) : null
  const classes = Array.isArray(card.classes) ? (card.classes as string[]) : classNames ? Object.keys(classNames) : []
  const spec = isRecord(card.input_spec) ? card.input_spec : null
  const extra = Object.entries(card).filter(([k, v]) => !KNOWN.has(k) && !isEmpty(v))
  const links = isRecord(card.links) ? card.links : null

  const status = cardString(card, 'status')
  return (
    <>
      {status && (
        <p className="status-warning" data-testid="model-status">
          Model status: {status}
        </p>
      )}
      <Block title="Overview">
        <dl className="kv">
          <div className="kv-row">
            <dt>Name</dt>
            <dd>{cardString(card, 'name') ?? '—'}</dd>
          </div>
          <div className="kv-row">
            <dt>Version</dt>
            <dd>{cardString(card, 'version') ?? '—'}</dd>
          </div>
          {classes.length > 0 && (
            <div className="kv-row">
              <dt>Classes ({classes.length})</dt>
              <dd>{classes.map((c) => (classNames?.[c] ? `${classNames[c]} (${c})` : c)).join(', ')}</dd>
            </div>
          )}
          {spec && (
            <div className="kv-row">
              <dt>Input</dt>
              <dd>
                {typeof spec.size === 'number' && `${spec.size} × ${spec.size} px RGB`}
                {spec.crop === 'center_square' && ', centre square crop'}
                {spec.crop === 'none' && ', whole image resized (not cropped)'}
              </dd>
            </div>
          )}
          {typeof card.temperature === 'number' && (
            <div className="kv-row">
              <dt>Calibration temperature</dt>
              <dd>{formatNumber(card.temperature)}</dd>
            </div>
          )}
        </dl>
      </Block>

      {!isEmpty(card.intended_use) && (
        <Block title="Intended use">
          <ValueView value={card.intended_use} />
        </Block>
      )}

      <Block title="Test performance">
        {sets.length === 0 && <p className="muted">This model card lists no metrics.</p>}
        {sets.map(([split, metrics], i) => (
          <MetricsTable key={split} split={split} metrics={metrics} testId={i === 0 ? 'metrics-table' : `metrics-table-${split}`} />
        ))}
      </Block>

      {t && (
        <Block title="Risk thresholds">
          <p>
            The risk level comes from the calibrated probability that the lesion is malignant (melanoma + basal cell
            carcinoma + squamous cell carcinoma):
          </p>
          <ul className="threshold-list">
            <li className="risk-high">
              <strong>High — refer</strong>: malignant probability ≥ {formatPercent(t.refer)}.
            </li>
            <li className="risk-moderate">
              <strong>Moderate — have it checked, monitor</strong>: from {formatPercent(t.monitor)} up to{' '}
              {formatPercent(t.refer)}.
            </li>
            <li className="risk-low">
              <strong>Low</strong>: below {formatPercent(t.monitor)}.
            </li>
            <li className="risk-cannot_assess">
              <strong>Cannot assess</strong>: the image failed a quality check or does not look like the training
              images, whatever the probabilities.
            </li>
          </ul>
        </Block>
      )}

      <PlotsBlock card={card} />
      {typeof links?.report === 'string' && (
        <p>
          <a href={links.report} target="_blank" rel="noreferrer">
            Full evaluation report (HTML)
          </a>
        </p>
      )}

      {!isEmpty(card.subgroups) && (
        <Block title="Performance by subgroup">
          <ValueView value={card.subgroups} />
        </Block>
      )}
      {!isEmpty(card.per_source) && (
        <Block title="Performance by data source">
          <ValueView value={card.per_source} />
        </Block>
      )}
      {!isEmpty(card.data) && (
        <Block title="Data provenance">
          <ValueView value={card.data} />
        </Block>
      )}
      {!isEmpty(card.training) && (
        <Block title="Training">
          <ValueView value={card.training} />
        </Block>
      )}
      <Block title="Known limitations">
        {limitations.length ? (
          <ul className="plain-list">
            {limitations.map((l) => (
              <li key={l}>{l}</li>
            ))}
          </ul>
        ) : (
          <p className="muted">None listed in the model card. That does not mean there are none: see the Learn page.</p>
        )}
      </Block>
      {!isEmpty(licence) && (
        <Block title="Licences">
          <ValueView value={licence} />
        </Block>
      )}
      {extra.length > 0 && (
        <Block title="Other information">
          <ValueView value={Object.fromEntries(extra)} />
        </Block>
      )}
      <details className="raw-card">
        <summary>Full model card (JSON)</summary>
        <pre>{JSON.stringify(card, null, 2)}</pre>
      </details>
    </>
  )
}

function MetricsTable({ split, metrics, testId }: { split: string; metrics: Record<string, unknown>; testId: string }) {
  const rows = Object.entries(metrics)
  const allRecords = rows.every(([, v]) => isRecord(v) && !isInterval(v))
  if (allRecords) {
    // e.g. per-class metrics {MEL: {auc: {...}, sensitivity: {...}}}
    return (
      <RecordTable
        caption={`${humanize(split)} set`}
        testId={testId}
        rows={rows.map(([k, v]) => ({ class: k, ...(v as Record<string, unknown>) }))}
      />
    )
  }
  return (
    <div className="table-wrap">
      <table className="data-table" data-testid={testId}>
        <caption>{humanize(split)} set</caption>
        <thead>
          <tr>
            <th scope="col">Metric</th>
            <th scope="col">Value</th>
            <th scope="col">95% CI</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([k, v]) => (
            <tr key={k}>
              <th scope="row">{humanize(k)}</th>
              {isInterval(v) ? (
                <>
                  <td className="num">{formatNumber(v.value)}</td>
                  <td className="num">
                    {typeof v.lo === 'number' && typeof v.hi === 'number'
                      ? `${formatNumber(v.lo)} – ${formatNumber(v.hi)}`
                      : '—'}
                  </td>
                </>
              ) : (
                <>
                  <td className={typeof v === 'number' ? 'num' : undefined}>{inlineValue(v)}</td>
                  <td className="num">—</td>
                </>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
}

/** Plot names: those the card lists under links.plots, else the three standard ones. */
function plotNames(card: ModelCard): string[] {
  const listed = isRecord(card.links) && isRecord(card.links.plots) ? Object.keys(card.links.plots) : null
  if (!listed) return PLOTS.map((p) => p.name)
  const known = PLOTS.map((p) => p.name).filter((n) => listed.includes(n))
  return [...known, ...listed.filter((n) => !known.includes(n)).sort()]
}

function PlotsBlock({ card }: { card: ModelCard }) {
  const names = plotNames(card)
  const [failed, setFailed] = useState<string[]>([])
  const onFail = useCallback((n: string) => setFailed((f) => (f.includes(n) ? f : [...f, n])), [])
  if (names.length === 0 || names.every((n) => failed.includes(n))) return null
  return (
    <Block title="Plots">
      <div className="plot-grid">
        {names.map((n) => (
          <Plot key={n} name={n} onFail={onFail} />
        ))}
      </div>
    </Block>
  )
}

function Plot({ name, onFail }: { name: string; onFail: (name: string) => void }) {
  const { src, failed } = useApiImage(`${API}/model/plots/${encodeURIComponent(name)}.png`)
  useEffect(() => {
    if (failed) onFail(name)
  }, [failed, name, onFail])
  if (failed) return null
  const info = PLOTS.find((p) => p.name === name)
  const title = info?.title ?? humanize(name)
  return (
    <figure className="plot" data-testid={`plot-${name}`}>
      <h3>{title}</h3>
      {src ? <img src={src} alt={info?.alt ?? `${title} plot`} /> : <div className="plot-ph" aria-hidden="true" />}
      {info && <figcaption>{info.caption}</figcaption>}
    </figure>
  )
}
