// Static wording and vocabularies shared by the pages.

import type { LesionClassInfo } from './api.ts'

/** Anatomic sites accepted by the API (ISIC "general" vocabulary; `torso` = side not known). */
export const SITES = [
  'anterior torso',
  'posterior torso',
  'lateral torso',
  'torso',
  'head/neck',
  'upper extremity',
  'lower extremity',
  'palms/soles',
  'oral/genital',
] as const

export const SITE_LABELS: Record<string, string> = {
  'anterior torso': 'Torso – front (chest, abdomen)',
  'posterior torso': 'Torso – back',
  'lateral torso': 'Torso – side',
  torso: 'Torso – side not known',
  'head/neck': 'Head or neck',
  'upper extremity': 'Arm',
  'lower extremity': 'Leg',
  'palms/soles': 'Palm or sole',
  'oral/genital': 'Mouth or genital area',
}

export const SEXES = [
  { value: 'female', label: 'Female' },
  { value: 'male', label: 'Male' },
]

/** Used when /api/v1/classes cannot be loaded (mirrors dermsight.taxonomy). */
export const FALLBACK_CLASSES: LesionClassInfo[] = [
  { code: 'MEL', name: 'Melanoma', lay: 'A cancer of the pigment cells. Can spread if not removed early; the most dangerous common skin cancer.', malignant: true },
  { code: 'NV', name: 'Melanocytic nevus', lay: 'A common mole: a benign cluster of pigment cells.', malignant: false },
  { code: 'BCC', name: 'Basal cell carcinoma', lay: 'The most common skin cancer. Grows slowly and rarely spreads, but needs treatment.', malignant: true },
  { code: 'AK', name: 'Actinic keratosis', lay: 'A rough, sun-damaged patch. Not cancer, but can turn into squamous cell carcinoma.', malignant: false, premalignant: true },
  { code: 'BKL', name: 'Benign keratosis', lay: 'Seborrhoeic keratosis, solar lentigo or lichen-planus-like keratosis: harmless growths or sun spots.', malignant: false },
  { code: 'DF', name: 'Dermatofibroma', lay: 'A firm, harmless bump in the skin, often on the legs.', malignant: false },
  { code: 'VASC', name: 'Vascular lesion', lay: 'A harmless lesion made of blood vessels, such as a cherry angioma.', malignant: false },
  { code: 'SCC', name: 'Squamous cell carcinoma', lay: 'A skin cancer of the outer skin cells. Usually treatable; can spread if neglected.', malignant: true },
]

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
  'Keep hair, air bubbles, pen marks and rulers out of the picture where possible.',
]

export const DISCLAIMER_FALLBACK =
  'Decision support only, not a diagnosis. A dermatologist must examine any lesion that worries you or the patient.'
