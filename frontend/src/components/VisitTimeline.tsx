import { useEffect, useId, useRef, useState } from 'react'
import { updateVisitNote } from '../clinic/api.ts'
import { ErrorBox, RiskRoseBadge, TierBadge } from '../clinic/badges.tsx'
import { describeChange, formatDelta, formatDays } from '../clinic/format.ts'
import { focusRequested } from '../clinic/focus.ts'
import type { Change, Visit } from '../clinic/types.ts'
import { formatPercent, formatTimestamp } from '../format.ts'
import { FlagList } from './FlagList.tsx'
import { HeatmapViewer } from './HeatmapViewer.tsx'

function visitDate(v: Visit): string {
  return formatTimestamp(v.taken_at || v.created_at)
}

function modelText(v: Visit): string {
  return [v.model?.name ?? v.result.model?.name, v.model?.version ?? v.result.model?.version].filter(Boolean).join(' ') || 'unknown model'
}

/** The whole photo, and the same photo with the model's heatmap stretched over all of it. */
function VisitImages({ visit }: { visit: Visit }) {
  return (
    <div className="visit-images">
      <img className="visit-img" src={visit.image_url} alt={`Visit of ${visitDate(visit)}`} data-testid="visit-image" />
      {visit.heatmap_url ? (
        <div className="visit-stack">
          <img className="visit-img" src={visit.image_url} alt="" />
          <img className="visit-heat" src={visit.heatmap_url} alt="Heatmap of the areas the model used" data-testid="visit-heatmap" />
        </div>
      ) : (
        <div className="visit-noheat">No heatmap for this visit</div>
      )}
    </div>
  )
}

function VisitNote({ visit, onSaved }: { visit: Visit; onSaved: () => void }) {
  const [editing, setEditing] = useState(false)
  const [text, setText] = useState(visit.note ?? '')
  const [error, setError] = useState<string | null>(null)
  const save = async () => {
    setError(null)
    try {
      await updateVisitNote(visit.id, text)
      setEditing(false)
      onSaved()
    } catch (err) {
      setError((err as Error).message)
    }
  }
  if (!editing) {
    return (
      <p className="visit-note">
        <span data-testid="visit-note">{visit.note?.trim() || <span className="muted">No note.</span>}</span>{' '}
        <button type="button" className="btn-link" onClick={() => setEditing(true)}>
          Edit note
        </button>
      </p>
    )
  }
  return (
    <div className="visit-note">
      <textarea value={text} rows={3} maxLength={4000} onChange={(e) => setText(e.target.value)} aria-label="Clinician note" />
      <ErrorBox error={error} />
      <button type="button" className="btn btn-secondary" onClick={save}>
        Save note
      </button>
    </div>
  )
}

function VisitCard({ visit, index, onChanged }: { visit: Visit; index: number; onChanged: () => void }) {
  const r = visit.result
  const cannot = r.risk === 'cannot_assess'
  // as on the Assess page: why it could not be assessed, or the warnings that go with a result
  const notes = (r.flags ?? []).filter((f) => (cannot ? f.blocking !== false : f.blocking === false))
  return (
    <article className="visit-card" data-testid={`visit-${visit.id}`}>
      <header>
        <h3>
          Visit {index + 1} · <time dateTime={visit.taken_at}>{visitDate(visit)}</time>
        </h3>
      </header>
      <VisitImages visit={visit} />
      <dl className="visit-facts">
        <div>
          <dt>Tier</dt>
          <dd>
            <TierBadge risk={r.risk} testId="visit-tier" />
          </dd>
        </div>
        <div>
          <dt title="(MEL + BCC + SCC) / (1 − UNK) for the shipped model: the malignant share among the specific diagnoses, not an absolute probability when UNK dominates">Malignant share</dt>
          <dd data-testid="visit-malignant">{cannot ? 'not assessed' : formatPercent(r.malignant_probability)}</dd>
        </div>
        <div>
          <dt>Model</dt>
          <dd>{modelText(visit)}</dd>
        </div>
        {visit.created_by && (
          <div>
            <dt>Recorded by</dt>
            <dd>{visit.created_by}</dd>
          </div>
        )}
      </dl>
      <FlagList flags={notes} className="risk-warnings" testId="visit-flags" />
      <VisitNote visit={visit} onSaved={onChanged} />
    </article>
  )
}

