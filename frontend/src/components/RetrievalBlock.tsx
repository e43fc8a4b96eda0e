// The card's `retrieval` section on the Model page: how often the similar cases shown beside a
// result share the query's diagnosis (precision@k per class on the TEST split), and the k-NN vote
// of those neighbours against the classifier's own suggestion on the same images.
import type { ModelCard } from '../api.ts'
import { dig, num, rec } from '../card.ts'
import { formatNumber, formatPercent } from '../format.ts'
import { TableWrap } from './TableWrap.tsx'

interface Accuracy {
  accuracy: number | null
  balanced: number | null
  correct: number | null
  n: number | null
}

function accuracy(v: unknown): Accuracy | null {
  const r = rec(v)
  if (!r) return null
  return { accuracy: num(r.accuracy), balanced: num(r.balanced_accuracy), correct: num(r.correct), n: num(r.n) }
}

/** True when the card has a measured retrieval section (the Model page lists it then). */
export function hasRetrieval(card: ModelCard | null): boolean {
  return rec(dig(card, 'retrieval', 'test', 'precision_at_k', 'per_class')) !== null
}

export function RetrievalBlock({ card }: { card: ModelCard }) {
  const test = rec(dig(card, 'retrieval', 'test'))
  const perClass = rec(dig(test, 'precision_at_k', 'per_class'))
  if (!test || !perClass) return null
  const k = num(test.k) ?? 5
  const reference = rec(dig(card, 'retrieval', 'reference'))
  const nRef = num(reference?.n_images ?? test.n_reference)
  const vote = accuracy(test.knn_vote)
  const clf = accuracy(test.classifier)
  const names = rec(dig(card, 'class_names')) ?? {}
  return (
    <section className="card-block" id="model-retrieval" data-testid="retrieval">
      <h2>Similar cases</h2>
      <p>
        Beside each assessable result the {k} reference images most similar to it by the model’s own features are shown
        {nRef !== null && <> (from {formatNumber(nRef)} training images shipped with the model)</>}. They are a visual
        comparison, not a diagnosis. Measured on the {formatNumber(num(test.n_queries))} test images: how many of the {k}{' '}
        neighbours have the query’s diagnosis.
      </p>
      <TableWrap>
        <table className="data-table" data-testid="retrieval-table">
          <caption>Precision@{k} per class (test split)</caption>
          <thead>
            <tr>
              <th scope="col">Class</th>
              <th scope="col" className="num">Test images</th>
              <th scope="col" className="num">Reference images</th>
              <th scope="col" className="num">Neighbours with the same diagnosis</th>
            </tr>
          </thead>
          <tbody>
            {Object.entries(perClass).map(([code, row]) => {
              const r = rec(row)
              const name = typeof names[code] === 'string' ? (names[code] as string) : code
              return (
                <tr key={code}>
                  <th scope="row">
                    {name} ({code})
                  </th>
                  <td className="num">{formatNumber(num(r?.n_queries))}</td>
                  <td className="num">{formatNumber(num(r?.n_reference))}</td>
                  <td className="num">{formatPercent(num(r?.precision_at_k))}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </TableWrap>
      {vote && clf && (
        <TableWrap>
          <table className="data-table" data-testid="retrieval-vote">
            <caption>The {k} neighbours’ majority diagnosis against the classifier (same test images)</caption>
            <thead>
              <tr>
                <th scope="col">
                  <span className="visually-hidden">Method</span>
                </th>
                <th scope="col" className="num">Accuracy</th>
                <th scope="col" className="num">Balanced accuracy</th>
              </tr>
            </thead>
            <tbody>
              {[
                ['k-NN vote of the similar cases', vote],
                ['Classifier (suggested class)', clf],
              ].map(([label, a]) => {
                const acc = a as Accuracy
                return (
                  <tr key={label as string}>
                    <th scope="row">{label as string}</th>
                    <td className="num">
                      {formatPercent(acc.accuracy)}
                      {acc.correct !== null && acc.n !== null && (
                        <span className="muted">
                          {' '}
                          ({formatNumber(acc.correct)}/{formatNumber(acc.n)})
                        </span>
                      )}
                    </td>
                    <td className="num">{formatPercent(acc.balanced)}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </TableWrap>
      )}
    </section>
  )
}
