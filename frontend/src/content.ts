// Static wording shared by the pages. The vocabularies (classes, sexes, anatomic sites) come from
// src/generated/taxonomy.ts, generated from dermsight.taxonomy (tools/gen_frontend_types.py);
// only their display labels live here, and `satisfies` makes tsc refuse a label list that does
// not cover exactly the generated vocabulary.

import type { LesionClassInfo, ModelCard } from './api.ts'
import { cardMalignant, cardMalignantExcluded } from './card.ts'
import { formatPercent } from './format.ts'
import { CLASSES, SEXES as SEX_VALUES, SITES as SITE_VALUES } from './generated/taxonomy.ts'

export type Site = (typeof SITE_VALUES)[number]
export type Sex = (typeof SEX_VALUES)[number]

/** Anatomic sites accepted by the API (ISIC "general" vocabulary; `torso` = side not known). */
export const SITES: readonly Site[] = SITE_VALUES

const SITE_LABEL_TEXT = {
  'anterior torso': 'Torso – front (chest, abdomen)',
  'posterior torso': 'Torso – back',
  'lateral torso': 'Torso – side',
  torso: 'Torso – side not known',
  'head/neck': 'Head or neck',
  'upper extremity': 'Arm',
  'lower extremity': 'Leg',
  'palms/soles': 'Palm or sole',
  'oral/genital': 'Mouth or genital area',
} satisfies Record<Site, string>

export const SITE_LABELS: Record<string, string> = SITE_LABEL_TEXT

/** The body sites as list choices, in the taxonomy's order. */
export const SITE_CHOICES = SITES.map((value) => ({ value, label: SITE_LABELS[value] }))

const SEX_LABELS = { female: 'Female', male: 'Male' } satisfies Record<Sex, string>

/** Sex choices in display order (female first). */
export const SEXES = Object.entries(SEX_LABELS).map(([value, label]) => ({ value, label }))

/** Used when /api/v1/classes cannot be loaded: every class of dermsight.taxonomy. */
export const FALLBACK_CLASSES: LesionClassInfo[] = CLASSES.map((c) => ({ ...c }))

export interface RiskText {
  label: string
  patientLabel: string
  nextStep: string
  /** the next step in the patient view (no clinical shorthand such as "Refer") */
  patientNextStep: string
}

export const RISK_TEXT: Record<string, RiskText> = {
  high: {
    label: 'High risk',
    patientLabel: 'Higher risk',
    nextStep: 'Refer / see a dermatologist soon',
    patientNextStep: 'See a dermatologist soon',
  },
  moderate: {
    label: 'Moderate risk',
    patientLabel: 'Some concern',
    nextStep: 'Have it checked; monitor for changes',
    patientNextStep: 'Have it checked by a doctor; watch it for changes',
  },
  low: {
    label: 'Low risk',
    patientLabel: 'Lower risk',
    nextStep: 'Low estimated risk; keep an eye on it and see a doctor if it changes',
    patientNextStep: 'Low estimated risk; keep an eye on it and see a doctor if it changes',
  },
  cannot_assess: {
    label: 'Cannot assess',
    patientLabel: 'Cannot assess',
    nextStep: 'We cannot assess this image',
    patientNextStep: 'This picture cannot be assessed',
  },
}

export function riskText(risk: string): RiskText {
  return (
    RISK_TEXT[risk] ?? {
      label: `Risk: ${risk}`,
      patientLabel: `Risk: ${risk}`,
      nextStep: 'Show the lesion to a doctor if you are unsure.',
      patientNextStep: 'Show the spot to a doctor if you are unsure.',
    }
  )
}

/** The result's headline as the audience on screen reads it: the label and the next step. */
export function riskHeadline(risk: string, audience: 'patient' | 'clinician'): { label: string; nextStep: string } {
  const t = riskText(risk)
  return audience === 'patient' ? { label: t.patientLabel, nextStep: t.patientNextStep } : { label: t.label, nextStep: t.nextStep }
}

/** Said once (polite live region) while an assessment runs long: no seconds count, which would be
 * read out again every second. */
