// Accessors for the model card (GET /api/v1/model). Its type (ModelCard in api.ts) is generated
// from the Python card model, dermsight.cardschema (src/generated/card.ts): the runtime fields
// (thresholds, input_spec, decision, ...) are typed; the report sections (metrics, cross_source,
// ...) are open objects whose inner shape, written by `dermsight train`
// (src/dermsight/train/finalize.py), is documented next to each helper and read defensively;
// older or hand-written cards fall back to the generic renderers of the Model page.

import type { ModelCard } from './api.ts'
import { format3, formatCI, formatProbability, humanize, isInterval } from './format.ts'
import type { Crop } from './generated/card.ts'

export function rec(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null
}

/** A finite number, else null. */
export function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/** The classes summed into the malignant probability: the card's ``malignant`` list, which the
 * server always sends resolved (``GET /model``: ``Card.to_dict`` fills in the taxonomy's
 * malignant classes for a card file without it). */
export function cardMalignant(card: ModelCard): string[] {
  return Array.isArray(card.malignant) ? card.malignant.filter((c): c is string => typeof c === 'string') : []
}

/** The classes a card leaves out of the malignant probability's denominator (``malignant_excluded``). */
export function cardMalignantExcluded(card: ModelCard | null): string[] {
  const v = card?.malignant_excluded
  return Array.isArray(v) ? v.filter((c): c is string => typeof c === 'string') : []
}

/** "MEL + BCC + SCC" (the card's malignant codes; the taxonomy's before the card has loaded),
 * "…, as a share of all classes but UNK" when the card leaves classes out of the denominator. */
export function malignantCodesText(card: ModelCard | null): string {
  const codes = card ? cardMalignant(card) : []
  const sum = (codes.length > 0 ? codes : ['MEL', 'BCC', 'SCC']).join(' + ')
  const excluded = cardMalignantExcluded(card)
  return excluded.length > 0 ? `${sum}, as a share of all classes but ${excluded.join(', ')}` : sum
}

/** "P(melanoma) + P(basal cell carcinoma) + P(squamous cell carcinoma)" for the card's malignant set;
 * with ``malignant_excluded`` (classes left out of the denominator) the sum is divided by
 * "(1 − P(other / unknown))" and the text says why. */
export function malignantSumText(card: ModelCard): string {
  const names = rec(card.class_names)
  const p = (code: string) => `P(${(typeof names?.[code] === 'string' ? (names[code] as string) : code).toLowerCase()})`
  const sum = cardMalignant(card).map(p).join(' + ')
  const excluded = cardMalignantExcluded(card)
  if (excluded.length === 0) return sum
  return `(${sum}) / (1 − ${excluded.map(p).join(' − ')}): the malignant share of the specific ` +
    `diagnoses, so that ${excluded.join(', ')} can name a lesion but never lower its risk`
}

/** card.a.b.c, or undefined when any step is missing. */
export function dig(v: unknown, ...keys: string[]): unknown {
  let cur: unknown = v
  for (const k of keys) {
    const r = rec(cur)
    if (!r) return undefined
    cur = r[k]
  }
  return cur
}

export function cardString(card: ModelCard | null, key: string): string | null {
  const v = card?.[key]
  return typeof v === 'string' || typeof v === 'number' ? String(v) : null
}

/** The card's `status` when it warrants a warning: present and not "trained" (e.g. a
 * development placeholder). A trained model gets no banner. */
export function cardStatusWarning(card: ModelCard | null): string | null {
  const s = cardString(card, 'status')?.trim()
  if (!s || s.toLowerCase() === 'trained') return null
  return s
}

export function cardThresholds(card: ModelCard | null): { refer: number | null; monitor: number | null } | null {
  const t = rec(card?.thresholds)
  if (!t) return null
  return { refer: num(t.refer), monitor: num(t.monitor) }
}

export function cardCrop(card: ModelCard | null): Crop {
  return card?.input_spec?.crop ?? 'center_square'
}

/** The input the network sees, in words: size, crop, the centre fraction, colour constancy,
 * resizing (card.input_spec; keys a card omits are at their defaults). */
export function cardInputText(card: ModelCard | null): string | null {
  const spec = card?.input_spec
  if (!spec) return null
  const size = num(spec.size)
  const parts = [size !== null ? `${size} × ${size} px RGB` : 'RGB image']
  if (spec.crop === 'center_square' || spec.crop === undefined) parts.push('centre square crop')
  if (spec.crop === 'none') parts.push('whole image resized (not cropped)')
  const fraction = num(spec.crop_fraction)
  if (fraction !== null && fraction < 1) {
    parts.push(`then the centre ${Math.round(fraction * 100)} % of each side (a closer view)`)
  }
  if (spec.color_constancy === 'shades_of_gray') {
    const p = num(spec.cc_power)
    parts.push(`Shades-of-Gray colour constancy${p !== null ? ` (p = ${p})` : ''}`)
  }
  if (typeof spec.interpolation === 'string') parts.push(`${spec.interpolation} resizing`)
  return parts.join(', ')
}

const isMetricValue = (v: unknown) => typeof v === 'number' || isInterval(v)

/** metrics -> [[split, {metric: value}]]; accepts {test: {...}, val: {...}} or a flat {metric: v}.
 * Generic fallback for cards without the `dermsight.evaluation` shape (see cardTestEvaluation). */
export function cardMetricSets(card: ModelCard | null): [string, Record<string, unknown>][] {
  const m = rec(card?.metrics)
  if (!m) return []
  const entries = Object.entries(m)
  if (entries.length && entries.every(([, v]) => isMetricValue(v))) return [['test', m]]
  const sets: [string, Record<string, unknown>][] = []
  for (const [split, v] of entries) {
    const r = rec(v)
    if (r && Object.keys(r).length) sets.push([split, r])
  }
  // the test split first
  sets.sort((a, b) => (a[0] === 'test' ? -1 : b[0] === 'test' ? 1 : 0))
  return sets
}

