// Accessors for the model card (GET /api/v1/model). Its type (ModelCard in api.ts) is generated
// from the Python card model, dermsight.cardschema (src/generated/card.ts): the runtime fields
// (thresholds, input_spec, decision, ...) are typed; the report sections (metrics, cross_source,
// ...) are open objects whose inner shape, written by `dermsight train`
// (src/dermsight/train/finalize.py), is documented next to each helper and read defensively;
// older or hand-written cards fall back to the generic renderers of the Model page.

import type { ModelCard } from './api.ts'
import { format3, humanize, isInterval } from './format.ts'
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
    hint: "Average over the model's classes of the share whose top-ranked class was right.",
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
}

/** A number or {value, lo, hi} -> Estimate; null when there is no value at all. */
export function estimate(v: unknown): Estimate | null {
  if (typeof v === 'number') return Number.isFinite(v) ? { value: v, lo: null, hi: null } : null
  const r = rec(v)
  if (!r) return null
  const e = { value: num(r.value), lo: num(r.lo), hi: num(r.hi) }
  return e.value === null && e.lo === null && e.hi === null ? null : e
}

export interface PerClassRow {
  code: string
  name: string
  n: number | null
  auc: Estimate | null
  sensitivity: Estimate | null
  specificity: Estimate | null
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
    note: 'used to pick the epoch, the temperature and the thresholds, so it is optimistic',
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
  /** classes named only when they lead by a margin (log-odds), as [class, margin] */
  margins: [string, number][]
  /** one plain sentence */
  text: string
}

/** The sentence for each class margin (a class named only when it leads by more than m). */
function marginText(margins: [string, number][]): string {
  return margins
    .map(
      ([c, m]) =>
        ` ${c} is suggested only when it leads the next class by more than ${m} in log-odds (margin fitted on ` +
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
  if (avg !== null) text += `; validation balanced accuracy ${format3(avg)}`
  if (single !== null) {
    text += `; best single epoch: ${single}`
    const score = selectionFigure(select, singleScore)
    if (score !== null && select) text += ` (validation ${humanize(select).toLowerCase()} ${format3(score)})`
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
  return ` (best validation ${humanize(select).toLowerCase()}${score !== null ? ` ${format3(score)}` : ''})`
}