export const SLOW_ANNOUNCEMENT = 'Still waiting for the server. It may be busy; you can cancel and try again.'

/**
 * What the Assess page's live region says: the result's headline in the words shown to this
 * audience (`headline`, when the screen shows another than the tier's: the patient view's
 * "Result uncertain", see RiskBanner's UNCERTAIN_HEADLINE); while the image is being analysed,
 * that it is (and, once slow, that it still is).
 */
export function assessAnnouncement(state: {
  risk: string | null
  audience: 'patient' | 'clinician'
  busy: boolean
  slow: boolean
  headline?: { label: string; nextStep: string } | null
}): string {
  if (state.risk !== null) {
    const h = state.headline ?? riskHeadline(state.risk, state.audience)
    // "Result uncertain" is said "Result: uncertain", not "Result: Result uncertain"
    return `Result: ${h.label.replace(/^Result\s+/, '')}. ${h.nextStep.replace(/[.\s]+$/, '')}.`
  }
  if (!state.busy) return ''
  return state.slow ? SLOW_ANNOUNCEMENT : 'Analysing the image…'
}

// --- flags (warnings and refusals) in the patient view ------------------------------------------

/**
 * A flag's meaning in plain words for the patient view, by its code (the server's `code`; the
 * clinician view shows the server's own, technical, message). A code not listed here gets
 * `patientFlagFallback`.
 */
export const PATIENT_FLAG_TEXT: Record<string, string> = {
  compressed: 'This picture has been compressed, so the result may be less reliable. Use the original photo if you can.',
  not_dermoscopic:
    'This looks like an ordinary photo, not a picture taken with a dermatoscope (a skin magnifier). The model was only ' +
    'tested on dermatoscope pictures, so how reliable this result is, is not known.',
  metadata_ignored:
    'Some of the details given (typed in, or stored in the picture’s file) could not be used, so the result was ' +
    'worked out without them.',
  metadata_normalised:
    'Some of the details given (typed in, or stored in the picture’s file) were read in a different form from how ' +
    'they were given. Check that they are right.',
  site_contradicts_lesion: 'The body site given does not match the body site recorded for this spot, so it was not used.',
  site_contradicts_earlier_visit: 'The body site of this picture does not match the one of an earlier picture of this spot: check that both are of the same spot.',
  too_small: 'This picture is too small to assess. Use a larger picture, taken closer to the spot.',
  blank: 'No spot can be seen in this picture.',
  too_dark: 'This picture is too dark to assess. Take it again in good light.',
  overexposed: 'This picture is too bright, or too much of it is pure black or white. Take it again without glare or flash.',
  blurred: 'This picture is too blurred to assess. Hold still and check that it is sharp.',
  noise: 'This picture is too grainy: no spot can be seen.',
  greyscale: 'This picture is in black and white. The model needs the colour photo.',
  out_of_distribution:
    'The model does not recognise this as the kind of picture it was built for (a dermatoscope picture of a skin ' +
    'spot), so it cannot be assessed.',
  recoloured: 'The colours of this picture look changed, for example by a photo filter. Send the photo as it was taken.',
}

/** A flag whose code has no plain wording: a refusal, or a warning that the result may be less reliable.
 * A refusal's line goes under the banner, which already says that the picture cannot be assessed
 * (`RISK_TEXT.cannot_assess`): it says where the reason is instead of repeating the headline. */
export function patientFlagFallback(blocking: boolean): string {
  return blocking
    ? 'The reason is not described in plain words here: the clinician view shows it.'
    : 'Something about this picture or the details given may make the result less reliable.'
}

/** A flag in plain words for the patient view (see `PATIENT_FLAG_TEXT`). */
export function patientFlagText(flag: { code: string; blocking?: boolean }): string {
  return Object.hasOwn(PATIENT_FLAG_TEXT, flag.code) ? PATIENT_FLAG_TEXT[flag.code] : patientFlagFallback(flag.blocking !== false)
}

// --- class probabilities in the patient view ----------------------------------------------------

/** The heading over the class probabilities in the patient view: the model's estimate, not a diagnosis. */
export const PATIENT_PROBS_TITLE = 'The model’s estimate — not a diagnosis'