export function cardList(card: ModelCard | null, key: string): string[] {
  const v = card?.[key]
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)))
  if (typeof v === 'string' && v.trim()) return [v]
  return []
}

// --- the evaluation written by `dermsight train` -------------------------------------------------

export interface MetricDef {
  key: string
  label: string
  /** one line for clinicians */
  hint: string
  lowerIsBetter?: boolean
}

/** The headline metrics, in display order. Malignant = melanoma + BCC + SCC. */
export const HEADLINE_METRICS: MetricDef[] = [
  {
    key: 'balanced_accuracy',
    label: 'Balanced accuracy (all classes)',
    hint: "Average over the model's classes of the share whose suggested class (chosen by the decision rule under “Suggested class”) was right.",
  },
  { key: 'mel_auc', label: 'Melanoma vs rest AUC', hint: 'How well melanoma is ranked above everything else (0.5 = chance, 1 = perfect).' },
  {
    key: 'malignant_auc',
    label: 'Malignant vs benign AUC',
    hint: 'Malignant = melanoma, basal cell or squamous cell carcinoma (0.5 = chance, 1 = perfect).',
  },
  {
    key: 'malignant_pauc80',
    label: 'Malignant vs benign partial AUC (sensitivity ≥ 80%)',
    hint: 'Area under the ROC curve above 80% sensitivity: 0.02 = chance, 0.20 = perfect.',
  },
  {
    key: 'mel_pauc80',
    label: 'Melanoma partial AUC (sensitivity ≥ 80%)',
    hint: 'As above, for melanoma vs rest: 0.02 = chance, 0.20 = perfect.',
  },
  {
    key: 'refer_sensitivity',
    label: 'Sensitivity at the refer threshold',
    hint: 'Share of malignant lesions rated high risk (refer).',
  },
  {
    key: 'refer_specificity',
    label: 'Specificity at the refer threshold',
    hint: 'Share of benign lesions not rated high risk.',
  },
  {
    key: 'monitor_sensitivity',
    label: 'Sensitivity at the monitor threshold',
    hint: 'Share of malignant lesions rated moderate or high risk.',
  },
  {
    key: 'monitor_specificity',
    label: 'Specificity at the monitor threshold',
    hint: 'Share of benign lesions rated low risk.',
  },
  {
    key: 'malignant_spec_at_95sens',
    label: 'Specificity at 95% sensitivity (malignant)',
    hint: 'Benign lesions spared when the cut-off is set to catch 95% of malignant ones (cut-off chosen on the test set itself).',
  },
  {
    key: 'ece',
    label: 'Expected calibration error',
    hint: 'Average gap between stated confidence and observed accuracy; lower is better.',
    lowerIsBetter: true,
  },
  {
    key: 'brier',
    label: 'Brier score',
    hint: 'Mean squared error of the probabilities of all the model’s classes (0 = perfect, up to 2); lower is better.',
    lowerIsBetter: true,
  },
  {
    key: 'nll',
    label: 'Negative log-likelihood',
    hint: 'Penalises confident wrong answers; lower is better.',
    lowerIsBetter: true,
  },
]

export interface Estimate {
  value: number | null
  lo: number | null
  hi: number | null
  /** cases behind a proportion (k of n), only where the interval says it is over cases
   * (``method: 'wilson+bootstrap'``); the ``n`` of a percentile-bootstrap entry counts resamples */
  k?: number
  n?: number
  method?: string
}

/** A number or {value, lo, hi} -> Estimate; null when there is no value at all. */
export function estimate(v: unknown): Estimate | null {
  if (typeof v === 'number') return Number.isFinite(v) ? { value: v, lo: null, hi: null } : null
  const r = rec(v)
  if (!r) return null
  const e: Estimate = { value: num(r.value), lo: num(r.lo), hi: num(r.hi) }
  if (e.value === null && e.lo === null && e.hi === null) return null
  const k = num(r.k)
  const n = num(r.n)
  if (r.method === 'wilson+bootstrap') {
    e.method = r.method
    if (k !== null && n !== null) Object.assign(e, { k, n })
  }
  return e
}

/** The note of an interval entry that was withheld (``withheld: true``, no value), e.g. "1
 * positive, 110 negative (< 5 on a side): withheld"; "withheld" when it gives no note; null for an
 * entry that is not withheld. */
export function withheldNote(v: unknown): string | null {
  const r = rec(v)
  if (!r || r.withheld !== true || num(r.value) !== null) return null
  return typeof r.note === 'string' && r.note.trim() ? r.note.trim() : 'withheld'
}

/** The classes a card's macro-average AUC leaves out (their AUCs withheld). */
export function macroLeftOut(ev: TestEvaluation): string[] {
  const r = rec(ev.ci.auc_macro)
  return Array.isArray(r?.left_out) ? r.left_out.filter((c): c is string => typeof c === 'string') : []
}

// --- intervals that collapsed ---------------------------------------------------------------------

/** The z of a two-sided 95 % interval. */
export const Z95 = 1.959964

/** The Wilson score interval of k successes in n cases (null without cases). Unlike a percentile
 * bootstrap it does not collapse to a point when every case went the same way (22 of 22 ->
 * 0.851–1.000). */
export function wilson(k: number, n: number, z: number = Z95): { lo: number; hi: number } | null {
  if (!Number.isFinite(k) || !Number.isFinite(n) || n <= 0 || k < 0 || k > n) return null
  const p = k / n
  const z2 = z * z
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n)
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))
  return { lo: Math.max(0, centre - half), hi: Math.min(1, centre + half) }
}

/** Cases behind a proportion: k of n. */
export interface Counts {
  k: number
  n: number
}

