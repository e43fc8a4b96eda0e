import type { ModelCard } from '../api.ts'
import type { Audience } from '../hooks.ts'

interface TierCount {
  n: number
  malignant: number
  per100: number
}

/** The card's `natural_frequencies` entry for one risk tier (counted on the validation split). */
export function tierFrequency(
  card: ModelCard | null,
  risk: string,
): { tier: TierCount; limits: string | null; total: number | null; malignant: number | null } | null {
  const nf = card && typeof card.natural_frequencies === 'object' && card.natural_frequencies !== null
    ? (card.natural_frequencies as Record<string, unknown>)
    : null
  const perTier = nf && typeof nf.per_tier === 'object' && nf.per_tier !== null ? (nf.per_tier as Record<string, unknown>) : null
  const t = perTier ? (perTier[risk] as Record<string, unknown> | undefined) : undefined
  if (!t || typeof t.n !== 'number' || typeof t.malignant !== 'number' || typeof t.per_100 !== 'number' || t.n === 0) return null
  return {
    tier: { n: t.n, malignant: t.malignant, per100: t.per_100 },
    limits: typeof nf?.limits === 'string' ? nf.limits : null,
    total: typeof nf?.n === 'number' ? nf.n : null,
    malignant: typeof nf?.malignant === 'number' ? nf.malignant : null,
  }
}

/** A number rounded as Python's `round` does (half to even: 6.5 → 6, 7.5 → 8), so that a share
 * said here is the one the card's text (`limits_text`, in Python) says. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x)
  if (x - f !== 0.5) return Math.round(x)
  return f % 2 === 0 ? f : f + 1
}

/** The card's `limits` in the patient view's words (the card's own text speaks of "validation
 * images" and "this patient's own risk"): the same share of cancers, as the card's text rounds it
 * (`dermsight.evaluate.frequencies.limits_text`). */
export function patientLimits(total: number | null, malignant: number | null): string {
  let share = ''
  if (total !== null && malignant !== null && total > 0) {
    if (!malignant) share = ', where none of the spots were cancer'
    else if (2 * malignant > total) share = `, where about ${roundHalfEven((100 * malignant) / total)} % of the spots were cancer`
    else share = `, where about 1 in ${roundHalfEven(total / malignant)} of the spots were cancer`
  }
  return (
    `These photos come from public research collections of dermatoscope pictures${share}, not from any one clinic ` +
    'or group of people. This says how often this result went with cancer in those photos; it is not your own ' +
    'chance of having cancer, which depends on who you are and why the spot is being checked.'
  )
}

/** "Of 100 lesions that get this result, about N turned out to be cancer", with its limits (in
 * plain words in the patient view). */
export function NaturalFrequency({ card, risk, audience = 'clinician' }: { card: ModelCard | null; risk: string; audience?: Audience }) {
  const f = tierFrequency(card, risk)
  if (!f) return null
  const { tier } = f
  const patient = audience === 'patient'
  // rounding 3 in 676 to "about 0" would say "never": say "fewer than 1" instead
  const howMany = tier.per100 >= 1 ? `about ${tier.per100}` : tier.malignant > 0 ? 'fewer than 1' : 'none'
  const counted = patient
    ? `Counted on the ${tier.n.toLocaleString()} research photos (kept out of the tool’s training) that got this result`
    : `Counted on the ${tier.n.toLocaleString()} validation images (kept out of training) that got this result`
  return (
    <div className="natural-frequency" data-testid="natural-frequency">
      <p>
        <strong>
          Of 100 lesions that get this result, {howMany} turned out to be cancer
        </strong>{' '}
        (melanoma, basal cell or squamous cell carcinoma). {counted}: {tier.malignant.toLocaleString()} were cancer.
      </p>
      {f.limits && <p className="muted">{patient ? patientLimits(f.total, f.malignant) : f.limits}</p>}
    </div>
  )
}
