import type { PredictResponse } from '../api.ts'
import { SIMILAR_INTRO, SIMILAR_TITLE, referenceLabel } from '../content.ts'
import { useApiImage } from '../hooks.ts'

/** One entry of a predict response's `similar` list (see the API's SimilarCaseOut). */
export interface SimilarCase {
  image_id: string
  diagnosis: string
  diagnosis_name: string
  similarity: number
  thumbnail_url: string
  licence: string
  attribution: string
}

export function isSimilarCase(v: unknown): v is SimilarCase {
  if (typeof v !== 'object' || v === null) return false
  const r = v as Record<string, unknown>
  return (
    typeof r.image_id === 'string' &&
    typeof r.diagnosis === 'string' &&
    typeof r.similarity === 'number' &&
    typeof r.thumbnail_url === 'string'
  )
}

/** The similar cases of a result: none for "cannot assess" or an answer without the field. */
export function similarCases(res: PredictResponse): SimilarCase[] {
  if (res.risk === 'cannot_assess') return []
  const raw = (res as { similar?: unknown }).similar
  return Array.isArray(raw) ? raw.filter(isSimilarCase) : []
}

export function SimilarCaseFigure({ item }: { item: SimilarCase }) {
  const { src } = useApiImage(item.thumbnail_url)
  const name = referenceLabel(item.diagnosis, item.diagnosis_name)
  return (
    <figure className="example" data-testid="similar-case">
      {src ? (
        <img src={src} alt={`Reference image ${item.image_id}, labelled ${name}`} width={96} height={96} style={{ width: 96, height: 96 }} />
      ) : (
        <div className="example-ph" style={{ width: 96, height: 96 }} aria-hidden="true" />
      )}
      <figcaption>
        <strong>{name}</strong> ({item.diagnosis}) · similarity {item.similarity.toFixed(2)}
        <br />
        {item.image_id} · {item.licence}
        {item.attribution && <> · {item.attribution}</>}
      </figcaption>
    </figure>
  )
}

/** The reference images the model finds most similar to this one, with their labels (UNK: not further specified). */
export function SimilarCases({ result }: { result: PredictResponse }) {
  const cases = similarCases(result)
  if (cases.length === 0) return null
  return (
    <section className="no-print" data-testid="similar-cases" aria-labelledby="similar-cases-title">
      <h3 id="similar-cases-title">{SIMILAR_TITLE}</h3>
      <p className="muted">{SIMILAR_INTRO}</p>
      <div className="example-row">
        {cases.map((c) => (
          <SimilarCaseFigure key={c.image_id} item={c} />
        ))}
      </div>
    </section>
  )
}