/** An interval that collapsed to one point (its ends within 1e-9 of each other): a percentile
 * bootstrap whose every resample gave the same value (a sensitivity of 22 of 22, say). Not a certainty, so never shown as "x (x–x)".
 * Wilson intervals (``method: 'wilson+bootstrap'``) do not collapse. */
export function isDegenerate(e: Estimate | null | undefined): boolean {
  // within a rounding error, as the Python report does (an AUC can come back as 0.9999999999999999)
  return !!e && e.value !== null && e.lo !== null && e.hi !== null && Math.abs(e.hi - e.lo) < 1e-9 && e.method !== 'wilson+bootstrap'
}

/** k of n for a proportion `value` over `n` cases, when `value` is k/n for a whole k; else null. */
export function countsFor(value: number | null, n: number | null): Counts | null {
  if (value === null || n === null || !Number.isInteger(n) || n <= 0) return null
  const k = Math.round(value * n)
  return Math.abs(k / n - value) < 1e-9 ? { k, n } : null
}

/** The small print of an estimate: "0.875–0.922"; for an interval that collapsed, what is known
 * instead: "22 of 22; the bootstrap gives no interval, Wilson 95 % 0.851–1.000" when the cases are
 * known, else "no interval (every resample gave the same value)"; '' without an interval. */
export function ciText(e: Estimate | null | undefined, counts?: Counts | null): string {
  if (!e || e.lo === null || e.hi === null) return ''
  if (!isDegenerate(e)) return formatCI(e.lo, e.hi)
  const given = counts ?? (e.k !== undefined && e.n !== undefined ? { k: e.k, n: e.n } : null)
  // cases that do not give the value are not its cases
  const c = given && given.n > 0 && e.value !== null && Math.abs(given.k / given.n - e.value) < 1e-9 ? given : null
  const w = c ? wilson(c.k, c.n) : null
  if (c && w) {
    return `${c.k} of ${c.n}; the bootstrap gives no interval, Wilson 95\u00a0% ${formatCI(w.lo, w.hi)}`
  }
  return 'no interval (every resample gave the same value)'
}

/** "0.912 (0.894–0.930)", "1.000 (22 of 22; the bootstrap gives no interval, Wilson 95 % 0.851–1.000)". */
export function estimateText(e: Estimate | null | undefined, counts?: Counts | null): string {
  if (!e || e.value === null) return '—'
  const ci = ciText(e, counts)
  return ci ? `${format3(e.value)} (${ci})` : format3(e.value)
}

/** Per class, the cases behind its sensitivity (true class) and specificity (every other class),
 * from the test confusion matrix (rows: true class, columns: suggested class). */
export function perClassCounts(card: ModelCard | null): Record<string, { sensitivity: Counts; specificity: Counts }> {
  const conf = rec(dig(card, 'metrics', 'test', 'confusion'))
  const classes = strList(conf?.classes)
  const counts = Array.isArray(conf?.counts) ? (conf.counts as unknown[]) : []
  const rows = counts.map((r) => (Array.isArray(r) ? r.map((x) => num(x) ?? NaN) : []))
  if (!classes.length || rows.length !== classes.length || rows.some((r) => r.length < classes.length || r.some(Number.isNaN))) {
    return {}
  }
  const total = rows.reduce((a, r) => a + r.reduce((b, x) => b + x, 0), 0)
  const out: Record<string, { sensitivity: Counts; specificity: Counts }> = {}
  classes.forEach((c, i) => {
    const row = rows[i].reduce((a, x) => a + x, 0)
    const col = rows.reduce((a, r) => a + r[i], 0)
    const tp = rows[i][i]
    out[c] = { sensitivity: { k: tp, n: row }, specificity: { k: total - row - (col - tp), n: total - row } }
  })
  return out
}

/** The cases behind a subgroup's refer-tier sensitivity (its malignant lesions) and specificity
 * (the others), when the reported value is a whole number of them. */
export function subgroupCounts(r: { n: number | null; nMalignant: number | null; sensitivity: Estimate | null; specificity: Estimate | null }): {
  sensitivity: Counts | null
  specificity: Counts | null
} {
  const benign = r.n !== null && r.nMalignant !== null ? r.n - r.nMalignant : null
  return {
    sensitivity: countsFor(r.sensitivity?.value ?? null, r.nMalignant),
    specificity: countsFor(r.specificity?.value ?? null, benign),
  }
}

/** The cases behind a headline proportion (refer/monitor sensitivity: the malignant test lesions;
 * specificity: the others). */
export function headlineCounts(ev: TestEvaluation | null, key: string, value: number | null): Counts | null {
  const n = ev?.n ?? null
  const mal = num(ev?.metrics.n_malignant)
  if (key === 'refer_sensitivity' || key === 'monitor_sensitivity') return countsFor(value, mal)
  if (key === 'refer_specificity' || key === 'monitor_specificity') {
    return countsFor(value, n !== null && mal !== null ? n - mal : null)
  }
  return null
}

export interface PerClassRow {
  code: string
  name: string
  n: number | null
  auc: Estimate | null
  sensitivity: Estimate | null
  specificity: Estimate | null
  /** why the AUC is withheld (too few cases on one side), null when it is not */
  aucWithheld: string | null
}

export interface SubgroupRow {
  attribute: string
  subgroup: string
  n: number | null
  nMalignant: number | null
  malignantAuc: Estimate | null
  melAuc: Estimate | null
  balancedAccuracy: Estimate | null
  sensitivity: Estimate | null
  specificity: Estimate | null
  note: string | null
}

export interface TestEvaluation {
  n: number | null
  nGroups: number | null
  nBoot: number | null
  ciLevel: number | null
  /** point estimates {key: number} */
  metrics: Record<string, unknown>
  /** bootstrap intervals {key: {value, lo, hi, n}} */
  ci: Record<string, unknown>
  perClass: PerClassRow[]
  subgroups: SubgroupRow[]
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : ''
}

