import { useCallback, useEffect, useState, type MouseEvent, type ReactNode } from 'react'
import { API, apiFetch, getToken, type ModelCard } from '../api.ts'
import {
  CROSS_SOURCE_PROTOCOLS,
  HEADLINE_METRICS,
  argmaxBalancedAccuracy,
  cardCrossSource,
  cardDecisionRule,
  cardInputText,
  cardItaTable,
  cardList,
  cardMalignant,
  cardMetricSets,
  cardOtherMetricSets,
  cardStatusWarning,
  cardString,
  cardTestEvaluation,
  cardThresholds,
  ciText,
  cardTestSplitUse,
  crossSourceDegenerate,
  dig,
  estimate,
  gateInUse,
  groupSubgroups,
  headline,
  headlineCounts,
  isDegenerate,
  itaDegenerate,
  malignantSumText,
  perClassCounts,
  singleSourceNote,
  subgroupCounts,
  testSourceGroups,
  tooFew,
  num,
  rec,
  selectedEpochNote,
  keptWeightsNote,
  macroLeftOut,
  type Counts,
  type CrossSourceTable,
  type Estimate,
  type MetricDef,
  type SubgroupRow,
  type TestEvaluation,
} from '../card.ts'
import { FALLBACK_CLASSES, malignantShortName } from '../content.ts'
import {
  CrossSourceBlock,
  EstimateCell,
  NoteRow,
  SkinToneBlock,
  SubgroupHead,
} from '../components/ModelTables.tsx'
import { Spinner } from '../components/Spinner.tsx'
import { GateV2Figures } from '../components/GateV2Figures.tsx'
import { RetrievalBlock, hasRetrieval } from '../components/RetrievalBlock.tsx'
import { ValueView, inlineValue, isEmpty, isRecord } from '../components/ValueView.tsx'
import {
  capitalize,
  format3,
  formatCI,
  formatDuration,
  formatNumber,
  formatPercent,
  formatSigned,
  formatTimestamp,
  humanize,
  isInterval,
} from '../format.ts'
import { useApiData, useApiImage, useDelayedFlag } from '../hooks.ts'
import { TableWrap } from '../components/TableWrap.tsx'

const PLOTS = [
  {
    name: 'roc',
    title: 'ROC curves',
    alt: 'Receiver operating characteristic curves: true-positive rate against false-positive rate on the test set',
    caption: 'Sensitivity against 1 − specificity as the cut-off moves, one curve per class and one for malignant vs benign (dashed); the closer to the top-left corner, the better.',
  },
  {
    name: 'confusion',
    title: 'Confusion matrix',
    alt: 'Confusion matrix of true class against predicted class on the test set',
    caption:
      'Rows are the true diagnosis, columns the model’s suggested class (chosen by the decision rule under “Suggested class” above, not always the most probable class). The diagonal holds correct answers.',
  },
  {
    name: 'reliability',
    title: 'Reliability diagram',
    alt: 'Reliability diagram: predicted probability against observed frequency on the test set',
    caption: 'Calibration: when the model says 30%, about 30% of such lesions should be that class. Points near the diagonal are well calibrated.',
  },
  {
    name: 'risk_tiers',
    title: 'Risk tiers',
    alt: 'Bar chart of test lesions in the low, moderate and high risk tiers, split into benign and malignant',
    caption: 'How many test lesions fell into each risk tier, and how many of them were malignant.',
  },
]

const SPLIT_LABELS: Record<string, string> = { train: 'Training', val: 'Validation', validation: 'Validation', test: 'Test' }

const ATTRIBUTE_LABELS: Record<string, string> = {
  sex: 'Sex',
  age: 'Age (years)',
  site: 'Anatomic site',
  source: 'Data source',
}

const CI = '95\u00a0% CI'

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

// --- small building blocks ------------------------------------------------------------------------

function Block({ id, title, testId, children }: { id?: string; title: string; testId?: string; children: ReactNode }) {
  return (
    <section className="card-block" id={id ? `model-${id}` : undefined} data-testid={testId}>
      <h2>{title}</h2>
      {children}
    </section>
  )
}

function Row({ label, children }: { label: ReactNode; children: ReactNode }) {
  return (
    <div className="kv-row">
      <dt>{label}</dt>
      <dd>{children}</dd>
    </div>
  )
}

function pct(v: number | null | undefined): string {
  return typeof v === 'number' && Number.isFinite(v) ? formatPercent(v) : '—'
}

/** 0.95 -> "95%", 0.995 -> "99.5%" (targets and settings, not measurements). */
function pctShort(v: number | null | undefined): string {
  return typeof v === 'number' && Number.isFinite(v) ? `${Math.round(v * 1000) / 10}%` : '—'
}

/** Settings as written: 0.01 stays "0.01", balanced_sampler becomes "balanced sampler". */
function plain(v: unknown): string {
  if (typeof v === 'number') return String(v)
  if (typeof v === 'string') return v.replace(/_/g, ' ')
  return inlineValue(v)
}

function pctCI(e: Estimate | null): string {
  return e && e.lo !== null && e.hi !== null ? `${pct(e.lo)}–${pct(e.hi)}` : ''
}

