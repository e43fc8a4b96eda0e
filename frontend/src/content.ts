// Static wording shared by the pages. The vocabularies (classes, sexes, anatomic sites) come from
// src/generated/taxonomy.ts, generated from dermsight.taxonomy (tools/gen_frontend_types.py);
// only their display labels live here, and `satisfies` makes tsc refuse a label list that does
// not cover exactly the generated vocabulary.

import type { LesionClassInfo } from './api.ts'
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
}

export const RISK_TEXT: Record<string, RiskText> = {
  high: {
    label: 'High risk',
    patientLabel: 'Higher risk',
    nextStep: 'Refer / see a dermatologist soon',
  },
  moderate: {
    label: 'Moderate risk',
    patientLabel: 'Some concern',
    nextStep: 'Have it checked; monitor for changes',
  },
  low: {
    label: 'Low risk',
    patientLabel: 'Lower risk',
    nextStep: 'Low estimated risk; keep an eye on it and see a doctor if it changes',
  },
  cannot_assess: {
    label: 'Cannot assess',
    patientLabel: 'Cannot assess',
    nextStep: 'We cannot assess this image',
  },
}

export function riskText(risk: string): RiskText {
  return (
    RISK_TEXT[risk] ?? {
      label: `Risk: ${risk}`,
      patientLabel: `Risk: ${risk}`,
      nextStep: 'Show the lesion to a doctor if you are unsure.',
    }
  )
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