/** {value: r[k], lo: r[k_lo], hi: r[k_hi]} for the flat subgroup rows. */
function flatEstimate(r: Record<string, unknown>, k: string): Estimate | null {
  return estimate({ value: r[k], lo: r[`${k}_lo`], hi: r[`${k}_hi`] })
}

function records(v: unknown): Record<string, unknown>[] {
  return (Array.isArray(v) ? v : []).map(rec).filter((r): r is Record<string, unknown> => r !== null)
}

function subgroupRow(r: Record<string, unknown>): SubgroupRow {
  return {
    attribute: str(r.attribute) || 'other',
    subgroup: str(r.subgroup),
    n: num(r.n),
    nMalignant: num(r.n_malignant),
    malignantAuc: flatEstimate(r, 'malignant_auc'),
    melAuc: flatEstimate(r, 'mel_auc'),
    balancedAccuracy: flatEstimate(r, 'balanced_accuracy'),
    sensitivity: flatEstimate(r, 'sensitivity'),
    specificity: flatEstimate(r, 'specificity'),
    note: typeof r.note === 'string' && r.note.trim() ? r.note : null,
  }
}

function evaluation(v: unknown): TestEvaluation | null {
  const t = rec(v)
  if (!t) return null
  const metrics = rec(t.metrics)
  const ci = rec(t.ci)
  if (!metrics && !ci) return null
  const perClass = (Array.isArray(t.per_class) ? t.per_class : [])
    .map(rec)
    .filter((r): r is Record<string, unknown> => r !== null)
    .map((r) => ({
      code: str(r.code),
      name: str(r.name),
      n: num(r.n),
      auc: estimate(r.auc),
      sensitivity: estimate(r.sensitivity),
      specificity: estimate(r.specificity),
      aucWithheld: withheldNote(r.auc),
    }))
  const subgroups = records(t.subgroups).map(subgroupRow)
  return {
    n: num(t.n) ?? num(metrics?.n),
    nGroups: num(t.n_groups),
    nBoot: num(t.n_boot),
    ciLevel: num(t.ci_level),
    metrics: metrics ?? {},
    ci: ci ?? {},
    perClass,
    subgroups,
  }
}

/** metrics.test in the `dermsight.evaluation/1` shape ({n, n_groups, n_boot, metrics, ci,
 * per_class, subgroups}); null for other shapes. */
export function cardTestEvaluation(card: ModelCard | null): TestEvaluation | null {
  return evaluation(dig(card, 'metrics', 'test'))
}

/** One headline metric: the point estimate from `metrics`, the interval from `ci`. */
export function headline(ev: TestEvaluation | null, key: string): Estimate | null {
  if (!ev) return null
  const ci = estimate(ev.ci[key])
  const point = num(ev.metrics[key])
  if (!ci) return point === null ? null : { value: point, lo: null, hi: null }
  return { ...ci, value: point ?? ci.value }
}

export interface MetricColumn {
  key: string
  label: string
  note: string
  metrics: Record<string, unknown>
}

const OTHER_SETS: { key: string; label: string; note: string }[] = [
  {
    key: 'test_uncalibrated',
    label: 'Test, before calibration',
    note: 'same test images, probabilities before temperature scaling',
  },
  {
    key: 'test_without_metadata',
    label: 'Test, without age/sex/site',
    note: 'same test images with the patient details left empty',
  },
  {
    key: 'validation',
    label: 'Validation',
    note: 'used to pick the epoch, the temperature, the thresholds and the decision rule, so it is optimistic',
  },
]

/** The flat {key: number} metric sets shown next to the test results. */
export function cardOtherMetricSets(card: ModelCard | null): MetricColumn[] {
  const m = rec(card?.metrics)
  if (!m) return []
  const out: MetricColumn[] = []
  for (const s of OTHER_SETS) {
    const r = rec(m[s.key])
    if (r && Object.keys(r).length) out.push({ ...s, metrics: r })
  }
  return out
}

/** Subgroup rows grouped by attribute, in first-seen order. */
export function groupSubgroups(rows: SubgroupRow[]): [string, SubgroupRow[]][] {
  const groups: [string, SubgroupRow[]][] = []
  for (const r of rows) {
    const g = groups.find(([a]) => a === r.attribute)
    if (g) g[1].push(r)
    else groups.push([r.attribute, [r]])
  }
  return groups
}

/** A few headline numbers for the printed report: [label, estimate]. */
export function cardKeyMetrics(card: ModelCard | null, keys: string[]): [string, Estimate][] {
  const ev = cardTestEvaluation(card)
  const out: [string, Estimate][] = []
  for (const k of keys) {
    const e = headline(ev, k)
    const def = HEADLINE_METRICS.find((d) => d.key === k)
    if (e && e.value !== null) out.push([def?.label ?? k, e])
  }
  return out
}

// --- cross-source validation (card.cross_source, dermsight.evaluate.cross_source) ---------------

export interface RunInfo {
  config: string | null
  seed: number | null
  command: string | null
}

export interface CrossSourceRow {
  protocol: string
  source: string
  nImages: number | null
  nGroups: number | null
  nMalignant: number | null
  classesPresent: string[]
  /** metric key -> estimate; null when withheld or undefined */
  metrics: Record<string, Estimate | null>
  note: string | null
  trainedOn: string[]
  run: RunInfo
}

export interface CrossSourceTable {
  /** metric keys, in column order */
  metrics: string[]
  minN: number
  /** rows grouped by protocol, test-split rows first */
  protocols: [string, CrossSourceRow[]][]
  generatedBy: string | null
}

export const CROSS_SOURCE_PROTOCOLS: Record<string, { title: string; note: string }> = {
  test_split_by_source: {
    title: 'Held-out test split, per data source',
    note: 'This model on the test images of each source.',
  },
  leave_one_source_out: {
    title: 'Leave one source out',
    note: 'A model trained on all other sources, scored on every image of a source it never saw.',
  },
}