/** Under that heading: what the numbers are, and what they are not. */
export const PATIENT_PROBS_NOTE =
  'These are the model’s estimates for this picture, rounded. They are not a diagnosis and not your own chance of ' +
  'having each type of spot: only a doctor who examines the spot can tell.'

/**
 * A class probability in the patient view: a whole percentage, with "under 1%" and "over 99%" at
 * the ends, so that a model's 99.5% or 0.02% does not read as a certainty about the spot (the
 * clinician view keeps `formatProbability`'s tenths).
 */
export function patientPercent(p: number | null | undefined): string {
  if (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > 1) return '—'
  if (p < 0.01) return 'under 1%'
  if (p > 0.99) return 'over 99%'
  return `${Math.round(p * 100)}%`
}

export const PHOTO_TIPS = [
  'Sharp focus: tap to focus, hold still, and check the picture is not blurred.',
  'Put the lesion in the centre and fill most of the picture with it.',
  'Use a dermatoscope in contact with the skin (with gel or alcohol) if you have one.',
  'Use good, even light; avoid glare, shadows and flash reflections.',
  'Send the colour picture as the camera took it, without photo filters: black-and-white images are refused, and sepia or other tints give wrong answers.',
  'Keep hair, air bubbles, pen marks and rulers out of the picture where possible.',
]

export const DISCLAIMER_FALLBACK =
  'Decision support only, not a diagnosis. A dermatologist must examine any lesion that worries you or the patient.'

// --- what the numbers of a result are called ---------------------------------------------------

/** The class the decision rule picks (`prediction`), which is not always the most probable one. */
export const SUGGESTED_CLASS = 'Suggested class'

/** What a result's malignant figure is computed from (`malignant_probability` and `probabilities`). */
export interface MalignantResult {
  malignant_probability?: number | null
  probabilities?: Record<string, number> | null
}

/** Rounding of the API's numbers (6 decimals each): a sum of four rounded values is off by < 5e-6. */
const ROUNDING = 1e-5

/**
 * The classes left out of the malignant figure's denominator: the card's `malignant_excluded`; without
 * a card (not loaded yet, or failed) read from the result itself: [] when the figure is the plain
 * sum P(MEL) + P(BCC) + P(SCC), ['UNK'] when it is that sum / (1 − P(UNK)), null when it cannot
 * be told (no result, or a figure that matches neither).
 */
export function malignantExcluded(card: ModelCard | null, result?: MalignantResult | null): string[] | null {
  if (card) return cardMalignantExcluded(card)
  const mp = result?.malignant_probability
  const probs = result?.probabilities
  if (typeof mp !== 'number' || !probs) return null
  const sum = ['MEL', 'BCC', 'SCC'].reduce((s, c) => s + (typeof probs[c] === 'number' ? probs[c] : 0), 0)
  const unk = probs[UNSPECIFIED_CLASS]
  const share = typeof unk === 'number' && unk < 1 ? sum / (1 - unk) : null
  if (Math.abs(mp - sum) <= ROUNDING) return share !== null && Math.abs(mp - share) <= ROUNDING && unk > ROUNDING ? null : []
  if (share !== null && Math.abs(mp - share) <= ROUNDING) return [UNSPECIFIED_CLASS]
  return null
}

/**
 * The name of `malignant_probability` for this card. A card that leaves classes out of the
 * denominator (`malignant_excluded`, UNK in the shipped model) serves the malignant share among
 * the specific diagnoses, (MEL + BCC + SCC) / (1 − UNK): not an absolute probability when UNK
 * holds most of it, so it is not called one. Without a card the result tells which it is
 * (`malignantExcluded`); when it cannot, the label says neither.
 */
export function malignantLabel(card: ModelCard | null, result?: MalignantResult | null): string {
  const codes = card ? cardMalignant(card) : []
  const sum = (codes.length > 0 ? codes : ['MEL', 'BCC', 'SCC']).join(' + ')
  const excluded = malignantExcluded(card, result)
  if (excluded === null) return `Malignant figure (${sum})`
  if (excluded.length === 0) return `Malignant probability (${sum})`
  return `Malignant share among the specific diagnoses ((${sum}) / (1 − ${excluded.join(' − ')}))`
}