function ChangeArrow({ change }: { change: Change }) {
  return (
    <div
      className={`visit-change${change.risk_rose ? ' is-rose' : ''}`}
      data-testid={`change-${change.from_visit}-${change.to_visit}`}
      data-risk-rose={change.risk_rose}
      title={describeChange(change)}
    >
      <span className="visit-change-arrow" aria-hidden="true">
        →
      </span>
      <strong>{formatDelta(change.malignant_delta)}</strong>
      <span className="muted">{formatDays(change.days)}</span>
      <RiskRoseBadge rose={change.risk_rose} testId="change-risk-rose" />
      <span className="visually-hidden">{describeChange(change)}</span>
    </div>
  )
}

/** Visits side by side (oldest first), with the change between each pair. */
export function VisitTimeline({ visits, changes, onChanged }: { visits: Visit[]; changes: Change[]; onChanged: () => void }) {
  const listRef = useRef<HTMLOListElement | null>(null)
  // A visit just saved (NewVisitForm asked): focus it, so that a keyboard or screen-reader user
  // lands on the answer instead of on <body> when the form is replaced.
  useEffect(() => {
    const saved = visits.find((v) => focusRequested('visit', String(v.id), false))
    if (!saved) return
    const el = listRef.current?.querySelector<HTMLElement>(`[data-visit-id="${saved.id}"]`)
    if (el && focusRequested('visit', String(saved.id))) el.focus()
  })
  if (visits.length === 0) return <p className="muted">No visits yet. Add the first image below.</p>
  return (
    <>
      <ol className="timeline" data-testid="timeline" ref={listRef}>
        {visits.map((v, i) => {
          const change = i > 0 ? changes.find((c) => c.to_visit === v.id) : undefined
          return (
            <li key={v.id} className="timeline-item" data-visit-id={v.id} tabIndex={-1}>
              {change && <ChangeArrow change={change} />}
              <VisitCard visit={v} index={i} onChanged={onChanged} />
            </li>
          )
        })}
      </ol>
      {changes.length > 0 && (
        <ul className="plain-list change-list" data-testid="change-list">
          {changes.map((c) => (
            <li key={`${c.from_visit}-${c.to_visit}`} className={c.risk_rose ? 'is-rose' : undefined}>
              {describeChange(c)}
            </li>
          ))}
        </ul>
      )}
    </>
  )
}

/** Two chosen visits side by side, large, with the heatmap slider shared by both. */
export function CompareVisits({ visits, crop }: { visits: Visit[]; crop: string }) {
  const ids = useId()
  const [a, setA] = useState(visits[0]?.id ?? 0)
  const [b, setB] = useState(visits[visits.length - 1]?.id ?? 0)
  const [opacity, setOpacity] = useState(50)
  if (visits.length < 2) return <p className="muted">Compare needs two visits.</p>
  const pick = (id: number) => visits.find((v) => v.id === id) ?? visits[0]
  const va = pick(a)
  const vb = pick(b)
  const delta =
    typeof va.result.malignant_probability === 'number' && typeof vb.result.malignant_probability === 'number'
      ? vb.result.malignant_probability - va.result.malignant_probability
      : null
  const choose = (value: number, set: (v: number) => void, label: string, testId: string) => (
    <div className="field">
      <label htmlFor={`${ids}-${testId}`}>{label}</label>
      <select id={`${ids}-${testId}`} value={value} onChange={(e) => set(Number(e.target.value))} data-testid={testId}>
        {visits.map((v, i) => (
          <option key={v.id} value={v.id}>
            Visit {i + 1} · {visitDate(v)}
          </option>
        ))}
      </select>
    </div>
  )
  return (
    <div className="compare" data-testid="compare-view">
      <div className="field-row">
        {choose(a, setA, 'Left', 'compare-a')}
        {choose(b, setB, 'Right', 'compare-b')}
      </div>
      <p data-testid="compare-delta">
        Malignant share (among the specific diagnoses) from left to right: <strong>{formatDelta(delta)}</strong>
      </p>
      <div className="compare-grid">
        {[va, vb].map((v, i) => (
          <figure key={`${i}-${v.id}`} className="compare-side">
            <figcaption>
              <strong>{visitDate(v)}</strong> <TierBadge risk={v.result.risk} p={v.result.malignant_probability ?? null} />
            </figcaption>
            <HeatmapViewer imageSrc={v.image_url} heatmapSrc={v.heatmap_url} crop={crop} opacity={opacity} onOpacity={setOpacity} />
          </figure>
        ))}
      </div>
    </div>
  )
}