export const CROSS_SOURCE_METRIC_LABELS: Record<string, string> = {
  balanced_accuracy: 'Balanced accuracy',
  mel_auc: 'Melanoma AUC',
  malignant_auc: 'Malignant AUC',
  refer_sensitivity: 'Sensitivity (refer)',
  refer_specificity: 'Specificity (refer)',
}

function strList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

/** card.cross_source, or null when the card has none (or no usable row). */
export function cardCrossSource(card: ModelCard | null): CrossSourceTable | null {
  const cs = rec(card?.cross_source)
  if (!cs) return null
  const rows: CrossSourceRow[] = records(cs.rows).map((r) => {
    const m = rec(r.metrics) ?? {}
    const run = rec(r.run) ?? {}
    return {
      protocol: str(r.protocol) || 'other',
      source: str(r.source),
      nImages: num(r.n_images),
      nGroups: num(r.n_groups),
      nMalignant: num(r.n_malignant),
      classesPresent: strList(r.classes_present),
      metrics: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, estimate(v)])),
      note: typeof r.note === 'string' && r.note.trim() ? r.note : null,
      trainedOn: strList(r.trained_on),
      run: {
        config: typeof run.config === 'string' ? run.config : null,
        seed: num(run.seed),
        command: typeof run.command === 'string' ? run.command : null,
      },
    }
  })
  if (!rows.length) return null
  const listed = strList(cs.metrics)
  const metrics = listed.length ? listed : [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))]
  const protocols: [string, CrossSourceRow[]][] = []
  for (const r of rows) {
    const g = protocols.find(([p]) => p === r.protocol)
    if (g) g[1].push(r)
    else protocols.push([r.protocol, [r]])
  }
  const order = Object.keys(CROSS_SOURCE_PROTOCOLS)
  const rank = (p: string) => (order.includes(p) ? order.indexOf(p) : order.length)
  protocols.sort((a, b) => rank(a[0]) - rank(b[0]))
  return {
    metrics,
    minN: num(cs.min_n) ?? 30,
    protocols,
    generatedBy: typeof cs.generated_by === 'string' ? cs.generated_by : null,
  }
}

/** A row or band with fewer images than the reporting minimum: every metric is withheld. */
export function tooFew(n: number | null, minN: number): boolean {
  return n !== null && n < minN
}

// --- skin tone (metrics.test.by_ita, dermsight.evaluate.skin_tone) ------------------------------

export interface ItaBand extends SubgroupRow {
  itaRange: string
}

export interface ItaTable {
  bands: ItaBand[]
  n: number | null
  nEstimable: number | null
  nDarker: number | null
  darkerBands: string[]
  statement: string | null
  method: string | null
  minN: number
}

/** metrics.test.by_ita, or null when the card has none. */
export function cardItaTable(card: ModelCard | null): ItaTable | null {
  const t = rec(dig(card, 'metrics', 'test', 'by_ita'))
  if (!t) return null
  const bands = records(t.bands).map((r) => ({ ...subgroupRow(r), itaRange: str(r.ita_range) }))
  if (!bands.length) return null
  return {
    bands,
    n: num(t.n),
    nEstimable: num(t.n_estimable),
    nDarker: num(t.n_darker),
    darkerBands: strList(t.darker_bands),
    statement: typeof t.statement === 'string' ? t.statement : null,
    method: typeof t.method === 'string' ? t.method : null,
    minN: num(t.min_n) ?? 30,
  }
}

// --- the decision rule for the suggested class (card.decision) ----------------------------------

export interface DecisionRuleView {
  /** "argmax" when the card has no decision section */
  rule: string
  tau: number | null
  /** training class frequencies, largest first */
  prior: [string, number][]
  /** classes named only when they lead by a margin (adjusted log-probability), as [class, margin] */
  margins: [string, number][]
  /** one plain sentence */
  text: string
}

/** The sentence for each class margin (a class named only when it leads by more than m). */
function marginText(margins: [string, number][]): string {
  return margins
    .map(
      ([c, m]) =>
        ` ${c} is suggested only when it leads the next class by more than ${m} in adjusted log-probability (natural log; margin fitted on ` +
        `validation: all its training images come from one collection).`,
    )
    .join('')
}

/** A clinic's local update (``dermsight bundle adapt``), as a sentence after the rule; '' without. */
function localUpdateText(local: unknown): string {
  if (!local || typeof local !== 'object') return ''
  const u = local as Record<string, unknown>
  const classes = Array.isArray(u.classes) ? u.classes.filter((c) => typeof c === 'string') : []
  if (classes.length < 2) return ''
  const n = num(u.n_images)
  const name = typeof u.name === 'string' ? u.name : 'one clinic'
  const date = typeof u.created === 'string' ? ` (${u.created.slice(0, 10)})` : ''
  const kept = Array.isArray(u.kept) ? u.kept.filter((c) => typeof c === 'string') : []
  const changed = classes.filter((c) => !kept.includes(c))
  const keptText = kept.length ? ` A suggestion of ${kept.join(', ')} is never changed by it.` : ''
  const ev = (u.evaluation ?? {}) as Record<string, unknown>
  const ba = (ev.balanced_accuracy ?? {}) as Record<string, Record<string, unknown> | undefined>
  const before = num(ba.unchanged?.value)
  const after = num(ba.updated?.value)
  const check =
    before !== null && after !== null
      ? ` On those cases, cross-fitted, balanced accuracy over these classes went ${format3(before)} → ${format3(after)}.`
      : ''
  return (
    ` Then a local update: when the suggestion is ${changed.join(' or ')}, it is re-decided among ` +
    `${classes.join(', ')} by a model fitted on ${n ?? 'its'} labelled cases of ${name}${date}.${keptText}${check}` +
    `${referTierText(ev.refer_tier)} ` +
    `The test figures on this page are the model's before that update.`
  )
}

