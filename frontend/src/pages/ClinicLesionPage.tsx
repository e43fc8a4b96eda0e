import { useId, useRef, useState } from 'react'
import { API, type ModelCard } from '../api.ts'
import { cardCrop } from '../card.ts'
import { getLesion } from '../clinic/api.ts'
import { ClinicNotice, ErrorBox, RetakeBadge, RiskRoseBadge, TierBadge } from '../clinic/badges.tsx'
import { clinicHref, diagnosisKey, lesionPlace, lesionTierWord, RETAKE_LABEL, retakeNote, riseAcrossRefused } from '../clinic/format.ts'
import { useLoad } from '../clinic/session.ts'
import { ClinicSimilar } from '../components/ClinicSimilar.tsx'
import { DiagnosisForm } from '../components/DiagnosisForm.tsx'
import { NewVisitForm, visitDefaults } from '../components/NewVisitForm.tsx'
import { CompareVisits, VisitTimeline } from '../components/VisitTimeline.tsx'
import { changeHint, SITE_LABELS } from '../content.ts'
import { useApiData } from '../hooks.ts'
import { notFound, RecordNotFound } from './ClinicPatientPage.tsx'

type Tab = 'timeline' | 'compare'

/** One lesion: its visits over time, the change between them, a new visit, compare, diagnosis. */
export function ClinicLesionPage({ id }: { id: number }) {
  const ids = useId()
  const lesion = useLoad(() => getLesion(id), String(id))
  const cardQ = useApiData<ModelCard>(`${API}/model`)
  const crop = cardCrop(cardQ.data)
  const [tab, setTab] = useState<Tab>('timeline')
  // The new-visit form starts afresh once the visit it saved is on the page (its defaults then
  // come from that visit); deleting a visit or changing a date keeps what is typed in it.
  const [formRound, setFormRound] = useState(0)
  const [savedVisit, setSavedVisit] = useState<number | null>(null)
  // the "New visit" form is far down on a phone (below the timeline and the similar cases): a
  // button near the top takes focus (and the view) to its heading
  const newVisitRef = useRef<HTMLHeadingElement | null>(null)
  const goToNewVisit = () => {
    const heading = newVisitRef.current
    if (!heading) return
    heading.focus({ preventScroll: true })
    heading.scrollIntoView({ block: 'start' })
  }

  if (notFound(lesion.error)) return <RecordNotFound what="Lesion" />
  if (lesion.error) return <ErrorBox error={lesion.error} what="Could not load the lesion." />
  const d = lesion.data
  if (savedVisit !== null && d?.visits.some((v) => v.id === savedVisit)) {
    setSavedVisit(null)
    setFormRound((n) => n + 1)
  }
  if (!d) return <p className="muted">Loading…</p>
  const { visits, changes } = d
  const last = visits[visits.length - 1]
  // similar cases of the latest visit the model could assess (a refused photo has no features)
  const lastAssessed = [...visits].reverse().find((v) => v.result.risk !== 'cannot_assess')
  // the lesion's rise: between its last two assessed visits (as on the patient page), which a
  // refused photo in between can keep out of the timeline's changes: then said in a sentence
  const rose = d.lesion.risk_rose
  const roseBetween = riseAcrossRefused(rose, visits, changes)
  const retake = retakeNote(d.lesion)

  return (
    <div className="clinic-page" data-testid="lesion-page" data-lesion-id={d.lesion.id}>
      <p className="crumbs">
        <a href={clinicHref.patients}>Patients</a> › <a href={clinicHref.patient(d.patient.id)} data-testid="lesion-patient-link">{d.patient.ref}</a> ›
      </p>
      {/* the badge beside the heading, not in it: the heading names the page */}
      <div className="page-title-row">
        <h1 className="page-title">Lesion: {lesionPlace(d.lesion, SITE_LABELS)}</h1>{' '}
        <RiskRoseBadge rose={rose} testId="lesion-risk-rose" />
      </div>
      <p className="muted">
        {visits.length} visit{visits.length === 1 ? '' : 's'}
        {last && (
          <>
            {' '}
            · {lesionTierWord(d.lesion)}: <TierBadge risk={d.lesion.latest_risk} p={d.lesion.latest_malignant_probability} testId="lesion-latest" />{' '}
            <RetakeBadge text={retake && RETAKE_LABEL} testId="lesion-retake" />
          </>
        )}
      </p>
      <p className="lesion-jump">
        <button type="button" className="btn btn-secondary" onClick={goToNewVisit} data-testid="jump-new-visit">
          New visit <span aria-hidden="true">↓</span>
        </button>
      </p>
      {roseBetween && (
        <p className="hint" role="note" data-testid="lesion-rose-between">
          {roseBetween}
        </p>
      )}
      {retake && (
        <p className="hint" role="note" data-testid="lesion-retake-note">
          {retake}
        </p>
      )}

      <section aria-labelledby={`${ids}-visits`}>
        <div className="section-head">
          <h2 id={`${ids}-visits`}>Visits</h2>
          <div className="audience visits-view-toggle" role="group" aria-label="Show">
            <button type="button" aria-pressed={tab === 'timeline'} onClick={() => setTab('timeline')} data-testid="tab-timeline">
              Timeline
            </button>
            <button type="button" aria-pressed={tab === 'compare'} onClick={() => setTab('compare')} disabled={visits.length < 2} data-testid="tab-compare">
              Compare two
            </button>
          </div>
        </div>
        {tab === 'timeline' ? (
          <VisitTimeline visits={visits} changes={changes} onChanged={lesion.reload} />
        ) : (
          <CompareVisits visits={visits} crop={crop} />
        )}
        <p className="hint" data-testid="change-hint">{changeHint(cardQ.data)}</p>
      </section>

      {lastAssessed && (
        <section className="card-block" aria-labelledby={`${ids}-similar`}>
          <h2 id={`${ids}-similar`}>Similar cases</h2>
          <ClinicSimilar key={lastAssessed.id} visit={lastAssessed} latest={lastAssessed === last} />
        </section>
      )}

      <section className="card-block" aria-labelledby={`${ids}-new`}>
        <h2 id={`${ids}-new`} ref={newVisitRef} tabIndex={-1} data-testid="new-visit-heading">
          New visit
        </h2>
        <NewVisitForm
          key={formRound}
          lesionId={d.lesion.id}
          lesionSite={d.lesion.body_site}
          defaults={visitDefaults(visits)}
          onSaved={(v) => {
            setSavedVisit(v.id)
            lesion.reload()
          }}
        />
      </section>

      <section className="card-block" aria-labelledby={`${ids}-dx`}>
        <h2 id={`${ids}-dx`}>Confirmed diagnosis</h2>
        {/* a new form for each saved version: a note-only edit keeps recorded_at (the day the
            code or method was set), so the note is part of the key */}
        <DiagnosisForm key={diagnosisKey(d.diagnosis)} lesionId={d.lesion.id} diagnosis={d.diagnosis} onSaved={lesion.reload} />
      </section>
      <ClinicNotice />
    </div>
  )
}
