import type { ModelCard } from '../api.ts'

interface TierCount {
  n: number
  malignant: number
  per100: number
}

/** The card's `natural_frequencies` entry for one risk tier (counted on the validation split). */
export function tierFrequency(card: ModelCard | null, risk: string): { tier: TierCount; limits: string | null; total: number | null } | null {
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
  }
}

/** "Of 100 lesions that get this result, about N turned out to be cancer", with its limits. */
export function NaturalFrequency({ card, risk }: { card: ModelCard | null; risk: string }) {
  const f = tierFrequency(card, risk)
  if (!f) return null
  const { tier } = f
  // rounding 3 in 676 to "about 0" would say "never": say "fewer than 1" instead
  const howMany = tier.per100 >= 1 ? `about ${tier.per100}` : tier.malignant > 0 ? 'fewer than 1' : 'none'
  return (
    <div className="natural-frequency" data-testid="natural-frequency">
      <p>
        <strong>
          Of 100 lesions that get this result, {howMany} turned out to be cancer
        </strong>{' '}
        (melanoma, basal cell or squamous cell carcinoma). Counted on the {tier.n.toLocaleString()} validation images
        (kept out of training) that got this result: {tier.malignant.toLocaleString()} were cancer.
      </p>
      {f.limits && <p className="muted">{f.limits}</p>}
    </div>
  )
}