/** The unchanged refer tier on the clinic's cases (``refer_tier`` of the update's figures). */
function referTierText(refer: unknown): string {
  if (!refer || typeof refer !== 'object') return ''
  const r = refer as Record<string, unknown>
  const hit = num(r.malignant_referred)
  const all = num(r.n_malignant)
  const sens = num((r.sensitivity as Record<string, unknown> | undefined)?.value)
  if (hit === null || all === null || sens === null) return ''
  const fitted = num(r.fitted_sensitivity)
  const below =
    r.below_fitted === true && fitted !== null
      ? `, below the ${fitted.toFixed(2)} its threshold was fitted for: on that camera it misses more malignant lesions than this page's figures say`
      : ''
  return ` On the same cases the refer tier, which the update does not change, referred ${hit} of ${all} malignant lesions (sensitivity ${format3(sens)})${below}.`
}

/** How the suggested class is chosen: card.decision, else the plain most probable class. */
export function cardDecisionRule(card: ModelCard | null): DecisionRuleView {
  const view = baseDecisionRule(card)
  return { ...view, text: view.text + localUpdateText(card?.decision?.local_update) }
}

function baseDecisionRule(card: ModelCard | null): DecisionRuleView {
  const d = card?.decision
  const rule: string = d?.rule ?? 'argmax'
  const tau = num(d?.tau)
  const prior = Object.entries(d?.prior ?? {})
    .map(([k, v]) => [k, num(v)] as [string, number | null])
    .filter((e): e is [string, number] => e[1] !== null)
    .sort((a, b) => b[1] - a[1])
  const margins = Object.entries(d?.margins ?? {})
    .map(([k, v]) => [k, num(v)] as [string, number | null])
    .filter((e): e is [string, number] => e[1] !== null && e[1] > 0)
  if (rule === 'logit_adjusted' && tau !== null && tau !== 0) {
    return {
      rule,
      tau,
      prior,
      margins,
      text:
        `Balanced rule (logit adjustment, τ = ${tau}): the most probable class after dividing each class’s ` +
        `probability by its training frequency to the power τ, so rare classes are not always outvoted by ` +
        `common ones.` +
        marginText(margins) +
        ` The probabilities shown are not changed.`,
    }
  }
  if (rule === 'argmax' || rule === 'logit_adjusted') {
    const text = margins.length
      ? `Most probable class.${marginText(margins)} The probabilities shown are not changed.`
      : 'Most probable class.'
    return { rule, tau, prior, margins, text }
  }
  const desc = typeof d?.description === 'string' ? d.description : rule
  return { rule, tau, prior, margins, text: desc }
}

/** The validation figure an epoch was selected by, as a person reads it: the training loop
 * maximises its score, so NLL is stored negated. */
function selectionFigure(select: string | null, score: number | null): number | null {
  return score !== null && select === 'nll' ? -score : score
}

/** For "Weights kept", when a run kept the mean of its late epochs' weights
 * (``train.swa_from``) instead of one epoch's: which epochs, the mean's validation balanced
 * accuracy and, for comparison, the best single epoch's. Null for a run that kept one epoch. */
export function keptWeightsNote(summary: Record<string, unknown> | null): string | null {
  if (summary?.kept !== 'swa') return null
  const span = Array.isArray(summary.swa_epochs) ? summary.swa_epochs.map(num) : []
  const [from, to] = span
  const epochs = from != null && to != null ? (from === to ? `epoch ${from}` : `epochs ${from}–${to}`) : 'the late epochs'
  const avg = num(summary.swa_val_balanced_accuracy)
  const single = num(summary.best_single_epoch)
  const singleScore = num(summary.best_single_val_score)
  const select = typeof summary.select_metric === 'string' ? summary.select_metric : null
  let text = `the mean of the weights after ${epochs} (weight averaging)`
  if (avg !== null) text += `; validation balanced accuracy (arg-max) ${format3(avg)}`
  if (single !== null) {
    text += `; best single epoch: ${single}`
    const score = selectionFigure(select, singleScore)
    if (score !== null && select) text += ` (validation ${selectionLabel(select)} ${format3(score)})`
  }
  return text
}

/** How the training run chose the weights it kept, for "Selected epoch": the validation figure
 * and its value, or the last epoch (``train.select_metric: last``, which has no figure). */
export function selectedEpochNote(summary: Record<string, unknown> | null): string {
  const select = typeof summary?.select_metric === 'string' ? summary.select_metric : null
  if (!select) return ''
  if (select === 'last') return " (the last epoch's weights, kept whatever the validation figures)"
  const score = selectionFigure(select, num(summary?.best_val_score))
  return ` (best validation ${selectionLabel(select)}${score !== null ? ` ${format3(score)}` : ''})`
}

/** The training loop's validation figure in words: its balanced accuracy is of the most probable
 * class (arg-max), not of the decision rule's suggested class (the card's validation column). */
function selectionLabel(select: string): string {
  const label = humanize(select).toLowerCase()
  return select === 'balanced_accuracy' ? `${label} (arg-max)` : label
}

// --- what the figures rest on --------------------------------------------------------------------

const TEST_SPLIT_USE = 'Test split use:'

/** What the card says of its test split's history (the limitation starting "Test split use:",
 * without that prefix): how often it was scored and whether it informed a release. null when the
 * card does not say: nothing can be assumed of another bundle's history. */
export function cardTestSplitUse(card: ModelCard | null): string | null {
  const l = cardList(card, 'limitations').find((x) => x.trim().startsWith(TEST_SPLIT_USE))
  const text = l?.trim().slice(TEST_SPLIT_USE.length).trim()
  return text ? text : null
}

