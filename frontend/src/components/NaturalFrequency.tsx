import type { ModelCard } from '../api.ts'
import type { Audience } from '../hooks.ts'

interface TierCount {
  n: number
  malignant: number
  /** null: withheld, too few images in the tier to count (`MIN_TIER_IMAGES`) */
  per100: number | null
}

/** A tier counted on fewer images than this gets no frequency: "0 of 2" says nothing about how
 * often a result goes with cancer (the subgroup tables' limit, `dermsight.evaluate.settings.MIN_N`,
 * which the evaluation report also applies to these counts). */
export const MIN_TIER_IMAGES = 30

/** The `source` values of the public dermoscopic collections (`dermsight.evaluate.frequencies.
 * PUBLIC_SOURCES`): the counted images are called public research photos only when every source
 * of them is one of these. */
export const PUBLIC_SOURCES: ReadonlySet<string> = new Set([
  'ham10000', 'isic2016', 'isic2017', 'isic2018', 'isic2019', 'isic2020', 'isic_archive',
])

/** The shipped model's malignant classes, as the patient view has always named them. */
const SHIPPED_MALIGNANT = 'melanoma, basal cell or squamous cell carcinoma'
const PLAIN_NAMES: Record<string, string> = {
  MEL: 'melanoma',
  BCC: 'basal cell carcinoma',
  SCC: 'squamous cell carcinoma',
}
const TAXONOMY_MALIGNANT = ['MEL', 'BCC', 'SCC']

/** The card's malignant classes (`malignant`; absent: the taxonomy's malignant classes among its
 * `classes`, as the card schema says), or null when the card names neither. */
export function malignantCodes(card: ModelCard | null): string[] | null {
  if (!card) return null
  if (Array.isArray(card.malignant) && card.malignant.length) return card.malignant.map(String)
  if (Array.isArray(card.classes) && card.classes.length) return card.classes.filter((c) => TAXONOMY_MALIGNANT.includes(c))
  return null
}

/** What "cancer" counts, in plain words: the model's own malignant classes ("melanoma, basal
 * cell or squamous cell carcinoma" for the shipped model's three). */
export function malignantWords(card: ModelCard | null): string {
  const codes = malignantCodes(card)
  if (!codes) return SHIPPED_MALIGNANT
  if (codes.length === 3 && codes.every((c, i) => c === TAXONOMY_MALIGNANT[i])) return SHIPPED_MALIGNANT
  const names = codes.map((c) => PLAIN_NAMES[c] ?? card?.class_names?.[c]?.toLowerCase() ?? c)
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`
}

/** Whether the counted images come from the public collections: every source in the card's
 * `natural_frequencies.source_mix` is one of `PUBLIC_SOURCES` (unknown sources: not said). */
export function fromPublicCollections(card: ModelCard | null): boolean {
  const nf = card?.natural_frequencies as Record<string, unknown> | null | undefined
  const mix = nf && typeof nf.source_mix === 'object' && nf.source_mix !== null ? Object.keys(nf.source_mix) : []
  return mix.length > 0 && mix.every((s) => PUBLIC_SOURCES.has(s))
}

/** The card's `natural_frequencies` entry for one risk tier (counted on the validation split);
 * `per100` is null (withheld) for a tier of fewer than `MIN_TIER_IMAGES` images. */
export function tierFrequency(
  card: ModelCard | null,
  risk: string,
): { tier: TierCount; limits: string | null; total: number | null; malignant: number | null } | null {
  const nf = card && typeof card.natural_frequencies === 'object' && card.natural_frequencies !== null
    ? (card.natural_frequencies as Record<string, unknown>)
    : null
  const perTier = nf && typeof nf.per_tier === 'object' && nf.per_tier !== null ? (nf.per_tier as Record<string, unknown>) : null
  const t = perTier ? (perTier[risk] as Record<string, unknown> | undefined) : undefined
  if (!t || typeof t.n !== 'number' || typeof t.malignant !== 'number' || t.n === 0) return null
  const counted = typeof t.per_100 === 'number' && t.n >= MIN_TIER_IMAGES
  return {
    tier: { n: t.n, malignant: t.malignant, per100: counted ? (t.per_100 as number) : null },
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
export function patientLimits(total: number | null, malignant: number | null, fromPublic = true): string {
  let share = ''
  if (total !== null && malignant !== null && total > 0) {
    if (!malignant) share = ', where none of the spots were cancer'
    else if (2 * malignant > total) share = `, where about ${roundHalfEven((100 * malignant) / total)} % of the spots were cancer`
    else share = `, where about 1 in ${roundHalfEven(total / malignant)} of the spots were cancer`
  }
  const tail =
    'This says how often this result went with cancer in those photos; it is not your own ' +
    'chance of having cancer, which depends on who you are and why the spot is being checked.'
  if (!fromPublic) {
    return `These photos are the ones the tool was built from${share}, and need not be like the people it is used on. ${tail}`
  }
  return `These photos come from public research collections of dermatoscope pictures${share}, not from any one clinic or group of people. ${tail}`
}

/** "Of 100 lesions that get this result, about N turned out to be cancer", with its limits (in
 * plain words in the patient view). */
export function NaturalFrequency({ card, risk, audience = 'clinician' }: { card: ModelCard | null; risk: string; audience?: Audience }) {
  const f = tierFrequency(card, risk)
  if (!f) return null
  const { tier } = f
  const patient = audience === 'patient'
  const fromPublic = fromPublicCollections(card)
  const photos = fromPublic ? 'research photos' : 'photos'
  const limits = f.limits && <p className="muted">{patient ? patientLimits(f.total, f.malignant, fromPublic) : f.limits}</p>
  if (tier.per100 === null) {
    // a handful of images says nothing about how often a result goes with cancer: no figure
    const images = patient ? `${photos} (kept out of the tool’s training)` : 'validation images (kept out of training)'
    return (
      <div className="natural-frequency" data-testid="natural-frequency" data-withheld="true">
        <p>
          <strong>Too few images got this result to count how often it turned out to be cancer.</strong> Only{' '}
          {tier.n.toLocaleString()} {images} got it, fewer than the {MIN_TIER_IMAGES} needed.
        </p>
        {limits}
      </div>
    )
  }
  // rounding 3 in 676 to "about 0" would say "never": say "fewer than 1" instead
  const howMany = tier.per100 >= 1 ? `about ${tier.per100}` : tier.malignant > 0 ? 'fewer than 1' : 'none'
  const counted = patient
    ? `Counted on the ${tier.n.toLocaleString()} ${photos} (kept out of the tool’s training) that got this result`
    : `Counted on the ${tier.n.toLocaleString()} validation images (kept out of training) that got this result`
  return (
    <div className="natural-frequency" data-testid="natural-frequency">
      <p>
        <strong>
          Of 100 lesions that get this result, {howMany} turned out to be cancer
        </strong>{' '}
        ({malignantWords(card)}). {counted}: {tier.malignant.toLocaleString()} were cancer.
      </p>
      {limits}
    </div>
  )
}
