// Defensive accessors for the model card (GET /api/v1/model): any field may be missing.

import type { ModelCard } from './api.ts'
import { isInterval } from './format.ts'

function rec(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null
}

export function cardString(card: ModelCard | null, key: string): string | null {
  const v = card?.[key]
  return typeof v === 'string' || typeof v === 'number' ? String(v) : null
}

export function cardThresholds(card: ModelCard | null): { refer: number | null; monitor: number | null } | null {
  const t = rec(card?.thresholds)
  if (!t) return null
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : null)
  return { refer: num(t.refer), monitor: num(t.monitor) }
}

export function cardCrop(card: ModelCard | null): string {
  const spec = rec(card?.input_spec)
  return typeof spec?.crop === 'string' ? spec.crop : 'center_square'
}

const isMetricValue = (v: unknown) => typeof v === 'number' || isInterval(v)

/** metrics -> [[split, {metric: value}]]; accepts {test: {...}, val: {...}} or a flat {metric: v}. */
export function cardMetricSets(card: ModelCard | null): [string, Record<string, unknown>][] {
  const m = rec(card?.metrics)
  if (!m) return []
  const entries = Object.entries(m)
  if (entries.length && entries.every(([, v]) => isMetricValue(v))) return [['test', m]]
  const sets: [string, Record<string, unknown>][] = []
  for (const [split, v] of entries) {
    const r = rec(v)
    if (r && Object.keys(r).length) sets.push([split, r])
  }
  // the test split first
  sets.sort((a, b) => (a[0] === 'test' ? -1 : b[0] === 'test' ? 1 : 0))
  return sets
}

export function cardList(card: ModelCard | null, key: string): string[] {
  const v = card?.[key]
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)))
  if (typeof v === 'string' && v.trim()) return [v]
  return []
}
