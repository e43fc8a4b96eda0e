// Model page: the cross-source validation tables and the table by skin tone (ITA).
// Both render nothing when the card has no such section (older cards, the shipped v1 card before
// tools/card_tables.py added them).

import type { ReactNode } from 'react'
import {
  CROSS_SOURCE_METRIC_LABELS,
  CROSS_SOURCE_PROTOCOLS,
  ciText,
  crossSourceCounts,
  isDegenerate,
  subgroupCounts,
  tooFew,
  type Counts,
  type CrossSourceRow,
  type CrossSourceTable,
  type Estimate,
  type ItaBand,
  type ItaTable,
} from '../card.ts'
import { format3, formatNumber, humanize } from '../format.ts'
import { TableWrap } from './TableWrap.tsx'

const CI = '95\u00a0% CI'

function Section({ id, title, testId, children }: { id: string; title: string; testId: string; children: ReactNode }) {
  return (
    <section className="card-block" id={`model-${id}`} data-testid={testId}>
      <h2>{title}</h2>
      {children}
    </section>
  )
}

/** "0.901" with the interval in small print: "0.875–0.922"; "withheld" or "—" without a value. An
 * interval that collapsed to a point is not shown as one: its cases and a Wilson interval instead
 * ("20 of 20; the bootstrap gives no interval, Wilson 95 % …") where `counts` are known, else "no
 * interval (every resample gave the same value)". */
export function EstimateCell({ e, counts, withheld }: { e: Estimate | null; counts?: Counts | null; withheld?: boolean }) {
  if (!e || e.value === null) {
    return <td className={withheld ? 'num withheld' : 'num'}>{withheld ? 'withheld' : '—'}</td>
  }
  const ci = ciText(e, counts)
  const degenerate = isDegenerate(e)
  return (
    <td className="num">
      {format3(e.value)}
      {ci && (
        <span
          className={degenerate ? 'ci ci-degenerate' : 'ci'}
          data-degenerate={degenerate || undefined}
          // the numbers' cells do not wrap; this sentence must, or it widens the whole column
          style={degenerate ? { whiteSpace: 'normal', minWidth: '12em' } : undefined}
        >
          {degenerate ? `(${ci})` : ci}
        </span>
      )}
    </td>
  )
}

/** "withheld (n < 30)" across all metric columns of a row that is too small to report. */
function WithheldCells({ span, minN }: { span: number; minN: number }) {
  return (
    <td className="num withheld" colSpan={span}>
      withheld (n &lt; {minN})
    </td>
  )
}

function runText(r: CrossSourceRow): string {
  const parts: string[] = []
  if (r.trainedOn.length) parts.push(`trained on ${r.trainedOn.join(', ')}`)
  if (r.run.config) parts.push(`config ${r.run.config}`)
  if (r.run.seed !== null) parts.push(`seed ${r.run.seed}`)
  return parts.join(', ')
}