/** "malignant share" or "malignant probability", for a sentence (e.g. the tier's thresholds). */
export function malignantShortName(card: ModelCard | null): string {
  return cardMalignantExcluded(card).length > 0 ? 'malignant share' : 'malignant probability'
}

/**
 * Under the malignant share, when the classes left out of it hold most of the probability
 * (e.g. UNK 99.7 %): the share is taken among the small rest, so it is no absolute probability.
 * Without a card, the classes left out are read from the result (`malignantExcluded`).
 */
export function malignantShareNote(
  card: ModelCard | null,
  probabilities: Record<string, number>,
  malignant?: number | null,
): string | null {
  const excluded = malignantExcluded(card, { malignant_probability: malignant, probabilities }) ?? []
  const out = excluded.reduce((s, c) => s + (typeof probabilities[c] === 'number' ? probabilities[c] : 0), 0)
  if (excluded.length === 0 || out < 0.5) return null
  return (
    `${excluded.join(', ')} holds ${formatPercent(out)} of the probability: this share is taken among the other ` +
    `${formatPercent(1 - out)}, so it is not the absolute probability of a cancer. The risk tier uses it on purpose, ` +
    `so that ${excluded.join(', ')} never lowers the risk.`
  )
}

/**
 * The patient view's counterpart of `malignantShareNote`: when the classes left out of the risk
 * level's share (UNK, "Other / unknown", in the shipped model) hold most of the estimate (the same
 * condition), a "Higher risk" or "Some concern" result can stand beside cancer bars of "1%" or
 * "under 1%". This says why, in plain words and without saying what the spot is. Null for the
 * other tiers, or when the share note would not be shown.
 */
export function patientShareNote(
  card: ModelCard | null,
  probabilities: Record<string, number>,
  malignant: number | null | undefined,
  risk: string,
  nameOf: (code: string) => string = (c) => c,
): string | null {
  if (risk !== 'high' && risk !== 'moderate') return null
  if (malignantShareNote(card, probabilities, malignant) === null) return null
  const excluded = malignantExcluded(card, { malignant_probability: malignant, probabilities }) ?? []
  const names = excluded.map((c) => `“${nameOf(c)}”`).join(' and ')
  const share = risk === 'high' ? 'a large share, so a doctor should look at it' : 'a noticeable share, so a doctor should check it'
  return (
    `Most of the estimate went to ${names}. The risk level looks only at the named types of spot, and among those ` +
    `the cancers take ${share}.`
  )
}

/** The hint under a lesion's visits: what the change between two visits is a change of. */
export function changeHint(card: ModelCard | null): string {
  const what = card
    ? malignantLabel(card).replace(/^M/, 'm')
    : 'malignant share among the specific diagnoses ((MEL + BCC + SCC) / (1 − UNK) for the shipped model)'
  return (
    `The change is the model’s ${what} at the later visit minus the earlier one, in percentage points. ` +
    'Photos taken with another camera, light or zoom change the number too.'
  )
}

// --- similar cases ------------------------------------------------------------------------------

/** The class of the reference images labelled "unknown" in ISIC 2020 (no specific diagnosis). */
export const UNSPECIFIED_CLASS = 'UNK'

export const SIMILAR_TITLE = 'Similar labelled cases'

export const SIMILAR_INTRO =
  'Training images, each with the diagnosis its collection gives it, that look most alike to the model’s ' +
  'own features (cosine similarity, 1 = identical to the model). “Other / unknown” (UNK) means not further ' +
  'specified: ISIC 2020 labels it benign without naming a diagnosis. They are a visual comparison, not a ' +
  'diagnosis and not a second opinion: visually similar lesions can have different diagnoses.'

/** How a reference image's label reads: "Melanoma", or for UNK "Other / unknown, not further specified". */
export function referenceLabel(code: string, name: string): string {
  const shown = name || code
  return code === UNSPECIFIED_CLASS ? `${shown}, not further specified` : shown
}