/** Per data source, the test split's images and groups (lesions or patients), from the
 * cross-source table's ``test_split_by_source`` rows. */
export function testSourceGroups(card: ModelCard | null): Record<string, { nImages: number | null; nGroups: number | null }> {
  const out: Record<string, { nImages: number | null; nGroups: number | null }> = {}
  for (const [protocol, rows] of cardCrossSource(card)?.protocols ?? []) {
    if (protocol !== 'test_split_by_source') continue
    for (const r of rows) out[r.source] = { nImages: r.nImages, nGroups: r.nGroups }
  }
  return out
}

/** Classes whose images all come from one collection (``metrics.source_check.watched``: class ->
 * source), grouped by source: [source, classes]. */
export function singleSourceClasses(card: ModelCard | null): [string, string[]][] {
  const watched = rec(dig(card, 'metrics', 'source_check', 'watched'))
  const out: [string, string[]][] = []
  for (const [c, s] of Object.entries(watched ?? {})) {
    if (typeof s !== 'string') continue
    const g = out.find(([src]) => src === s)
    if (g) g[1].push(c)
    else out.push([s, [c]])
  }
  return out
}

/** One sentence on the classes whose images all come from one collection, with that collection's
 * test images and groups: "All UNK images come from one collection, SIIM-ISIC 2020 (194 test images from
 * 7 groups): …". '' without such classes. */
export function singleSourceNote(card: ModelCard | null): string {
  const groups = testSourceGroups(card)
  const parts = singleSourceClasses(card).map(([source, classes]) => {
    const g = groups[source]
    const size =
      g && g.nImages !== null
        ? ` (${g.nImages.toLocaleString('en-US')} test images from ${
            g.nGroups !== null ? `${g.nGroups.toLocaleString('en-US')} ${g.nGroups === 1 ? 'group' : 'groups'}` : 'an unknown number of groups'
          })`
        : ''
    return `all ${joinList(classes)} images come from one collection, ${sourceName(source)}${size}`
  })
  if (!parts.length) return ''
  const text = parts.join('; ')
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}: their figures say little about other cameras or clinics.`
}

/** The cases behind a cross-source cell, where they follow from the row: refer-tier sensitivity
 * (its malignant images) and specificity (the others), when the value is a whole number of them;
 * null for the other metrics. */
export function crossSourceCounts(r: CrossSourceRow, key: string): Counts | null {
  const value = r.metrics[key]?.value ?? null
  if (key === 'refer_sensitivity') return countsFor(value, r.nMalignant)
  if (key === 'refer_specificity') {
    return countsFor(value, r.nImages !== null && r.nMalignant !== null ? r.nImages - r.nMalignant : null)
  }
  return null
}

/** A cross-source or skin-tone cell whose bootstrap interval collapsed, with what is known
 * instead: "isic2019, Sensitivity (refer): 1.000 (20 of 20; …)". */
export function crossSourceDegenerate(table: CrossSourceTable | null): string[] {
  if (!table) return []
  const out: string[] = []
  for (const [protocol, rows] of table.protocols) {
    for (const r of rows) {
      if (tooFew(r.nImages, table.minN)) continue
      for (const key of table.metrics) {
        const e = r.metrics[key] ?? null
        if (!isDegenerate(e)) continue
        const counts = crossSourceCounts(r, key)
        const where = CROSS_SOURCE_PROTOCOLS[protocol]?.title ?? protocol
        out.push(`${where}, ${r.source}, ${CROSS_SOURCE_METRIC_LABELS[key] ?? key}: ${estimateText(e, counts)}`)
      }
    }
  }
  return out
}

/** The same for the skin-tone bands (refer-tier sensitivity and specificity have their cases). */
export function itaDegenerate(table: ItaTable | null): string[] {
  if (!table) return []
  const out: string[] = []
  for (const b of table.bands) {
    const c = subgroupCounts(b)
    const cells: [string, Estimate | null, Counts | null][] = [
      ['Malignant AUC', b.malignantAuc, null],
      ['Melanoma AUC', b.melAuc, null],
      ['Balanced accuracy', b.balancedAccuracy, null],
      ['Sensitivity (refer)', b.sensitivity, c.sensitivity],
      ['Specificity (refer)', b.specificity, c.specificity],
    ]
    for (const [label, e, counts] of cells) {
      if (isDegenerate(e)) out.push(`${b.subgroup}, ${label}: ${estimateText(e, counts)}`)
    }
  }
  return out
}

// --- the suggested class and the arg-max -----------------------------------------------------------

/** Test balanced accuracy with the plain arg-max (the most probable class) instead of the decision
 * rule (``metrics.test_argmax_decision``); null when the card has none. */
export function argmaxBalancedAccuracy(card: ModelCard | null): number | null {
  return num(dig(card, 'metrics', 'test_argmax_decision', 'balanced_accuracy'))
}

// --- the "cannot assess" gate in use ---------------------------------------------------------------

export interface GateView {
  /** "v2" when the card has gate v2 (what the server uses when the bundle has it), else "v1" */
  version: 'v1' | 'v2'
  /** the check in words, from the card */
  text: string
}

const ordinalPct = (v: string) => `${v}th percentile`
/** -1.4429 -> "−1.443" (a minus sign, not a hyphen). */
const signed = (v: number) => (v < 0 ? `−${Math.abs(v).toFixed(3)}` : v.toFixed(3))

/** The out-of-distribution check the server applies (``dermsight.gate``): gate v2's logistic
 * "not dermoscopic" head when the card has its threshold (``v2_threshold``), else gate v1's kNN
 * distance (``ood_threshold``). Numbers and fitting details come from the card. */
export function gateInUse(gate: Record<string, unknown> | null): GateView | null {
  if (!gate) return null
  const v2 = num(gate.v2_threshold)
  if (v2 !== null) {
    const fit = typeof gate.v2_fit === 'string' ? gate.v2_fit : ''
    const pctl = /threshold = ([\d.]+)th percentile of ([\d,]+) validation images/.exec(fit)
    const inputs = /on standardised \[([^\]]+)\]/.exec(fit)?.[1]
    const clinical = num(gate.v2_clinical_threshold)
    const v1 = num(gate.ood_threshold)
    let text =
      `gate v2, a logistic “not dermoscopic” score` +
      (inputs ? ` on ${inputs}` : '') +
      `; an image is refused when its score is above ${signed(v2)}` +
      (pctl ? ` (the ${ordinalPct(pctl[1])} of ${pctl[2]} validation images, so about ${(100 - Number(pctl[1])).toFixed(1)} % of such dermoscopic images are refused)` : '') +
      '.'
    if (clinical !== null) text += ' A second score flags likely clinical (non-dermoscopic) photos without refusing them.'
    if (v1 !== null) {
      text += ` Gate v1 (${typeof gate.ood_method === 'string' ? gate.ood_method : 'kNN'} distance, threshold ${v1.toFixed(3)}) no longer decides; its figures are shown for comparison.`
    }
    return { version: 'v2', text }
  }
  if (typeof gate.ood_fit === 'string' || num(gate.ood_threshold) !== null) {
    const method = typeof gate.ood_method === 'string' ? `, ${gate.ood_method}` : ''
    const fit = typeof gate.ood_fit === 'string' ? `: ${gate.ood_fit}` : ''
    return { version: 'v1', text: `out-of-distribution check${method}${fit}.` }
  }
  return null
}

// --- the malignant share beside the refer / monitor cut-offs ----------------------------------------

/** The malignant share and the cut-offs as printed side by side, with as many decimals (one to four,
 * in percent) as it takes for the printed comparison to agree with the tier: 0.11670 against a refer
 * cut-off of 0.1168432 is "11.670% (refer ≥ 11.684%)", not "11.7% (refer ≥ 11.7%)" for a moderate
 * result. Rounding never makes a value at or above a cut-off print below it. */
export function shareBesideCutoffs(
  p: number,
  refer: number | null,
  monitor: number | null,
  risk?: string | null,
): { share: string; refer: string | null; monitor: string | null } {
  // which side of each cut-off the result is on: the server's tier when it is given (it compares
  // the unrounded share; the API rounds it to 6 decimals), else the share itself
  const tiered = risk === 'high' || risk === 'moderate' || risk === 'low'
  const cuts: [number, boolean][] = []
  if (refer !== null && Number.isFinite(refer)) cuts.push([refer, tiered ? risk === 'high' : p >= refer])
  if (monitor !== null && Number.isFinite(monitor)) cuts.push([monitor, tiered ? risk !== 'low' : p >= monitor])
  const fixed = (v: number, d: number) => `${(v * 100).toFixed(d)}%`
  const agrees = (d: number) =>
    cuts.every(([t, above]) => above === Number((p * 100).toFixed(d)) >= Number((t * 100).toFixed(d)))
  for (let d = 1; d <= 4; d++) {
    if (!agrees(d)) continue
    return {
      share: d === 1 ? formatProbability(p) : fixed(p, d),
      refer: refer === null ? null : fixed(refer, d),
      monitor: monitor === null ? null : fixed(monitor, d),
    }
  }
  // closer than 0.0001 % to a cut-off it is below: say so rather than print the same number
  const below = cuts
    .filter(([t, above]) => !above && p < t && fixed(p, 4) === fixed(t, 4))
    .map(([t]) => t)
    .sort((a, b) => a - b)[0]
  if (below === undefined) {
    // the share and the tier disagree beyond rounding (not an answer the server gives): print the
    // share as it is, never a number it is not
    return {
      share: formatProbability(p),
      refer: refer === null ? null : fixed(refer, 1),
      monitor: monitor === null ? null : fixed(monitor, 1),
    }
  }
  return {
    share: `just below ${fixed(below, 4)}`,
    refer: refer === null ? null : fixed(refer, 4),
    monitor: monitor === null ? null : fixed(monitor, 4),
  }
}

// --- the data in words (Learn page) ----------------------------------------------------------------

const SOURCE_NAMES: Record<string, string> = {
  ham10000: 'HAM10000',
  isic2016: 'ISIC 2016',
  isic2017: 'ISIC 2017',
  isic2019: 'ISIC 2019',
  isic2020: 'SIIM-ISIC 2020',
}

/** "a", "a and b", "a, b and c". */
export function joinList(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? ''
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`
}

