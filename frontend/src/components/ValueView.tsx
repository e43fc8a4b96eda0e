// Defensive renderers for model-card fields whose exact shape is not fixed: strings, numbers,
// {value, lo, hi} intervals, lists, lists of records (tables) and nested objects.

import type { ReactNode } from 'react'
import { formatInterval, formatNumber, humanize, isInterval } from '../format.ts'
import { TableWrap } from './TableWrap.tsx'

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function isEmpty(v: unknown): boolean {
  if (v === null || v === undefined || v === '') return true
  if (Array.isArray(v)) return v.length === 0
  if (isRecord(v)) return Object.keys(v).length === 0
  return false
}

/** A short inline rendering of any value. */
export function inlineValue(v: unknown): string {
  if (v === null || v === undefined) return '—'
  if (typeof v === 'number') return formatNumber(v)
  if (typeof v === 'boolean') return v ? 'yes' : 'no'
  if (typeof v === 'string') return v
  if (isInterval(v)) return formatInterval(v)
  if (Array.isArray(v)) return v.map(inlineValue).join(', ')
  if (isRecord(v)) {
    return Object.entries(v)
      .map(([k, x]) => `${humanize(k)}: ${inlineValue(x)}`)
      .join('; ')
  }
  return String(v)
}

/** Rows of records -> table; columns are the union of keys in first-seen order. */
export function RecordTable({ rows, caption, testId }: { rows: Record<string, unknown>[]; caption?: string; testId?: string }) {
  const cols: string[] = []
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k)
  return (
    <TableWrap>
      <table className="data-table" data-testid={testId}>
        {caption && <caption>{caption}</caption>}
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c} scope="col">
                {humanize(c)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) => (
            <tr key={i}>
              {cols.map((c, j) =>
                j === 0 ? (
                  <th key={c} scope="row">
                    {inlineValue(r[c])}
                  </th>
                ) : (
                  <td key={c} className={typeof r[c] === 'number' || isInterval(r[c]) ? 'num' : undefined}>
                    {inlineValue(r[c])}
                  </td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </TableWrap>
  )
}

/** Any value as a block: paragraphs, lists, tables or a definition list. */
export function ValueView({ value, depth = 0 }: { value: unknown; depth?: number }): ReactNode {
  if (isEmpty(value)) return <p className="muted">Not stated.</p>
  if (typeof value === 'string') return <p>{value}</p>
  if (typeof value !== 'object' || isInterval(value)) return <p>{inlineValue(value)}</p>
  if (Array.isArray(value)) {
    if (value.every(isRecord)) return <RecordTable rows={value as Record<string, unknown>[]} />
    return (
      <ul className="plain-list">
        {value.map((x, i) => (
          <li key={i}>{typeof x === 'object' && x !== null ? inlineValue(x) : String(x)}</li>
        ))}
      </ul>
    )
  }
  const entries = Object.entries(value as Record<string, unknown>)
  return (
    <dl className="kv">
      {entries.map(([k, v]) => (
        <div key={k} className="kv-row">
          <dt>{humanize(k)}</dt>
          <dd>
            {depth < 1 && isRecord(v) && !isInterval(v) && Object.keys(v).length > 1 ? (
              <ValueView value={v} depth={depth + 1} />
            ) : depth < 1 && Array.isArray(v) && v.length && v.every(isRecord) ? (
              <ValueView value={v} depth={depth + 1} />
            ) : (
              inlineValue(v)
            )}
          </dd>
        </div>
      ))}
    </dl>
  )
}
