import { useEffect, useId, useRef, useState, type FormEvent } from 'react'
import { createPatient, listPatients } from '../clinic/api.ts'
import { ClinicNotice, ErrorBox, RetakeBadge, RiskRoseBadge, TierBadge } from '../clinic/badges.tsx'
import { fieldErrorProps, refusedInput } from '../clinic/fieldErrors.ts'
import { clinicHref, retakeCount } from '../clinic/format.ts'
import { useLoad } from '../clinic/session.ts'
import { formatTimestamp } from '../format.ts'
import { useFormAction } from '../hooks.ts'
import { TableWrap } from '../components/TableWrap.tsx'
import type { ConfirmedDiagnosis } from '../clinic/types.ts'

/** The most patients `GET /patients` lists (the first by reference): `list_patients(..., limit=200)`
 * in src/dermsight/clinic/cases.py. The server does not say whether it cut the list, so a list
 * of exactly this many is taken as cut. */
export const PATIENT_LIST_LIMIT = 200

/** The patient list's caption: how many are shown, and, when the server's limit cut the list,
 * that only the first are and how to find the others. */
export function patientListCaption(n: number, q: string, limit = PATIENT_LIST_LIMIT): string {
  const starting = q ? ` whose reference starts with “${q}”` : ''
  if (n >= limit) {
    return q
      ? `The first ${limit} patients${starting} are shown (by reference); type more of the reference to find others.`
      : `The first ${limit} patients by reference are shown; search by reference to find others.`
  }
  return `${n} patient${n === 1 ? '' : 's'}${starting}`
}

/** What the patient list's status line says: the caption's count once a search (typed into the
 * search field, also cleared again) has answered; nothing before the first search or while
 * loading (or when the search failed: its error says so), so that typing is not interrupted by a count for every key. */
export function patientSearchStatus(searched: boolean, loading: boolean, failed: boolean, n: number, q: string): string {
  return searched && !loading && !failed ? patientListCaption(n, q) : ''
}

/** One entry of the patient list's "Confirmed diagnosis" cell. */
export interface ConfirmedItem {
  /** "MEL (histopathology)"; "NV (clinical) ×2" for two lesions */
  text: string
  malignant: boolean
}

/** The patient list's confirmed diagnoses: each code and method once, with how many lesions have
 * it, malignant ones first (then in the server's order). */
export function confirmedItems(confirmed: readonly ConfirmedDiagnosis[] | null | undefined): ConfirmedItem[] {
  const counts = new Map<string, { n: number; malignant: boolean }>()
  for (const c of confirmed ?? []) {
    const key = `${c.code} (${c.method})`
    const seen = counts.get(key)
    counts.set(key, { n: (seen?.n ?? 0) + 1, malignant: c.malignant })
  }
  const items = [...counts].map(([key, { n, malignant }]) => ({ text: n > 1 ? `${key} ×${n}` : key, malignant }))
  return [...items.filter((i) => i.malignant), ...items.filter((i) => !i.malignant)]
}

/** What the patient list's columns mean: on the screen, not in a hover-only title (a touch screen
 * has no hover, and the phone layout hides the header row). */
export const PATIENT_LIST_NOTE =
  'Confirmed diagnosis: recorded by a clinician for the patient’s lesions; malignant ones say so. ' +
  'Model’s highest tier: the highest of the model’s tiers for the patient’s lesions, each from its latest ' +
  'assessed photo; it does not take confirmed diagnoses into account. “Risk rose” is not shown for a lesion ' +
  'with a confirmed diagnosis, unless the rise is in a photo taken after the diagnosis was recorded.'

