import { getSimilar } from '../clinic/api.ts'
import { ErrorBox } from '../clinic/badges.tsx'
import { useLoad } from '../clinic/session.ts'
import type { ClinicSimilarCase, Visit } from '../clinic/types.ts'
import { isSimilarCase, SimilarCaseFigure } from './SimilarCases.tsx'
import { visitDate } from './VisitTimeline.tsx'

function ClinicCaseFigure({ item }: { item: ClinicSimilarCase }) {
  const name = item.diagnosis_name || item.diagnosis
  return (
    <figure className="example" data-testid="clinic-similar-case">
      <img src={item.thumbnail_url} alt={`A confirmed ${name} of this clinic`} width={96} height={96} style={{ width: 96, height: 96, objectFit: 'cover' }} />
      <figcaption>
        <strong>{name}</strong> ({item.diagnosis}) · similarity {item.similarity.toFixed(2)}
      </figcaption>
    </figure>
  )
}

/** Which visit the similar cases are for: the latest, or the latest one the model could assess. */
export function similarFor(visit: Visit, latest: boolean): string {
  return latest
    ? 'For the latest visit'
    : `For the visit of ${visitDate(visit)}, the latest one the model could assess (the latest photo could not be assessed)`
}

/** The nearest labelled cases to a visit: the bundled reference set and this clinic's own. */
export function ClinicSimilar({ visit, latest = true }: { visit: Visit; latest?: boolean }) {
  const similar = useLoad(() => getSimilar(visit.id), String(visit.id))
  if (visit.result.risk === 'cannot_assess') return null
  const reference = (similar.data?.reference ?? []).filter(isSimilarCase)
  const clinic = similar.data?.clinic ?? []
  return (
    <div data-testid="clinic-similar">
      <p className="muted">
        {similarFor(visit, latest)}: labelled reference images and this clinic’s confirmed lesions whose images look most alike to the model’s own features (cosine
        similarity, 1 = identical to the model). A visual comparison, not a diagnosis and not a second opinion:
        similar-looking lesions can have different diagnoses.
      </p>
      <ErrorBox error={similar.error} what="Could not load the similar cases." />
      <h3>Reference images (training data, with their licences)</h3>
      {reference.length ? (
        <div className="example-row">
          {reference.map((c) => (
            <SimilarCaseFigure key={c.image_id} item={c} />
          ))}
        </div>
      ) : (
        <p className="muted">{similar.loading ? 'Loading…' : 'None: this visit was assessed by another model than the one served, or the model has no reference set.'}</p>
      )}
      <h3>This clinic’s confirmed lesions</h3>
      {clinic.length ? (
        <div className="example-row">
          {clinic.map((c) => (
            <ClinicCaseFigure key={c.visit_id} item={c} />
          ))}
        </div>
      ) : (
        <p className="muted" data-testid="clinic-similar-none">
          {similar.loading ? 'Loading…' : 'None yet: other lesions with a confirmed diagnosis, assessed by the same model, appear here.'}
        </p>
      )}
    </div>
  )
}