/** "95 % CI 90.7%–96.5%", or for an interval that collapsed what is known instead (ciText). */
function pctCIText(e: Estimate | null, counts: Counts | null): string {
  return isDegenerate(e) ? ciText(e, counts) : `${CI} ${pctCI(e)}`
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

const outsideCI = (e: Estimate | null) =>
  !!e && e.value !== null && e.lo !== null && e.hi !== null && (e.value < e.lo || e.value > e.hi)

// --- the page ---------------------------------------------------------------------------------------

interface Section {
  id: string
  title: string
}

function CardView({ card }: { card: ModelCard }) {
  const ev = cardTestEvaluation(card)
  const status = cardStatusWarning(card)
  const baseline = rec(card.baseline)
  const gate = rec(card.gate)
  const hasGate = !!gate && (!!rec(gate.evaluation) || typeof gate.ood_fit === 'string' || !!rec(gate.quality))
  const hasSubgroups = !!ev && ev.subgroups.length > 0
  const crossSource = cardCrossSource(card)
  const ita = cardItaTable(card)

  const sections: Section[] = [
    { id: 'performance', title: 'Test performance' },
    ...(ev && ev.perClass.length ? [{ id: 'per-class', title: 'Per class' }] : []),
    ...(cardThresholds(card) ? [{ id: 'thresholds', title: 'Risk tiers' }] : []),
    ...(baseline && ev ? [{ id: 'baseline', title: 'Baseline' }] : []),
    ...(hasSubgroups ? [{ id: 'subgroups', title: 'Subgroups' }] : []),
    ...(ita ? [{ id: 'skin-tone', title: 'Skin tone' }] : []),
    ...(crossSource ? [{ id: 'cross-source', title: 'Cross-source' }] : []),
    ...(hasGate ? [{ id: 'gate', title: '“Cannot assess” gate' }] : []),
    ...(hasRetrieval(card) ? [{ id: 'retrieval', title: 'Similar cases' }] : []),
    { id: 'plots', title: 'Plots' },
    { id: 'data', title: 'Data and training' },
    { id: 'limitations', title: 'Limitations' },
  ]

  return (
    <>
      {status && (
        <p className="status-warning" data-testid="model-status">
          Model status: {status}. This is not a fully trained and evaluated model: do not rely on its results.
        </p>
      )}
      <Overview card={card} ev={ev} />
      <PageToc sections={sections} />

      {ev ? <Performance card={card} ev={ev} /> : <GenericMetrics card={card} />}
      {ev && ev.perClass.length > 0 && <PerClass card={card} ev={ev} />}
      <Thresholds card={card} ev={ev} />
      {baseline && ev && <Baseline baseline={baseline} ev={ev} />}
      {hasSubgroups && <Subgroups rows={ev.subgroups} groups={testSourceGroups(card)} />}
      {ita && <SkinToneBlock table={ita} />}
      {ita && <CollapsedNote testId="skin-tone-collapsed" items={itaDegenerate(ita)} where="skin-tone table" />}
      {crossSource && <CrossSourceBlock table={crossSource} />}
      {crossSource && (
        <CollapsedNote testId="cross-source-collapsed" items={crossSourceDegenerate(crossSource)} where="cross-source tables" />
      )}
      {crossSource && <FewGroupsNote items={crossSourceFewGroups(crossSource)} />}
      {hasGate && gate && <Gate gate={gate} />}
      <RetrievalBlock card={card} />
      <PlotsBlock card={card} />
      <DataBlock card={card} />
      <TrainingBlock card={card} />
      <Limitations card={card} />
      <Licences card={card} />

      <RawCard card={card} />
    </>
  )
}

/** The whole model card as JSON, folded away. Its box scrolls both ways, so it can be reached
 * with Tab and scrolled with the arrow keys, and is a region named for what it holds (WCAG 2.1.1;
 * axe's `scrollable-region-focusable`). */
export function RawCard({ card }: { card: unknown }) {
  return (
    <details className="raw-card">
      <summary>Full model card (JSON)</summary>
      <pre tabIndex={0} role="region" aria-label="Full model card (JSON)" data-testid="raw-card-json">
        {JSON.stringify(card, null, 2)}
      </pre>
    </details>
  )
}

/** In-page links; buttons, because the URL hash holds the route (#/model). */
function PageToc({ sections }: { sections: Section[] }) {
  const go = (id: string) => {
    const el = document.getElementById(`model-${id}`)
    if (!el) return
    el.scrollIntoView({ block: 'start' })
    const h = el.querySelector('h2')
    if (h) {
      h.setAttribute('tabindex', '-1')
      h.focus({ preventScroll: true })
    }
  }
  return (
    <nav className="model-toc no-print" aria-label="On this page">
      {sections.map((s) => (
        <button key={s.id} type="button" className="chip" onClick={() => go(s.id)}>
          {s.title}
        </button>
      ))}
    </nav>
  )
}

// --- overview ---------------------------------------------------------------------------------------

function Overview({ card, ev }: { card: ModelCard; ev: TestEvaluation | null }) {
  const classNames = rec(card.class_names)
  const classes = strings(card.classes).length ? strings(card.classes) : classNames ? Object.keys(classNames) : []
  const spec = rec(card.input_spec)
  const backbone = dig(card, 'training', 'config', 'model', 'backbone')
  const pretrained = dig(card, 'training', 'config', 'model', 'pretrained') === true
  const metaFields = strings(dig(card, 'meta_spec', 'fields'))
  const intended = card.intended_use

  const malAuc = headline(ev, 'malignant_auc')
  const sens = headline(ev, 'refer_sensitivity')
  const spec_ = headline(ev, 'refer_specificity')

  return (
    <section className="card-block model-overview" data-testid="model-overview">
      <h2 className="visually-hidden">Overview</h2>
      {!isEmpty(intended) && (
        <div className="intended-use">
          <h3>Intended use</h3>
          {typeof intended === 'string' ? <p>{intended}</p> : <ValueView value={intended} />}
        </div>
      )}
      {ev && (malAuc || sens) && (
        <dl className="stat-grid" data-testid="model-stats">
          {malAuc?.value != null && (
            <div className="stat">
              <dt>Malignant vs benign AUC</dt>
              <dd>{format3(malAuc.value)}</dd>
              <dd className="stat-sub">{isDegenerate(malAuc) ? ciText(malAuc) : `${CI} ${formatCI(malAuc.lo, malAuc.hi)}`}</dd>
            </div>
          )}
          {sens?.value != null && (
            <div className="stat">
              <dt>Malignant lesions sent for referral</dt>
              <dd>{pct(sens.value)}</dd>
              <dd className="stat-sub">sensitivity, {pctCIText(sens, headlineCounts(ev, 'refer_sensitivity', sens.value))}</dd>
            </div>
          )}
          {spec_?.value != null && (
            <div className="stat">
              <dt>Benign lesions not referred</dt>
              <dd>{pct(spec_.value)}</dd>
              <dd className="stat-sub">specificity, {pctCIText(spec_, headlineCounts(ev, 'refer_specificity', spec_.value))}</dd>
            </div>
          )}
          {ev.n !== null && (
            <div className="stat">
              <dt>Held-out test images</dt>
              <dd>{formatNumber(ev.n)}</dd>
              {ev.nGroups !== null && <dd className="stat-sub">{formatNumber(ev.nGroups)} lesion groups</dd>}
            </div>
          )}
        </dl>
      )}
      <dl className="kv">
        <Row label="Name">{cardString(card, 'name') ?? '—'}</Row>
        <Row label="Version">{cardString(card, 'version') ?? '—'}</Row>
        {card.created !== undefined && <Row label="Created">{formatTimestamp(card.created)}</Row>}
        {typeof backbone === 'string' && (
          <Row label="Network">
            {backbone}
            {pretrained && ' (ImageNet-pretrained, fine-tuned)'}
            {metaFields.length > 0 && ` + patient details (${metaFields.join(', ')})`}
          </Row>
        )}
        {spec && (
          <Row label="Input">
            <span data-testid="model-input">{cardInputText(card)}</span>
          </Row>
        )}
        {classes.length > 0 && (
          <Row label={`Output (${classes.length} classes)`}>
            {classes.map((c) => (typeof classNames?.[c] === 'string' ? `${classNames[c]} (${c})` : c)).join(', ')}
            <span className="hint">
              {capitalize(malignantShortName(card))} = {malignantSumText(card)}.
            </span>
          </Row>
        )}
        <Row label="Suggested class">
          <span data-testid="decision-rule">{cardDecisionRule(card).text}</span>
        </Row>
      </dl>
    </section>
  )
}

// --- test performance -------------------------------------------------------------------------------

function Performance({ card, ev }: { card: ModelCard; ev: TestEvaluation }) {
  const rows = HEADLINE_METRICS.map((d) => [d, headline(ev, d.key)] as const).filter(([, e]) => e && e.value !== null)
  const argmaxBa = argmaxBalancedAccuracy(card)
  // the test split's history is the card's to tell (another bundle served with --model has its own)
  const testUse = cardTestSplitUse(card)
  const odd = rows.filter(([, e]) => outsideCI(e)).map(([d]) => d.key)
  const others = cardOtherMetricSets(card)
  const level = ev.ciLevel !== null ? `${Math.round(ev.ciLevel * 100)}\u00a0%` : '95\u00a0%'
  return (
    <Block id="performance" title="Test performance">
      <p>
        Measured on a held-out <strong>test split</strong> of <strong>{formatNumber(ev.n)} images</strong>
        {ev.nGroups !== null && (
          <>
            {' '}
            from <strong>{formatNumber(ev.nGroups)} lesion groups</strong>
          </>
        )}
        . Images are split by lesion group, so no lesion has images in both training and test.
      </p>
      <p data-testid="test-refused">
        The test-split figures on this page count every test image, including those the “cannot assess” gate
        refuses. <code>dermsight evaluate</code> leaves refused images out of its figures, so it does not reproduce
        these numbers exactly on the same images.
      </p>
      <p data-testid="test-reuse">
        No training, calibration, threshold or decision-rule fitting used the test split.
        {testUse && (
          <>
            {' '}
            <strong>Test split use</strong> (from the model card): <span data-testid="test-split-use">{testUse}</span>
          </>
        )}
      </p>      <p className="muted">
        {level} confidence intervals (CI): percentile <strong>group bootstrap</strong>
        {ev.nBoot !== null && ` over ${formatNumber(ev.nBoot)} resamples`} of lesion groups. They show sampling
        variation only.
      </p>
      <TableWrap>
        <table className="data-table metrics" data-testid="metrics-table">
          <caption>Headline metrics on the test set</caption>
          <thead>
            <tr>
              <th scope="col">Metric</th>
              <th scope="col">Value</th>
              <th scope="col">{CI}</th>
              <th scope="col">What it means</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(([d, e]) => (
              <tr key={d.key} data-metric={d.key}>
                <th scope="row">{d.label}</th>
                <td className="num">
                  {format3(e?.value)}
                  {odd.includes(d.key) && <sup>†</sup>}
                </td>
                <td className="num">
                  {isDegenerate(e) ? ciText(e, headlineCounts(ev, d.key, e?.value ?? null)) : formatCI(e?.lo, e?.hi)}
                </td>
                <td className="metric-hint">
                  {d.hint}
                  {d.key === 'balanced_accuracy' &&
                    argmaxBa !== null &&
                    ` With the plain arg-max (the most probable class) instead: ${format3(argmaxBa)}.`}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      {odd.length > 0 && (
        <p className="hint">
          † The point estimate lies outside its bootstrap interval: the metric is biased in bootstrap resamples (for the
          calibration error, repeated images make the bins noisier), so the interval mainly shows how much it varies.
        </p>
      )}
      {others.length > 0 && <OtherSets ev={ev} others={others} />}
    </Block>
  )
}

function OtherSets({ ev, others }: { ev: TestEvaluation; others: { key: string; label: string; note: string; metrics: Record<string, unknown> }[] }) {
  const defs = HEADLINE_METRICS.filter(
    (d) => headline(ev, d.key) || others.some((o) => num(o.metrics[d.key]) !== null),
  )
  return (
    <>
      <h3 className="sub-title">The same metrics in other settings</h3>
      <TableWrap>
        <table className="data-table" data-testid="metrics-compare-table">
          <caption className="visually-hidden">Headline metrics: test, test before calibration, test without patient details, validation</caption>
          <thead>
            <tr>
              <th scope="col">Metric</th>
              <th scope="col">Test (above)</th>
              {others.map((o) => (
                <th scope="col" key={o.key}>
                  {o.label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {defs.map((d) => (
              <tr key={d.key}>
                <th scope="row">{d.label}</th>
                <td className="num">{format3(headline(ev, d.key)?.value)}</td>
                {others.map((o) => (
                  <td className="num" key={o.key}>
                    {format3(num(o.metrics[d.key]))}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      <ul className="hint-list">
        {others.map((o) => (
          <li key={o.key}>
            <strong>{o.label}</strong>: {o.note}.
          </li>
        ))}
        <li>
          Point estimates only; — = not computed for that setting. Balanced accuracy is for the suggested class (the
          decision rule) in every column, validation included; the per-epoch validation figure under “Training” is
          for the plain arg-max.
        </li>
      </ul>
    </>
  )
}

/** Cards without the `dermsight.evaluation` shape: one table per metric set. */
function GenericMetrics({ card }: { card: ModelCard }) {
  const sets = cardMetricSets(card)
  return (
    <Block id="performance" title="Test performance">
      {sets.length === 0 && <p className="muted">This model card lists no metrics.</p>}
      {sets.map(([split, metrics], i) => (
        <TableWrap key={split}>
          <table className="data-table" data-testid={i === 0 ? 'metrics-table' : `metrics-table-${split}`}>
            <caption>{humanize(split)} set</caption>
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col">Value</th>
                <th scope="col">{CI}</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(metrics).map(([k, v]) => (
                <tr key={k}>
                  <th scope="row">{HEADLINE_METRICS.find((d) => d.key === k)?.label ?? humanize(k)}</th>
                  {isInterval(v) ? (
                    <>
                      <td className="num">{formatNumber(v.value)}</td>
                      <td className="num">{formatCI(v.lo, v.hi)}</td>
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
        </TableWrap>
      ))}
    </Block>
  )
}

// --- per class ---------------------------------------------------------------------------------------

function PerClass({ card, ev }: { card: ModelCard; ev: TestEvaluation }) {
  const malignant = cardMalignant(card)
  const small = ev.perClass.filter((r) => r.n !== null && r.n < 50)
  const counts = perClassCounts(card)
  const oneSource = singleSourceNote(card)
  const withheldAucs = ev.perClass.filter((r) => r.aucWithheld)
  return (
    <Block id="per-class" title="Performance per diagnosis (test set)">
      <TableWrap>
        <table className="data-table" data-testid="per-class-table">
          <caption className="visually-hidden">Per-class AUC, sensitivity and specificity with {CI}</caption>
          <thead>
            <tr>
              <th scope="col">Diagnosis</th>
              <th scope="col">Test images</th>
              <th scope="col">AUC (one vs rest)</th>
              <th scope="col">Sensitivity</th>
              <th scope="col">Specificity</th>
            </tr>
          </thead>
          <tbody>
            {ev.perClass.map((r) => {
              const info = FALLBACK_CLASSES.find((c) => c.code === r.code)
              return (
                <tr key={r.code}>
                  <th scope="row">
                    {r.name || info?.name || r.code} <span className="muted">({r.code})</span>
                    {malignant.includes(r.code) && <span className="tag tag-malignant">malignant</span>}
                    {!malignant.includes(r.code) && info?.premalignant && <span className="tag tag-premalignant">pre-malignant</span>}
                  </th>
                  <td className="num">{formatNumber(r.n)}</td>
                  {r.aucWithheld ? (
                    <td className="num withheld" title={r.aucWithheld} data-testid={`auc-withheld-${r.code}`}>
                      withheld
                      <span className="ci" style={{ whiteSpace: 'normal', minWidth: '12em' }}>
                        {r.aucWithheld}
                      </span>
                    </td>
                  ) : (
                    <EstimateCell e={r.auc} />
                  )}
                  <EstimateCell e={r.sensitivity} counts={counts[r.code]?.sensitivity} />
                  <EstimateCell e={r.specificity} counts={counts[r.code]?.specificity} />
                </tr>
              )
            })}
          </tbody>
        </table>
      </TableWrap>
      <p className="hint">
        Small print under each value: {CI}. Sensitivity and specificity here are for the model’s suggested class (is
        the class the decision rule under “Suggested class” picks this diagnosis?), not for the risk tiers.
        {small.length > 0 &&
          ` Few test images for ${small.map((r) => `${r.code} (${r.n})`).join(', ')}: their intervals are wide.`}
        {oneSource && <span data-testid="single-source-note"> {oneSource}</span>}
      </p>
      {withheldAucs.length > 0 && (
        <p className="hint" data-testid="withheld-auc-note">
          Limitation: the AUC of {withheldAucs.map((r) => r.code).join(', ')} is withheld: too few test images on one
          side (the class or the rest) for its ranking to mean much.
          {macroLeftOut(ev).length > 0 &&
            ` The macro-average AUC is the mean over the other classes (it leaves out ${macroLeftOut(ev).join(', ')}).`}
        </p>
      )}
    </Block>
  )
}

// --- thresholds ---------------------------------------------------------------------------------------

function Thresholds({ card, ev }: { card: ModelCard; ev: TestEvaluation | null }) {
  const testUse = cardTestSplitUse(card)
  const t = cardThresholds(card)
  if (!t) return null
  const rs = headline(ev, 'refer_sensitivity')
  const rsp = headline(ev, 'refer_specificity')
  const ms = headline(ev, 'monitor_sensitivity')
  const msp = headline(ev, 'monitor_specificity')
  const nMal = num(ev?.metrics.n_malignant)
  const missed = nMal !== null && ms?.value != null ? Math.round(nMal * (1 - ms.value)) : null
  const calib = rec(dig(card, 'training', 'config', 'calibration'))
  const targetRefer = num(calib?.refer_sensitivity)
  const targetMonitor = num(calib?.monitor_sensitivity)
  const temperature = num(card.temperature)
  const eceAfter = headline(ev, 'ece')?.value ?? null
  const eceBefore = num(dig(card, 'metrics', 'test_uncalibrated', 'ece'))

  return (
    <Block id="thresholds" title="Risk tiers and thresholds" testId="thresholds">
      <p>
        The risk tier comes from the calibrated <strong>{malignantShortName(card)}</strong>: {malignantSumText(card)}.
      </p>
      <ul className="threshold-list">
        <li className="risk-high">
          <strong>High — refer</strong>: {malignantShortName(card)} ≥ {formatPercent(t.refer)}. Refer to a dermatologist.
          {rs?.value != null && (
            <span className="tier-stat">
              Test set: {pct(rs.value)} of malignant lesions reached this tier (sensitivity,{' '}
              {pctCIText(rs, headlineCounts(ev, 'refer_sensitivity', rs.value))})
              {rsp?.value != null && (
                <>
                  ; {pct(rsp.value)} of benign lesions stayed below it (specificity,{' '}
                  {pctCIText(rsp, headlineCounts(ev, 'refer_specificity', rsp.value))})
                </>
              )}
              .
            </span>
          )}
        </li>
        <li className="risk-moderate">
          <strong>Moderate — have it checked, monitor</strong>: from {formatPercent(t.monitor)} up to{' '}
          {formatPercent(t.refer)}.
          {ms?.value != null && (
            <span className="tier-stat">
              Test set: {pct(ms.value)} of malignant lesions were rated moderate or high (sensitivity,{' '}
              {pctCIText(ms, headlineCounts(ev, 'monitor_sensitivity', ms.value))})
              {msp?.value != null && (
                <>
                  ; {pct(msp.value)} of benign lesions were rated low (specificity,{' '}
                  {pctCIText(msp, headlineCounts(ev, 'monitor_specificity', msp.value))})
                </>
              )}
              .
            </span>
          )}
        </li>
        <li className="risk-low">
          <strong>Low</strong>: below {formatPercent(t.monitor)}.
          {missed !== null && nMal !== null && (
            <span className="tier-stat">
              Test set: {missed} of {formatNumber(nMal)} malignant lesions ({pct(1 - (ms?.value ?? 0))}) fell in this
              tier. Low is not “benign”: changing or worrying lesions still need a clinician.
            </span>
          )}
        </li>
        <li className="risk-cannot_assess">
          <strong>Cannot assess</strong>: the image failed a quality check or does not look like a dermoscopic image
          (see the gate below), whatever the probabilities.
        </li>
      </ul>
      {(targetRefer !== null || targetMonitor !== null) && (
        <p className="hint">
          The thresholds were chosen on the validation set to reach
          {targetRefer !== null && ` ${pctShort(targetRefer)} sensitivity (refer)`}
          {targetRefer !== null && targetMonitor !== null && ' and'}
          {targetMonitor !== null && ` ${pctShort(targetMonitor)} sensitivity (monitor)`} for malignant lesions, then
          measured on the test set (numbers above; not fitted on it)
          {testUse ? (
            <span data-testid="threshold-test-use">
              ; the model card says how the test set was used before this release
              {ev ? ' (see “Test split use” under Test performance)' : ` (Test split use: ${testUse.replace(/\.$/, '')})`}, so these
              figures may be optimistic.
            </span>
          ) : (
            '.'
          )}
        </p>
      )}
      {temperature !== null && (
        <p className="hint" data-testid="temperature">
          Calibration: the network’s scores are divided by a temperature T = {temperature.toFixed(3)} (fitted on the
          validation set) before they become probabilities
          {eceBefore !== null && eceAfter !== null &&
            `; this lowered the test calibration error (ECE) from ${format3(eceBefore)} to ${format3(eceAfter)}`}
          .
        </p>
      )}
    </Block>
  )
}

// --- baseline -----------------------------------------------------------------------------------------

function verdict(d: MetricDef, diff: Estimate | null): { text: string; cls: string } {
  if (!diff || diff.lo === null || diff.hi === null) return { text: '', cls: '' }
  if (diff.lo <= 0 && diff.hi >= 0) return { text: 'no clear difference', cls: 'muted' }
  const modelBetter = d.lowerIsBetter ? diff.hi < 0 : diff.lo > 0
  return modelBetter ? { text: 'model better', cls: 'better' } : { text: 'baseline better', cls: 'worse' }
}

function Baseline({ baseline, ev }: { baseline: Record<string, unknown>; ev: TestEvaluation }) {
  const bm = rec(dig(baseline, 'test', 'metrics')) ?? {}
  const diffs = rec(baseline.difference) ?? {}
  const name = typeof baseline.name === 'string' ? baseline.name : 'baseline'
  const chosen = rec(baseline.chosen)
  const rows = HEADLINE_METRICS.filter((d) => headline(ev, d.key) || num(bm[d.key]) !== null || diffs[d.key])
  const pointOnly = rows.some(
    (d) => !estimate(diffs[d.key]) && headline(ev, d.key)?.value != null && num(bm[d.key]) !== null,
  )
  const bRefer = num(dig(baseline, 'test', 'refer_threshold'))
  return (
    <Block id="baseline" title="Comparison with a simple baseline" testId="baseline">
      <p>
        Baseline: <strong>{name}</strong>
        {chosen && (
          <span className="muted">
            {' '}
            (settings chosen on validation:{' '}
            {Object.entries(chosen)
              .filter(([k]) => !k.startsWith('val_'))
              .map(([k, v]) => `${k.length <= 2 ? k : humanize(k).toLowerCase()} ${plain(v)}`)
              .join(', ')}
            )
          </span>
        )}
        . Both were tested on the same test images.
      </p>
      <TableWrap>
        <table className="data-table" data-testid="baseline-table">
          <caption className="visually-hidden">This model against the baseline on the test set</caption>
          <thead>
            <tr>
              <th scope="col">Metric</th>
              <th scope="col">This model</th>
              <th scope="col">Baseline</th>
              <th scope="col">Difference ({CI})</th>
              <th scope="col">Verdict</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => {
              const a = headline(ev, d.key)?.value ?? null
              const b = num(bm[d.key])
              const diff = estimate(diffs[d.key]) ?? (a !== null && b !== null ? { value: a - b, lo: null, hi: null } : null)
              const pointOnly = !!diff && !estimate(diffs[d.key])
              const v = verdict(d, diff)
              return (
                <tr key={d.key}>
                  <th scope="row">{d.label}</th>
                  <td className="num">{format3(a)}</td>
                  <td className="num">{format3(b)}</td>
                  <td className="num">
                    {formatSigned(diff?.value)}
                    {pointOnly && <sup>*</sup>}
                    {diff && diff.lo !== null && diff.hi !== null && (
                      <span className="ci">
                        {formatSigned(diff.lo)} to {formatSigned(diff.hi)}
                      </span>
                    )}
                  </td>
                  <td className={v.cls}>{v.text}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </TableWrap>
      <p className="hint">
        Difference = this model − baseline, from a paired group bootstrap (both models on the same resamples). For
        calibration error, Brier score and log-likelihood lower is better. “No clear difference” = the interval includes
        zero.
        {pointOnly &&
          ` * Point difference only, no interval: each model has its own thresholds, chosen the same way on validation${
            bRefer !== null ? ` (baseline refer threshold ${formatPercent(bRefer)})` : ''
          }.`}
      </p>
    </Block>
  )
}

// --- subgroups ----------------------------------------------------------------------------------------

/** A per-source row whose bootstrap resamples fewer patient / lesion groups than this is marked
 * {@link FEW_GROUPS_NOTE}, as the evaluation report marks it (`dermsight.evaluate.report.FEW_GROUPS`
 * and `FEW_GROUPS_NOTE`; the card does not carry the limit): a group bootstrap over a handful of
 * patients says little, however narrow its interval. */
export const FEW_GROUPS = 10
export const FEW_GROUPS_NOTE = 'few patients: interval unreliable'

/** The report's note for a row whose intervals rest on fewer than {@link FEW_GROUPS} groups
 * ("few patients: interval unreliable (7 patient/lesion groups)"); null otherwise. */
export function fewGroupsText(nGroups: number | null): string | null {
  return nGroups !== null && nGroups < FEW_GROUPS
    ? `${FEW_GROUPS_NOTE} (${formatNumber(nGroups)} patient/lesion groups)`
    : null
}

/** Cross-source rows with figures shown whose intervals rest on too few groups, as the report
 * marks them: "Held-out test split, per data source, isic2020: few patients: …". */
export function crossSourceFewGroups(table: CrossSourceTable): string[] {
  const out: string[] = []
  for (const [protocol, rows] of table.protocols) {
    for (const r of rows) {
      const shown = !tooFew(r.nImages, table.minN) && Object.values(r.metrics).some((e) => e && e.value !== null)
      const few = shown ? fewGroupsText(r.nGroups) : null
      if (few) out.push(`${CROSS_SOURCE_PROTOCOLS[protocol]?.title ?? protocol}, ${r.source}: ${few}`)
    }
  }
  return out
}

/** Under the cross-source tables (drawn elsewhere): the rows marked as the report marks them. */
function FewGroupsNote({ items }: { items: string[] }) {
  if (!items.length) return null
  return (
    <p className="hint" data-testid="cross-source-few-groups">
      In the cross-source tables above: {items.join('; ')}. A group bootstrap over fewer than {FEW_GROUPS} patients
      or lesion groups says little about how the figure would vary.
    </p>
  )
}

/** Under a table drawn elsewhere (components/ModelTables.tsx): its cells whose bootstrap interval
 * collapsed to a point, with what is known instead. */
function CollapsedNote({ items, where, testId }: { items: string[]; where: string; testId: string }) {
  if (!items.length) return null
  return (
    <p className="hint" data-testid={testId}>
      In the {where} above, a cell marked “no interval” or “the bootstrap gives no interval” is not a certainty:
      every bootstrap resample gave the same value. {items.join('; ')}.
    </p>
  )
}

function Subgroups({ rows, groups: sourceGroups }: { rows: SubgroupRow[]; groups: ReturnType<typeof testSourceGroups> }) {
  const groups = groupSubgroups(rows)
  return (
    <Block id="subgroups" title="Performance by subgroup (test set)" testId="subgroups">
      <p>
        Does the model work equally well for different patients, body sites and image sources? Sensitivity and
        specificity are for malignant lesions at the refer threshold.
      </p>
      <TableWrap>
        <table className="data-table subgroup-table" data-testid="subgroup-table">
          <caption className="visually-hidden">Test metrics by sex, age, anatomic site and data source, with {CI}</caption>
          <SubgroupHead first="Subgroup" />
          {groups.map(([attr, list]) => (
            <tbody key={attr}>
              <tr className="group-row">
                <th scope="rowgroup" colSpan={8}>
                  {ATTRIBUTE_LABELS[attr] ?? humanize(attr)}
                </th>
              </tr>
              {list.map((r) => {
                const w = !!r.note
                const c = subgroupCounts(r)
                const src = attr === 'source' ? sourceGroups[r.subgroup] : undefined
                const nGroups = src && src.nImages === r.n ? src.nGroups : null
                const notes = [r.note, fewGroupsText(nGroups)].filter((x): x is string => !!x)
                return [
                  <tr key={`${attr}:${r.subgroup}`} className={notes.length ? 'has-note' : undefined}>
                    <th scope="row" className="nowrap">
                      {r.subgroup === 'missing' ? <em>not recorded</em> : r.subgroup}
                    </th>
                    <td className="num">
                      {formatNumber(r.n)}
                      {nGroups !== null && (
                        <span className="ci" data-testid="source-groups">
                          {formatNumber(nGroups)} {nGroups === 1 ? 'group' : 'groups'}
                        </span>
                      )}
                    </td>
                    <td className="num">{formatNumber(r.nMalignant)}</td>
                    <EstimateCell e={r.malignantAuc} withheld={w} />
                    <EstimateCell e={r.melAuc} withheld={w} />
                    <EstimateCell e={r.balancedAccuracy} withheld={w} />
                    <EstimateCell e={r.sensitivity} counts={c.sensitivity} withheld={w} />
                    <EstimateCell e={r.specificity} counts={c.specificity} withheld={w} />
                  </tr>,
                  notes.length > 0 && (
                    <NoteRow key={`${attr}:${r.subgroup}:note`} label={r.subgroup} span={8}>
                      {notes.join('; ')}
                    </NoteRow>
                  ),
                ]
              })}
            </tbody>
          ))}
        </table>
      </TableWrap>
      <p className="hint">
        Small print: {CI} (group bootstrap within the subgroup). Numbers that would mislead are withheld, with the
        reason in a note under the row: every metric
        for subgroups under 30 images, and an AUC, sensitivity or specificity when there are fewer than 5 cases on
        either side. Overlapping intervals are common here; a single split cannot prove that subgroups differ. Under a
        data source, the small print under the images is the number of groups (lesions or patients) they come from:
        the figures rest on those, not on the images alone; “{FEW_GROUPS_NOTE}”: fewer than {FEW_GROUPS} groups
        behind the row's intervals.
      </p>
    </Block>
  )
}

// --- gate ---------------------------------------------------------------------------------------------

function Gate({ gate }: { gate: Record<string, unknown> }) {
  const inUse = gateInUse(gate)
  const e = rec(gate.evaluation)
  const q = rec(gate.quality)
  const auroc = num(e?.auroc)
  const frr = num(e?.false_reject_rate_test)
  const det = num(e?.detect_rate_non_dermoscopic)
  const nDerm = num(e?.n_dermoscopic_test)
  const nNon = num(e?.n_non_dermoscopic)
  const missed = strings(e?.non_dermoscopic_missed)
  const qualityRules: string[] = []
  if (q) {
    if (num(q.min_side) !== null) qualityRules.push(`shorter side under ${q.min_side} px`)
    if (num(q.dark_mean) !== null || num(q.bright_mean) !== null)
      qualityRules.push(`too dark (mean brightness < ${plain(q.dark_mean)}) or too bright (> ${plain(q.bright_mean)})`)
    if (num(q.min_std) !== null) qualityRules.push(`almost no contrast (std < ${plain(q.min_std)})`)
    if (num(q.max_clipped) !== null) qualityRules.push(`more than ${pctShort(num(q.max_clipped))} of pixels clipped`)
    if (num(q.min_sharpness) !== null) qualityRules.push(`blurred (sharpness < ${plain(q.min_sharpness)})`)
    if ((num(q.min_coloured) ?? 0) > 0)
      qualityRules.push(`black and white (fewer than ${pctShort(num(q.min_coloured))} of pixels show colour)`)
  }
  const compressedNotes: string[] = []
  const jpegQ = num(q?.flag_jpeg_quality)
  if (jpegQ !== null && jpegQ > 0) compressedNotes.push(`JPEG files saved at quality ${jpegQ} or lower (estimated from the file)`)
  if ((num(q?.flag_lossy_webp) ?? 0) > 0) compressedNotes.push('lossy WebP files')
  return (
    <Block id="gate" title="The “cannot assess” gate" testId="gate">
      <p>Before any risk is shown, each image must pass two checks; failing either gives “cannot assess”.</p>
      <ol className="plain-list">
        <li>
          <strong>Image quality</strong>
          {qualityRules.length > 0 ? `: rejected when ${qualityRules.join('; ')}.` : '.'}
          {compressedNotes.length > 0 && (
            <span data-testid="gate-compressed">
              {' '}Not rejected but noted as compressed more than the training images: {compressedNotes.join(' and ')}
              {' '}(on validation images re-saved so, the model was measured less accurate).
            </span>
          )}
        </li>
        <li data-testid="gate-in-use" data-gate={inUse?.version}>
          <strong>Looks like a dermoscopic image</strong>
          {inUse ? `: ${inUse.text}` : '.'}
        </li>
      </ol>
      <GateV2Figures gate={gate} />
      {e && (
        <>
          <h3 className="sub-title">How well the gate worked</h3>
          <dl className="kv" data-testid="gate-evaluation">
            {frr !== null && (
              <Row label="Dermoscopic test images wrongly rejected">
                {pct(frr)}
                {nDerm !== null && ` of ${formatNumber(nDerm)} (about ${Math.round(frr * nDerm)} images)`}
              </Row>
            )}
            {det !== null && (
              <Row label="Non-dermoscopic images caught">
                {pct(det)}
                {nNon !== null && ` of ${formatNumber(nNon)} (${Math.round(det * nNon)} caught, ${nNon - Math.round(det * nNon)} missed)`}
              </Row>
            )}
            {auroc !== null && (
              <Row label="Separation of dermoscopic vs other images (AUROC)">{format3(auroc)}</Row>
            )}
            {typeof e.set === 'string' && <Row label="Non-dermoscopic test images">{e.set}</Row>}
          </dl>
          {missed.length > 0 && (
            <details className="small-details">
              <summary>The {missed.length} non-dermoscopic images the gate missed</summary>
              <p className="muted mono-list">{missed.join(', ')}</p>
            </details>
          )}
          <p className="hint">
            The gate only catches images that are not dermoscopic at all. A dermoscopic image of a lesion outside the 8
            trained classes passes it and is forced into one of them.
          </p>
        </>
      )}
    </Block>
  )
}

// --- plots --------------------------------------------------------------------------------------------

/** Plot names: those the server lists under links.plots, else the card's `plots`, else the standard four. */
function plotNames(card: ModelCard): string[] {
  const links = rec(card.links)
  const listed = rec(links?.plots) ? Object.keys(rec(links?.plots)!) : strings(card.plots).length ? strings(card.plots) : null
  if (!listed) return PLOTS.map((p) => p.name)
  const known = PLOTS.map((p) => p.name).filter((n) => listed.includes(n))
  return [...known, ...listed.filter((n) => !known.includes(n)).sort()]
}

function reportUrl(card: ModelCard): string | null {
  const links = rec(card.links)
  if (!links) return `${API}/model/report`
  return typeof links.report === 'string' ? links.report : null
}

function PlotsBlock({ card }: { card: ModelCard }) {
  const names = plotNames(card)
  const report = reportUrl(card)
  const [failed, setFailed] = useState<string[]>([])
  const onFail = useCallback((n: string) => setFailed((f) => (f.includes(n) ? f : [...f, n])), [])
  const allFailed = names.length === 0 || names.every((n) => failed.includes(n))
  if (allFailed && !report) return null
  return (
    <Block id="plots" title="Plots (test set)">
      {!allFailed && (
        <div className="plot-grid">
          {names.map((n) => (
            <Plot key={n} name={n} onFail={onFail} />
          ))}
        </div>
      )}
      {report && <ReportLink href={report} />}
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

/** A plain link; with an API token set, the report is fetched with the token and opened as a blob. */
function ReportLink({ href }: { href: string }) {
  const [error, setError] = useState<string | null>(null)
  const onClick = async (ev: MouseEvent<HTMLAnchorElement>) => {
    if (!getToken()) return
    ev.preventDefault()
    setError(null)
    const win = window.open('', '_blank')
    if (win) win.opener = null
    try {
      const res = await apiFetch(href, { headers: { Accept: 'text/html' } })
      const blob = new Blob([await res.blob()], { type: 'text/html' })
      const url = URL.createObjectURL(blob)
      if (win) win.location.href = url
      else window.location.assign(url)
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000)
    } catch (err) {
      win?.close()
      setError(err instanceof Error ? err.message : String(err))
    }
  }
  return (
    <p className="report-link">
      <a href={href} target="_blank" rel="noreferrer" onClick={onClick} data-testid="report-link">
        Full evaluation report (HTML)
      </a>{' '}
      <span className="muted">— every table and plot above, with the method notes.</span>
      {error && (
        <span className="error-inline" role="alert">
          {' '}
          Could not open the report: {error}
        </span>
      )}
    </p>
  )
}

// --- data and training --------------------------------------------------------------------------------

function DataBlock({ card }: { card: ModelCard }) {
  const data = rec(card.data)
  if (!data) return null
  const bySplit = rec(data.by_split)
  const splits = bySplit ? Object.keys(bySplit).filter((s) => rec(bySplit[s])) : []
  const classNames = rec(card.class_names)
  const order = strings(card.classes)
  const codes = [...order]
  for (const s of splits) {
    for (const c of Object.keys(rec(dig(bySplit, s, 'by_diagnosis')) ?? {})) if (!codes.includes(c)) codes.push(c)
  }
  const count = (s: string, c: string) => num(dig(bySplit, s, 'by_diagnosis', c))
  const hashes = rec(data.split_sha256)
  const excluded = strings(data.excluded_source_repos)
  const total = (c: string) => splits.reduce((a, s) => a + (count(s, c) ?? 0), 0)
  const grand = splits.reduce((a, s) => a + (num(dig(bySplit, s, 'n')) ?? 0), 0)
  const known = new Set(['root', 'n_images', 'by_split', 'split_sha256', 'excluded_source_repos', 'group_col'])
  const rest = Object.fromEntries(Object.entries(data).filter(([k, v]) => !known.has(k) && !isEmpty(v)))

  return (
    <Block id="data" title="Data" testId="data">
      <dl className="kv">
        {typeof data.root === 'string' && <Row label="Image collection">{data.root}</Row>}
        {num(data.n_images) !== null && <Row label="Images used">{formatNumber(data.n_images)}</Row>}
        {typeof data.group_col === 'string' && (
          <Row label="Split">
            Training / validation / test, by lesion group (<code>{data.group_col}</code>): all images of one lesion are
            in the same split.
          </Row>
        )}
        {excluded.length > 0 && (
          <Row label="Excluded sources">
            {excluded.map((x) => (
              <code key={x} className="wrap">
                {x}
              </code>
            ))}
          </Row>
        )}
        {hashes && (
          <Row label="Split fingerprints (SHA-256)">
            <ul className="hash-list">
              {Object.entries(hashes).map(([s, h]) => (
                <li key={s}>
                  {SPLIT_LABELS[s] ?? s}: <code className="wrap">{String(h)}</code>
                </li>
              ))}
            </ul>
          </Row>
        )}
      </dl>
      {splits.length > 0 && (
        <TableWrap>
          <table className="data-table compact" data-testid="split-table">
            <caption>Images per diagnosis and split</caption>
            <thead>
              <tr>
                <th scope="col">Diagnosis</th>
                {splits.map((s) => (
                  <th scope="col" key={s} className="num">
                    {SPLIT_LABELS[s] ?? humanize(s)}
                  </th>
                ))}
                {splits.length > 1 && (
                  <th scope="col" className="num">
                    Total
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {codes.map((c) => (
                <tr key={c}>
                  <th scope="row">
                    {typeof classNames?.[c] === 'string' ? classNames[c] : c} <span className="muted">({c})</span>
                  </th>
                  {splits.map((s) => (
                    <td className="num" key={s}>
                      {formatNumber(count(s, c))}
                    </td>
                  ))}
                  {splits.length > 1 && <td className="num">{formatNumber(total(c))}</td>}
                </tr>
              ))}
              <tr className="total-row">
                <th scope="row">All</th>
                {splits.map((s) => (
                  <td className="num" key={s}>
                    {formatNumber(num(dig(bySplit, s, 'n')))}
                  </td>
                ))}
                {splits.length > 1 && <td className="num">{formatNumber(grand)}</td>}
              </tr>
            </tbody>
          </table>
        </TableWrap>
      )}
      {Object.keys(rest).length > 0 && <ValueView value={rest} />}
    </Block>
  )
}

function TrainingBlock({ card }: { card: ModelCard }) {
  const training = rec(card.training)
  if (!training) return null
  const summary = rec(training.summary)
  const cfg = rec(training.config)
  const train = rec(cfg?.train)
  const model = rec(cfg?.model)
  const epochs = (Array.isArray(training.epochs_log) ? training.epochs_log : []).map(rec).filter((r) => r !== null)
  const best = num(summary?.best_epoch)
  const kept = keptWeightsNote(summary)
  const seed = num(training.seed) ?? num(cfg?.seed)
  const settings: string[] = []
  if (train) {
    if (num(train.epochs) !== null) settings.push(`${train.epochs} epochs`)
    if (num(train.batch_size) !== null) settings.push(`batch size ${train.batch_size}`)
    if (num(train.lr) !== null) settings.push(`learning rate ${train.lr}`)
    if (num(train.weight_decay) !== null) settings.push(`weight decay ${train.weight_decay}`)
    if (typeof train.imbalance === 'string') settings.push(`class imbalance: ${plain(train.imbalance)}`)
    if (num(train.ema_decay) !== null) settings.push(`weight averaging (EMA ${train.ema_decay})`)
  }
  if (model && num(model.freeze_fraction) !== null) settings.push(`first ${pctShort(num(model.freeze_fraction))} of the network frozen`)

  return (
    <Block id="training" title="Training" testId="training">
      <dl className="kv">
        {summary && best !== null && (
          <Row label="Selected epoch">
            {best}
            {epochs.length > 0 && ` of ${epochs.length}`}
            {selectedEpochNote(summary)}
          </Row>
        )}
        {kept !== null && <Row label="Weights kept">{kept}</Row>}
        {num(summary?.train_seconds) !== null && (
          <Row label="Training time">
            {formatDuration(num(summary?.train_seconds))}
            {typeof training.machine === 'string' && ` on ${training.machine}`}
          </Row>
        )}
        {settings.length > 0 && <Row label="Settings">{settings.join(', ')}</Row>}
        {seed !== null && <Row label="Random seed">{seed}</Row>}
        {typeof training.reproduce === 'string' && (
          <Row label="Reproduce">
            <code className="wrap">{training.reproduce}</code>
          </Row>
        )}
      </dl>
      {epochs.length > 0 && (
        <TableWrap>
          <table className="data-table compact" data-testid="epochs-table">
            <caption>Training log, per epoch</caption>
            <thead>
              <tr>
                <th scope="col">Epoch</th>
                <th scope="col" className="num">
                  Training loss
                </th>
                <th scope="col" className="num">
                  Validation balanced accuracy (arg-max)
                </th>
                <th scope="col" className="num">
                  Validation melanoma AUC
                </th>
                <th scope="col" className="num">
                  Time
                </th>
              </tr>
            </thead>
            <tbody>
              {epochs.map((r, i) => {
                const ep = num(r.epoch) ?? i + 1
                const isBest = best !== null && ep === best
                return (
                  <tr key={ep} className={isBest ? 'is-best' : undefined}>
                    <th scope="row">
                      {ep}
                      {isBest && <span className="tag tag-benign">selected</span>}
                    </th>
                    <td className="num">{format3(num(r.train_loss))}</td>
                    <td className="num">{format3(num(r.val_balanced_accuracy))}</td>
                    <td className="num">{format3(num(r.val_mel_auc))}</td>
                    <td className="num">{formatDuration(num(r.epoch_seconds))}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </TableWrap>
      )}
    </Block>
  )
}

// --- limitations and licences -------------------------------------------------------------------------

function Limitations({ card }: { card: ModelCard }) {
  const limitations = cardList(card, 'limitations')
  return (
    <Block id="limitations" title="Known limitations" testId="limitations">
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
  )
}

const LICENCE_LABELS: Record<string, string> = { data: 'Data', weights: 'Model weights', code: 'Code' }

function Licences({ card }: { card: ModelCard }) {
  const licence = card.licence ?? card.license
  if (isEmpty(licence)) return null
  const r = rec(licence)
  return (
    <Block id="licence" title="Licences" testId="licence">
      {r ? (
        <dl className="kv">
          {Object.entries(r).map(([k, v]) => (
            <Row key={k} label={LICENCE_LABELS[k] ?? humanize(k)}>
              {inlineValue(v)}
            </Row>
          ))}
        </dl>
      ) : (
        <ValueView value={licence} />
      )}
    </Block>
  )
}