/** A data source's key as people know it ("isic2020" -> "SIIM-ISIC 2020"). */
export function sourceName(key: string): string {
  return SOURCE_NAMES[key] ?? key
}

/** The images per split and the sources (card.data), null when the card does not say. */
export function cardDataSummary(card: ModelCard | null): {
  train: number
  val: number | null
  test: number | null
  total: number | null
  sources: string[]
} | null {
  const data = rec(card?.data)
  const train = num(dig(data, 'by_split', 'train', 'n'))
  if (!data || train === null) return null
  return {
    train,
    val: num(dig(data, 'by_split', 'val', 'n')),
    test: num(dig(data, 'by_split', 'test', 'n')),
    total: num(data.n_images),
    sources: Object.keys(rec(data.by_source) ?? {}).map(sourceName),
  }
}

/** Where the catch-all class is learned from: its training images (card.data's train split) and
 * their one collection (the source check); null unless the card says the class has one source.
 * The collection's patient count is not given: the card counts them over all splits, not for the
 * training images. */
export function unkOrigin(card: ModelCard | null, code: string): { images: number | null; source: string } | null {
  const source = singleSourceClasses(card).find(([, classes]) => classes.includes(code))?.[0]
  if (!source) return null
  return { images: num(dig(card, 'data', 'by_split', 'train', 'by_diagnosis', code)), source }
}
