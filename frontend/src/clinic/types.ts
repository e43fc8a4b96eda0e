// Shapes of the clinic API (/api/v1/auth, /patients, /lesions, /visits, /clinic, /admin).
// Present only when the server runs with case storage (`dermsight serve --database URL`).

import type { PredictResponse } from '../api.ts'

export type Role = 'clinician' | 'admin'

export interface User {
  id: number
  username: string
  role: Role
}

export interface Session {
  user: User
  csrf_token: string
  /** the server's idle timeout: the page hides after this many minutes without activity */
  idle_minutes?: number
}

export interface ApiTokenInfo {
  id: number
  name: string
  created_at: string
  last_used_at: string | null
  /** when it stops working (a request with it is then a 401: a new token is needed) */
  expires_at: string
  expired: boolean
  /** it stops working within 7 days (and has not yet) */
  expires_soon?: boolean
  /** whole days left (0 in its last day) */
  expires_in_days?: number
}

/** Any user's API token, as an admin lists them (never the token itself). */
export interface AdminApiTokenInfo extends ApiTokenInfo {
  user: string
  user_id: number
  revoked_at: string | null
}

export interface NewApiToken {
  id: number
  name: string
  token: string
  expires_at: string
}

/** An API token's lifetime in days: the server's default and the range it accepts. */
export const TOKEN_DAYS = { default: 90, min: 1, max: 365 } as const

export interface AuditEntry {
  /** the event's id: the next, older page is the one `before` the last id of a page */
  id?: number
  at: string
  user: string | null
  action: string
  object_type: string | null
  object_id: number | string | null
  /** the patient the event concerns (none on events logged before this release) */
  patient_id?: number | null
}

/** What the audit log lists: filters (combined) and the page (`before`: an event id). */
export interface AuditQuery {
  limit?: number
  before?: number
  user?: string
  patient?: number
}

export type Side = 'left' | 'right' | 'midline'
export type MapView = 'front' | 'back'

export interface MapPoint {
  view: MapView
  x: number
  y: number
}

export interface PatientSummary {
  id: number
  ref: string
  created_at: string
  n_lesions: number
  n_visits: number
  last_visit_at: string | null
  /** the tier of the patient's latest assessed visit ("cannot_assess" only when none was assessed) */
  latest_risk: string | null
  /** the latest visit's own tier ("cannot_assess": its photo could not be assessed) */
  latest_visit_risk: string | null
  /** the highest of the lesions' latest_risk */
  highest_risk: string | null
  /** lesions whose latest photo could not be assessed (a retake is needed) */
  n_lesions_latest_cannot_assess: number
  /** any lesion's risk rose between its last two assessed visits (not a lesion's whose confirmed
   * diagnosis was recorded on or after the day of the rise's later photo) */
  risk_rose: boolean
  /** each diagnosed lesion's confirmed diagnosis, malignant ones first */
  confirmed: ConfirmedDiagnosis[]
  /** how many of `confirmed` are malignant (MEL, BCC, SCC) */
  n_confirmed_malignant: number
}

/** A lesion's confirmed diagnosis as the patient list gives it. */
export interface ConfirmedDiagnosis {
  lesion_id: number
  code: string
  method: 'histopathology' | 'clinical'
  /** a malignant class of the taxonomy (MEL, BCC, SCC) */
  malignant: boolean
}

export interface Diagnosis {
  code: string
  method: 'histopathology' | 'clinical'
  note: string | null
  recorded_by: string | null
  recorded_at: string
}

export interface Lesion {
  id: number
  body_site: string | null
  side: Side | null
  location: string | null
  map: MapPoint | null
  n_visits: number
  /** the tier of the latest assessed visit ("cannot_assess" only when none was assessed) */
  latest_risk: string | null
  latest_malignant_probability: number | null
  /** the date of the visit latest_risk comes from */
  latest_risk_taken_at: string | null
  /** the latest visit's own tier ("cannot_assess": its photo could not be assessed) */
  latest_visit_risk: string | null
  /** the risk rose between the last two assessed visits (not when the confirmed diagnosis was
   * recorded on or after the day of the rise's later photo) */
  risk_rose: boolean
  diagnosis: Diagnosis | null
}

export interface Patient {
  id: number
  ref: string
  created_at: string
  lesions: Lesion[]
}

export interface Visit {
  id: number
  lesion_id: number
  taken_at: string
  created_at: string
  created_by: string | null
  age: number | null
  sex: string | null
  site: string | null
  note: string | null
  result: PredictResponse
  image_url: string
  heatmap_url: string | null
  model: { name?: string; version?: string; bundle_sha256?: string }
}

export interface Change {
  from_visit: number
  to_visit: number
  days: number | null
  malignant_delta: number | null
  tier_from: string | null
  tier_to: string | null
  risk_rose: boolean
}

export interface LesionDetail {
  lesion: Lesion
  patient: { id: number; ref: string }
  visits: Visit[]
  changes: Change[]
  diagnosis: Diagnosis | null
}

export interface Estimate {
  value: number | null
  lo?: number | null
  hi?: number | null
  k?: number
  n?: number
  /** why the value is withheld (too few cases), when it is */
  reason?: string | null
  withheld?: string | boolean | null
  /** how the interval was made: Wilson widened to the bootstrap (proportions) or the bootstrap */
  method?: 'wilson+bootstrap' | 'bootstrap'
  /** an AUC's two sides: the positives (e.g. melanomas) and the negatives (the others) */
  positives?: number
  negatives?: number
  /** why an estimate with a value has no interval (the bootstrap's resamples all gave one value) */
  note?: string | null
}

export interface ModelFigures {
  name: string
  version: string
  n_lesions: number
  n_malignant: number
  n_mel: number
  /** lesions confirmed Other / unknown (UNK): in no sensitivity, specificity or AUC */
  n_unk?: number
  refer: { sensitivity: Estimate | null; specificity: Estimate | null } | null
  mel_auc: Estimate | null
  confusion: { labels: string[]; matrix: number[][] } | null
  note?: string | null
  /** confirmed lesions this version saw but could assess on no visit (in no figure) */
  n_left_out_cannot_assess?: number
  n_left_out_site_in_doubt?: number
}

export interface Dashboard {
  models: ModelFigures[]
  /** confirmed lesions no model version could assess (in no figures at all) */
  n_left_out_cannot_assess?: number
  n_left_out_site_in_doubt?: number
}

/** One of the clinic's own confirmed lesions near a visit (GET /visits/{id}/similar). */
export interface ClinicSimilarCase {
  visit_id: number
  diagnosis: string
  diagnosis_name?: string
  similarity: number
  thumbnail_url: string
}

export interface VisitSimilar {
  /** the bundled reference set (same shape as /predict's `similar`) */
  reference: unknown[]
  clinic: ClinicSimilarCase[]
}