/** The clinic's patients: search by reference, open one, add a new one. */
export function ClinicPatientsPage() {
  const ids = useId()
  const [query, setQuery] = useState('')
  const [q, setQ] = useState('') // the query sent (debounced)
  const patients = useLoad(() => listPatients(q), q)
  const [ref, setRef] = useState('')
  const { busy, error, setError, submit } = useFormAction()
  const refRef = useRef<HTMLInputElement | null>(null)
  // the reference is what is wrong (empty, or refused by the server), until it is edited
  const [refInvalid, setRefInvalid] = useState(false)
  const errorId = `${ids}-ref-error`

  useEffect(() => {
    const t = window.setTimeout(() => setQ(query), 250)
    return () => window.clearTimeout(t)
  }, [query])
  // whether a search was typed: its result (the caption's count) is then said in the status line
  const [searched, setSearched] = useState(false)
  useEffect(() => {
    if (q) setSearched(true)
  }, [q])

  const onCreate = async (e: FormEvent) => {
    e.preventDefault()
    if (!ref.trim()) {
      setError('Enter the patient reference (your clinic’s own id for the patient).')
      setRefInvalid(true)
      // after the render that ties the error to the field (aria-describedby), so that it is read out
      requestAnimationFrame(() => refRef.current?.focus())
      return
    }
    setRefInvalid(false)
    let refused = false
    await submit(
      async () => {
        try {
          const p = await createPatient(ref.trim())
          window.location.hash = clinicHref.patient(p.id)
        } catch (err) {
          refused = refusedInput(err)
          throw err
        }
      },
      () => {
        setRefInvalid(refused)
        // the button that had focus was disabled while saving: back to the field
        requestAnimationFrame(() => refRef.current?.focus())
      },
    )
  }

  const rows = patients.data ?? []
  return (
    <div className="clinic-page" data-testid="patients-page">
      <h1 className="page-title">Patients</h1>
      <p className="lead">
        Patients are kept under your clinic’s own pseudonymous reference: no names are stored. Open a patient to see
        their lesions on the body map and each lesion’s visits over time.
      </p>
      <div className="clinic-toolbar">
        <div className="field">
          <label htmlFor={`${ids}-q`}>Search by reference</label>
          <input
            id={`${ids}-q`}
            type="search"
            value={query}
            placeholder="Start of the reference"
            onChange={(e) => setQuery(e.target.value)}
            data-testid="patient-search"
          />
        </div>
        <form className="inline-form" onSubmit={onCreate} noValidate>
          <div className="field">
            <label htmlFor={`${ids}-ref`}>New patient reference</label>
            <input
              id={`${ids}-ref`}
              ref={refRef}
              value={ref}
              required
              {...fieldErrorProps(error ? errorId : null, refInvalid)}
              onChange={(e) => {
                setRef(e.target.value)
                setRefInvalid(false)
              }}
              data-testid="new-patient-ref"
            />
          </div>
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="new-patient-submit">
            New patient
          </button>
        </form>
      </div>
      <ErrorBox error={error} what="Could not add the patient." id={errorId} />
      <ErrorBox error={patients.error} what="Could not load the patients." />
      {/* visible, not a title tooltip: a touch screen has no hover, and the phone layout hides the header row */}
      <p className="hint" data-testid="patient-tier-note">
        {PATIENT_LIST_NOTE}
      </p>
      <TableWrap>
        <table className="data-table clinic-table stack-narrow" data-testid="patient-list">
          <caption data-testid="patient-list-caption" data-cut={rows.length >= PATIENT_LIST_LIMIT ? 'true' : undefined}>
            {patients.loading ? 'Loading…' : patientListCaption(rows.length, q)}
          </caption>
          <thead>
            <tr>
              <th scope="col">Reference</th>
              <th scope="col">Confirmed diagnosis</th>
              <th scope="col">Model’s highest tier</th>
              <th scope="col">Lesions</th>
              <th scope="col">Visits</th>
              <th scope="col">Last visit</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((p) => (
              <tr key={p.id} data-testid={`patient-row-${p.id}`} data-ref={p.ref}>
                <th scope="row">
                  <a href={clinicHref.patient(p.id)} data-testid="patient-link">
                    {p.ref}
                  </a>
                </th>
                <td data-label="Confirmed diagnosis" data-testid="patient-dx-cell">
                  <ConfirmedCell items={confirmedItems(p.confirmed)} />
                </td>
                <td data-label="Model’s highest tier" data-testid="patient-tier-cell">
                  {p.highest_risk ? (
                    <>
                      Model: <TierBadge risk={p.highest_risk} testId="patient-tier" />
                    </>
                  ) : (
                    <span className="muted">no visit yet</span>
                  )}{' '}
                  <RiskRoseBadge rose={p.risk_rose} /> <RetakeBadge text={retakeCount(p.n_lesions_latest_cannot_assess)} />
                </td>
                <td data-label="Lesions">{p.n_lesions}</td>
                <td data-label="Visits">{p.n_visits}</td>
                <td data-label="Last visit">{p.last_visit_at ? formatTimestamp(p.last_visit_at) : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableWrap>
      {/* the caption's count, said to screen readers once the (debounced) search has answered */}
      <div role="status" aria-live="polite" className="visually-hidden" data-testid="patient-search-status">
        {patientSearchStatus(searched, patients.loading, patients.error !== null, rows.length, q)}
      </div>
      <ClinicNotice />
    </div>
  )
}

/** The confirmed diagnoses of a patient's lesions; a malignant one in bold with the word
 * "malignant" (not by colour alone). */
function ConfirmedCell({ items }: { items: ConfirmedItem[] }) {
  if (items.length === 0) return <span className="muted">none recorded</span>
  return (
    <>
      {items.map((item, i) => (
        <span key={item.text} data-testid="patient-dx" data-malignant={item.malignant ? 'true' : undefined}>
          {i > 0 && '; '}
          {item.malignant ? <strong className="dx-malignant">{item.text} · malignant</strong> : item.text}
        </span>
      ))}
    </>
  )
}