export function CrossSourceBlock({ table }: { table: CrossSourceTable }) {
  const cols = table.metrics
  const commands = [...new Set(table.protocols.flatMap(([, rows]) => rows.map((r) => r.run.command)))].filter(
    (c): c is string => !!c,
  )
  return (
    <Section id="cross-source" title="Cross-source validation" testId="cross-source">
      <p>
        Does the model work on each data source, and on a source it never saw? Pooled numbers can hide a source where
        it fails, or be inflated when sources differ in their mix of diagnoses.
      </p>
      {table.protocols.map(([protocol, rows]) => {
        const info = CROSS_SOURCE_PROTOCOLS[protocol]
        const span = 5 + cols.length
        // one model run for every row: say it once under the table, not on each row
        const shared = new Set(rows.map(runText)).size === 1 ? runText(rows[0]) : null
        return (
          <div key={protocol} data-protocol={protocol}>
            <h3 className="sub-title">{info?.title ?? humanize(protocol)}</h3>
            {info && <p className="muted">{info.note}</p>}
            <TableWrap>
              <table className="data-table subgroup-table" data-testid={`cross-source-${protocol}`}>
                <caption className="visually-hidden">
                  {info?.title ?? protocol}: metrics per data source with {CI}
                </caption>
                <thead>
                  <tr>
                    <th scope="col">Source</th>
                    <th scope="col">Images</th>
                    <th scope="col">Groups</th>
                    <th scope="col">Malignant</th>
                    <th scope="col">Classes present</th>
                    {cols.map((c) => (
                      <th scope="col" key={c}>
                        {CROSS_SOURCE_METRIC_LABELS[c] ?? humanize(c)}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {rows.map((r) => {
                    const small = tooFew(r.nImages, table.minN)
                    const extra = [small ? null : r.note, shared === null ? runText(r) : null].filter(
                      (x): x is string => !!x,
                    )
                    return [
                      <tr key={r.source} className={r.note ? 'has-note' : undefined}>
                        <th scope="row" className="nowrap">
                          {r.source}
                        </th>
                        <td className="num">{formatNumber(r.nImages)}</td>
                        <td className="num">{formatNumber(r.nGroups)}</td>
                        <td className="num">{formatNumber(r.nMalignant)}</td>
                        <td>{r.classesPresent.join(', ') || '—'}</td>
                        {small ? (
                          <WithheldCells span={cols.length} minN={table.minN} />
                        ) : (
                          cols.map((c) => <EstimateCell key={c} e={r.metrics[c] ?? null} counts={crossSourceCounts(r, c)} withheld={!!r.note} />)
                        )}
                      </tr>,
                      extra.length > 0 && (
                        <NoteRow key={`${r.source}:note`} label={r.source} span={span}>
                          {extra.join('; ')}
                        </NoteRow>
                      ),
                    ]
                  })}
                </tbody>
              </table>
            </TableWrap>
            {shared && <p className="muted">Model run: {shared}.</p>}
          </div>
        )
      })}
      <p className="hint">
        Small print: {CI} (group bootstrap within each source). Metrics are withheld for sources under {table.minN}{' '}
        images, and an AUC, sensitivity or specificity with fewer than 5 cases on either side. Balanced accuracy is over
        the classes present in that source, so it is not comparable between sources with different class mixes.
      </p>
      {(commands.length > 0 || table.generatedBy) && (
        <p className="hint" data-testid="cross-source-reproduce">
          Reproduce: {commands.map((c) => <code key={c} className="wrap">{c}</code>)}
          {table.generatedBy && (
            <>
              {commands.length > 0 && '; tables computed with '}
              <code className="wrap">{table.generatedBy}</code>
            </>
          )}
        </p>
      )}
    </Section>
  )
}

const BAND_LABELS: Record<string, string> = { 'not estimable': 'not estimable (colour cast)' }

export function SkinToneBlock({ table }: { table: ItaTable }) {
  const span = 8
  return (
    <Section id="skin-tone" title="Performance by skin tone (test set)" testId="skin-tone">
      <p>
        There are no skin-type labels in the data, so the skin tone is <strong>estimated from each image</strong>: the
        individual typology angle (ITA) of the skin around the lesion, grouped into the Del Bino bands from very light
        to dark.
      </p>
      {table.statement && (
        <p className="status-warning" data-testid="skin-tone-statement">
          {table.statement}
        </p>
      )}
      <TableWrap>
        <table className="data-table subgroup-table" data-testid="skin-tone-table">
          <caption className="visually-hidden">Test metrics by estimated skin-tone band, with {CI}</caption>
          <SubgroupHead first="Skin tone (ITA)" />
          <tbody>
            {table.bands.map((b: ItaBand) => {
              const small = tooFew(b.n, table.minN)
              const dark = table.darkerBands.includes(b.subgroup)
              return [
                <tr key={b.subgroup} className={b.note ? 'has-note' : undefined} data-band={b.subgroup}>
                  <th scope="row" className="nowrap">
                    {dark ? <strong>{BAND_LABELS[b.subgroup] ?? b.subgroup}</strong> : (BAND_LABELS[b.subgroup] ?? b.subgroup)}
                    {b.itaRange && <span className="ci">{b.itaRange}</span>}
                  </th>
                  <td className="num">{formatNumber(b.n)}</td>
                  <td className="num">{formatNumber(b.nMalignant)}</td>
                  {small ? (
                    <WithheldCells span={5} minN={table.minN} />
                  ) : (
                    <>
                      <EstimateCell e={b.malignantAuc} withheld={!!b.note} />
                      <EstimateCell e={b.melAuc} withheld={!!b.note} />
                      <EstimateCell e={b.balancedAccuracy} withheld={!!b.note} />
                      <EstimateCell e={b.sensitivity} counts={subgroupCounts(b).sensitivity} withheld={!!b.note} />
                      <EstimateCell e={b.specificity} counts={subgroupCounts(b).specificity} withheld={!!b.note} />
                    </>
                  )}
                </tr>,
                b.note && !small && (
                  <NoteRow key={`${b.subgroup}:note`} label={b.subgroup} span={span}>
                    {b.note}
                  </NoteRow>
                ),
              ]
            })}
          </tbody>
        </table>
      </TableWrap>
      <p className="hint">
        Every band is listed with its image count, even when it has too few images for metrics (under {table.minN}:
        withheld). The estimate comes from dermoscopic colour, not a measurement: dim images of light skin also land in
        the darker bands, so their counts are an upper bound, and images with a blue or purple colour cast are “not
        estimable”.
        {table.method && <> Method: {table.method}</>}
      </p>
    </Section>
  )
}

/** The note row under a table row: why its numbers are withheld or qualified. */
export function NoteRow({ label, span, children }: { label: string; span: number; children: ReactNode }) {
  return (
    <tr className="note-row">
      <td colSpan={span}>
        <span className="note-text">
          <span className="visually-hidden">Note for {label}: </span>
          {children}
        </span>
      </td>
    </tr>
  )
}

/** The header of a per-subgroup metrics table (subgroups, skin-tone bands): the same columns. */
export function SubgroupHead({ first }: { first: string }) {
  return (
    <thead>
      <tr>
        <th scope="col">{first}</th>
        <th scope="col">Images</th>
        <th scope="col">Malignant</th>
        <th scope="col">Malignant AUC</th>
        <th scope="col">Melanoma AUC</th>
        <th scope="col">Balanced accuracy</th>
        <th scope="col">Sensitivity (refer)</th>
        <th scope="col">Specificity (refer)</th>
      </tr>
    </thead>
  )
}
