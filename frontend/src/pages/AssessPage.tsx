import { useCallback, useEffect, useId, useRef, useState, type FormEvent } from 'react'
import {
  API,
  predict,
  type LesionClassInfo,
  type ModelCard,
  type PredictResponse,
} from '../api.ts'
import {
  cardCrop,
  cardKeyMetrics,
  cardList,
  cardMetricSets,
  cardStatusWarning,
  cardString,
  cardThresholds,
  shareBesideCutoffs,
} from '../card.ts'
import { AudiencePrompt } from '../components/AudiencePrompt.tsx'
import { HeatmapViewer } from '../components/HeatmapViewer.tsx'
import { IconDoctor, IconPrinter } from '../components/Icons.tsx'
import { ImageDrop } from '../components/ImageDrop.tsx'
import { NaturalFrequency } from '../components/NaturalFrequency.tsx'
import { SimilarCases } from '../components/SimilarCases.tsx'
import { PatientFields } from '../components/PatientFields.tsx'
import { ProbBars } from '../components/ProbBars.tsx'
import { RiskBanner, UNCERTAIN_HEADLINE, patientUncertain, reliabilityUnknown } from '../components/RiskBanner.tsx'
import { Spinner } from '../components/Spinner.tsx'
import { inlineValue } from '../components/ValueView.tsx'
import {
  DISCLAIMER_FALLBACK,
  FALLBACK_CLASSES,
  PATIENT_PROBS_NOTE,
  PATIENT_PROBS_TITLE,
  SITE_LABELS,
  SUGGESTED_CLASS,
  assessAnnouncement,
  malignantLabel,
  malignantShareNote,
  patientShareNote,
  malignantShortName,
} from '../content.ts'
import {
  asSentence,
  formatAge,
  formatInterval,
  formatPercent,
  formatProbability,
  formatTimestamp,
  heatmapSrc,
  humanize,
  keptSentence,
  parseAge,
  predictionProblem,
} from '../format.ts'
import { useApiData, useAudience, useDelayedFlag, type Audience } from '../hooks.ts'
import { REFUSED_TITLE, tooLargeAnswer, useImageUpload, type Preview } from '../upload.ts'

interface Outcome {
  res: PredictResponse
  at: Date
  /** the file this answer is for: a result is only ever shown beside this file's own image */
  file: File
  fileName: string
  form: { age: number | null; sex: string; site: string }
}

/**
 * The case on screen, kept in memory while the user visits the Learn or Model page (the page is
 * unmounted there), so that coming back (a link or the browser's Back button) finds the image, the
 * details and the result again. Never stored anywhere: a reload or "New case" clears it.
 */
interface KeptCase {
  file: File | null
  age: string
  sex: string
  site: string
  carried: boolean
  outcome: Outcome | null
  error: string | null
  opacity: number
  /** an assessment was still running when the user left: it was stopped */
  interrupted: boolean
}

let kept: KeptCase | null = null

/** Forget the kept case (signing out of the clinic: the next user of the computer must not find it). */
export function forgetAssessCase(): void {
  kept = null
}

/** Seconds an assessment may run before the page says it is taking long (and why). */
const SLOW_AFTER_S = 10

/** Whether focus is nowhere useful, so that the page may move it: on the page itself (the element
 * that had it was disabled or removed), on an element no longer in the page, or on one of
 * `passing` (elements about to go, e.g. the Cancel button once the answer is in). */
export function focusIsLost(
  active: Pick<Element, 'isConnected'> | null,
  body: unknown,
  passing: readonly unknown[] = [],
): boolean {
  return !active || active === body || !active.isConnected || passing.includes(active)
}

/** The age text as the number it stands for, or undefined when it is not a valid age. */
function ageValue(text: string): number | null | undefined {
  try {
    return parseAge(text)
  } catch {
    return undefined
  }
}

/** A failed request in plain words: the API's detail as a sentence, plus the file's own size when
 * the server said the file is too large (a 413: the limit was not known before sending). */
function describeError(err: unknown, file: File): string {
  if (!(err instanceof Error)) return 'Something went wrong.'
  return tooLargeAnswer(err, file) ?? (asSentence(err.message) || 'Something went wrong.')
}

export function AssessPage() {
  const audience = useAudience()
  const classesQ = useApiData<LesionClassInfo[]>(`${API}/classes`)
  const cardQ = useApiData<ModelCard>(`${API}/model`)
  const classes = Array.isArray(classesQ.data) && classesQ.data.length ? classesQ.data : FALLBACK_CLASSES
  const card = cardQ.data
  const modelStatus = cardStatusWarning(card)

  const [init] = useState<KeptCase | null>(() => kept)
  // the image, and why it cannot be sent (format, size against GET /health's limit): checked
  // here, before it is sent, as on a clinic visit
  const upload = useImageUpload(init?.file ?? null)
  const { file, preview, refused, choose } = upload
  const [age, setAge] = useState(init?.age ?? '')
  const [sex, setSex] = useState(init?.sex ?? '')
  const [site, setSite] = useState(init?.site ?? '')
  // age/sex/site were filled for an image already assessed and are still there for this one
  const [carried, setCarried] = useState(init?.carried ?? false)
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(init?.error ?? null)
  const [ageError, setAgeError] = useState<string | null>(null)
  // a line about an assessment that did not finish (cancelled, or stopped by leaving the page)
  const [notice, setNotice] = useState<string | null>(
    init?.interrupted ? 'The assessment was stopped when you left this page. Press Assess lesion to run it again.' : null,
  )
  const [outcome, setOutcome] = useState<Outcome | null>(init?.outcome ?? null)
  const [opacity, setOpacity] = useState(init?.opacity ?? 60)
  const [elapsed, setElapsed] = useState(0)
  const showSpinner = useDelayedFlag(busy, 150)
  const abortRef = useRef<AbortController | null>(null)
  const busyRef = useRef(false)
  const resultRef = useRef<HTMLElement | null>(null)
  const ageRef = useRef<HTMLInputElement | null>(null)
  const fileInputRef = useRef<HTMLInputElement | null>(null)
  const submitRef = useRef<HTMLButtonElement | null>(null)
  const cancelRef = useRef<HTMLButtonElement | null>(null)
  // what chooseFile (a stable callback) needs to know about the case on screen
  const caseRef = useRef({ assessed: false, metaFilled: false, carried: false })
  const ids = useId()
  const metaFilled = Boolean(age.trim() || sex || site)

  useEffect(() => {
    caseRef.current = { assessed: outcome !== null, metaFilled, carried }
  }, [outcome, metaFilled, carried])

  useEffect(() => {
    busyRef.current = busy
  }, [busy])

  // Keep the case for a return to this page (see KeptCase).
  useEffect(() => {
    kept = { file, age, sex, site, carried, outcome, error, opacity, interrupted: false }
  }, [file, age, sex, site, carried, outcome, error, opacity])

  useEffect(
    () => () => {
      if (busyRef.current && kept) kept.interrupted = true
      abortRef.current?.abort()
    },
    [],
  )

  // While waiting: the Assess button that had focus is disabled (focus fell to the page), so the
  // Cancel button, the one control that works now, takes it.
  useEffect(() => {
    if (showSpinner && focusIsLost(document.activeElement, document.body, [submitRef.current])) {
      cancelRef.current?.focus()
    }
  }, [showSpinner])

  // How long the server has been working on this image, to say so when it is slow.
  useEffect(() => {
    if (!busy) return
    const started = Date.now()
    setElapsed(0)
    const t = window.setInterval(() => setElapsed(Math.floor((Date.now() - started) / 1000)), 1000)
    return () => window.clearInterval(t)
  }, [busy])

  const chooseFile = useCallback((f: File | null | undefined) => {
    if (!f) return
    abortRef.current?.abort()
    const prev = caseRef.current
    setCarried(prev.metaFilled && (prev.assessed || prev.carried))
    setBusy(false)
    // The name gives a first guess; the first bytes decide (DICOM: "DICM" at byte 128).
    choose(f)
    setOutcome(null)
    setError(null)
    setNotice(null)
  }, [choose])

  /** Start over: no image, no result, no age/sex/site. Nothing of the case is kept anywhere. */
  const newCase = () => {
    abortRef.current?.abort()
    setBusy(false)
    upload.clear()
    setOutcome(null)
    setError(null)
    setAgeError(null)
    setNotice(null)
    setAge('')
    setSex('')
    setSite('')
    setCarried(false)
    kept = null
    window.scrollTo({ top: 0 })
    fileInputRef.current?.focus()
  }

  /** Stop waiting for the server: the page is free again at once. */
  const cancel = () => {
    abortRef.current?.abort()
    abortRef.current = null
    setBusy(false)
    setNotice('Assessment cancelled. Press Assess lesion to try again.')
    // the Cancel button goes: focus the Assess button, enabled again once this renders
    requestAnimationFrame(() => submitRef.current?.focus())
  }

  const editMeta = (set: (v: string) => void) => (v: string) => {
    set(v)
    setCarried(false) // the user has looked at the fields
  }
  const editAge = (v: string) => {
    editMeta(setAge)(v)
    setAgeError(null)
  }

  // Paste an image from the clipboard.
  useEffect(() => {
    const onPaste = (e: ClipboardEvent) => {
      const f = e.clipboardData?.files?.[0]
      if (f) chooseFile(f)
    }
    window.addEventListener('paste', onPaste)
    return () => window.removeEventListener('paste', onPaste)
  }, [chooseFile])

  /** After an answer: the button that had focus was disabled while busy (focus fell to the page,
   * or went to the Cancel button, which goes now); put it on the result (which a screen reader
   * then reads), and scroll to its top if that is out of view. */
  const showAnswer = () =>
    requestAnimationFrame(() => {
      const el = resultRef.current
      if (!el) return
      if (focusIsLost(document.activeElement, document.body, [cancelRef.current, submitRef.current])) {
        el.focus({ preventScroll: true })
      }
      // its top (the risk level) in view: below the fold on a phone, above it after a long form
      const top = el.getBoundingClientRect().top
      if (top > window.innerHeight * 0.6 || top < 0) {
        el.scrollIntoView({ block: 'start' })
      }
    })

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault()
    if (!file) {
      setError('Choose or take a picture of the lesion first.')
      return
    }
    if (!upload.ready) return // the button is disabled: refused, or not read yet
    let ageNumber: number | null
    try {
      ageNumber = parseAge(age, ageRef.current?.validity.badInput)
    } catch (err) {
      // the form's own mistake: said at the field, which gets focus; the result on screen stays
      setAgeError((err as Error).message)
      ageRef.current?.focus()
      return
    }
    abortRef.current?.abort()
    const ctrl = new AbortController()
    abortRef.current = ctrl
    setBusy(true)
    setError(null)
    setAgeError(null)
    setNotice(null)
    setOutcome(null)
    try {
      const res = await predict({ image: file, age: ageNumber, sex: sex || null, site: site || null }, ctrl.signal)
      if (ctrl.signal.aborted) return
      const problem = predictionProblem(res)
      if (problem) {
        setError(problem)
      } else {
        setOutcome({ res, at: new Date(), file, fileName: file.name, form: { age: ageNumber, sex, site } })
      }
      showAnswer()
    } catch (err) {
      if (ctrl.signal.aborted) return
      setError(describeError(err, file))
      showAnswer()
    } finally {
      if (abortRef.current === ctrl) setBusy(false)
    }
  }

  // the headline in the words on screen for this audience; once slow, said once (no seconds count)
  // (the patient view's "Result uncertain" in place of "Lower risk": see ResultView)
  const uncertainShown =
    outcome !== null && patientUncertain(outcome.res.risk, Array.isArray(outcome.res.flags) ? outcome.res.flags : [], audience)
  const announcement = assessAnnouncement({
    risk: outcome ? outcome.res.risk : null,
    audience,
    busy: showSpinner,
    slow: elapsed >= SLOW_AFTER_S,
    headline: uncertainShown ? UNCERTAIN_HEADLINE : null,
  })
  // the result is for this file only (never another image's answer beside this image)
  const shown = outcome && outcome.file === file ? outcome : null
  const currentAge = ageValue(age)
  const stale =
    shown !== null && (currentAge !== shown.form.age || sex !== shown.form.sex || site !== shown.form.site)

  return (
    <div className="assess">
      <div className="assess-grid">
        <form className="assess-form no-print" onSubmit={onSubmit} noValidate aria-labelledby={`${ids}-h`}>
          <div className="assess-title-row">
            <h1 id={`${ids}-h`} className="page-title">Assess a skin lesion</h1>
            {(file || outcome || error || metaFilled) && (
              <button type="button" className="btn btn-secondary" onClick={newCase} data-testid="new-case">
                New case
              </button>
            )}
          </div>
          <AudiencePrompt />
          <p className="lead">
            Add a dermoscopic picture (taken through a dermatoscope) of one lesion. Age, sex and body site are
            optional but help the model.
          </p>

          <ImageDrop file={file} preview={preview} onFile={chooseFile} inputRef={fileInputRef} />
          {/* POST /predict reads the upload in memory only (web/upload.py) and logs no image; the
              clinic's visit upload, which stores visits, is another form (NewVisitForm) */}
          <p className="hint" data-testid="upload-privacy">
            {UPLOAD_PRIVACY}
          </p>
          {/* said beside the image (on a phone the result panel is far below) */}
          {refused && (
            <div className="error-message" role="alert" data-testid="error-message">
              <strong>{REFUSED_TITLE}</strong> {refused}
            </div>
          )}

          <PatientFields
            legend={audience === 'patient' ? 'About you (optional)' : 'About the patient (optional)'}
            age={age}
            sex={sex}
            site={site}
            onAge={editAge}
            onSex={editMeta(setSex)}
            onSite={editMeta(setSite)}
            ageRef={ageRef}
            ageError={ageError}
          >
            {carried && metaFilled && (
              <p className="carried-note" role="status" data-testid="metadata-carried">
                {keptSentence(age.trim() !== '', sex !== '', site !== '')} Check, or press <strong>New case</strong> to
                clear.
              </p>
            )}
          </PatientFields>

          <button
            type="submit"
            className="btn btn-primary btn-large"
            data-testid="submit"
            ref={submitRef}
            disabled={busy || !upload.ready}
          >
            {busy ? 'Assessing…' : 'Assess lesion'}
          </button>
          {!file && <p className="hint">Choose an image to enable the assessment.</p>}
          {refused && <p className="hint">Choose another image to enable the assessment.</p>}
        </form>

        <section
          className="result-panel"
          ref={resultRef}
          aria-labelledby={`${ids}-result`}
          tabIndex={-1}
        >
          <h2 id={`${ids}-result`} className="result-title no-print">
            Result
          </h2>
          {modelStatus && (
            <p className="status-warning" data-testid="model-status">
              Model status: {modelStatus}. This is not a fully trained and evaluated model: do not rely on its results.
            </p>
          )}
          <p className="visually-hidden" aria-live="polite" data-testid="result-announcement">
            {announcement}
          </p>
          {showSpinner && (
            <div className="busy-row no-print">
              {/* said by the result's live region above (`announcement`), not a second time here */}
              <Spinner label="Analysing the image…" live={false} />
              <button type="button" className="btn btn-secondary" onClick={cancel} ref={cancelRef} data-testid="cancel-assess">
                Cancel
              </button>
              {elapsed >= SLOW_AFTER_S && (
                <p className="busy-slow" data-testid="busy-slow">
                  Still waiting for the server ({elapsed} s). It may be busy; you can cancel and try again.
                </p>
              )}
            </div>
          )}
          {notice && !busy && (
            <p className="cancelled-note" role="status" data-testid="assess-notice">
              {notice}
            </p>
          )}
          {error && !refused && (
            <div className="error-message" role="alert" data-testid="error-message">
              <strong>Could not assess the image.</strong> {error}
            </div>
          )}
          {shown && stale && (
            <p className="stale-note no-print" role="status" data-testid="result-stale">
              Age, sex or body site has changed since this result, which used the values listed below. Press{' '}
              <strong>Assess lesion</strong> to update it.
            </p>
          )}
          {shown && (
            <ResultView
              outcome={shown}
              preview={preview}
              onNewCase={newCase}
              classes={classes}
              card={card}
              audience={audience}
              opacity={opacity}
              onOpacity={setOpacity}
            />
          )}
          {!shown && !busy && !error && !notice && <EmptyResult />}
        </section>
      </div>
    </div>
  )
}

function EmptyResult() {
  return (
    <div className="empty-result">
      <p>The result will appear here: a risk level with the next step, the probability of each lesion type, and a heatmap of the areas the model used.</p>
      <Disclaimer />
    </div>
  )
}

/** The "decision support, not a diagnosis" notice (server wording when it sends one). */
function Disclaimer({ text }: { text?: string }) {
  const body = text?.trim() || DISCLAIMER_FALLBACK
  const saysIt = /not a diagnosis/i.test(body)
  return (
    <p className="notice" role="note" data-testid="disclaimer">
      <strong>{saysIt ? 'Important:' : 'Decision support, not a diagnosis.'}</strong> {body}
    </p>
  )
}

/** What happens to the photo on this page (the stateless POST /predict). */
export const UPLOAD_PRIVACY =
  'Your photo is sent to this dermsight server only to be assessed; it is not saved or logged.'

/** The patient view's advice in place of the low tier's when the result's reliability is not
 * known (e.g. an ordinary photo, not a dermatoscope picture): no "no urgent step". */
export const UNCERTAIN_ADVICE = {
  title: 'When to see a doctor',
  text:
    'This tool was not tested on photos like this one: have the spot looked at by a doctor if it worries you or ' +
    'if it changes, bleeds or itches.',
}

const PATIENT_ADVICE: Record<string, { title: string; text: string }> = {
  high: {
    title: 'See a dermatologist',
    text: 'Book an appointment with a dermatologist soon, or ask your doctor for a referral. Take this report with you.',
  },
  moderate: {
    title: 'See a dermatologist',
    text: 'Have the spot checked by a dermatologist or your doctor. Until then, watch it for changes in size, shape or colour.',
  },
  low: {
    title: 'When to see a dermatologist',
    text: 'No urgent step is suggested, but this is not a diagnosis. See a dermatologist if the spot changes, bleeds, itches, looks different from your other moles, or if you are worried.',
  },
  cannot_assess: {
    title: 'See a dermatologist if you are worried',
    text: 'This picture could not be assessed. Try again with a clearer picture, or show the spot to a dermatologist or your doctor.',
  },
}

/** A result (exported for the tests, which render it). */
export function ResultView({
  outcome,
  preview,
  onNewCase,
  classes,
  card,
  audience,
  opacity,
  onOpacity,
}: {
  outcome: Outcome
  preview: Preview
  onNewCase: () => void
  classes: LesionClassInfo[]
  card: ModelCard | null
  audience: Audience
  opacity: number
  onOpacity: (v: number) => void
}) {
  const { res } = outcome
  const [showDetails, setShowDetails] = useState(false)
  const detailsId = useId()
  const flags = Array.isArray(res.flags) ? res.flags : []
  // A "cannot assess" result has no valid class, probabilities, heatmap or tier: none is shown.
  const cannot = res.risk === 'cannot_assess'
  const probs = !cannot && res.probabilities && typeof res.probabilities === 'object' ? res.probabilities : {}
  const byCode = new Map(classes.map((c) => [c.code, c]))
  const predictionName = cannot
    ? undefined
    : res.prediction_name ?? (res.prediction ? byCode.get(res.prediction)?.name ?? res.prediction : undefined)
  const thresholds = cardThresholds(card)
  const shareNote = malignantShareNote(card, probs, res.malignant_probability)
  // the share printed with as many decimals as it takes not to contradict the tier beside the cut-offs
  const shown =
    typeof res.malignant_probability === 'number'
      ? shareBesideCutoffs(res.malignant_probability, thresholds?.refer ?? null, thresholds?.monitor ?? null, res.risk)
      : { share: formatProbability(res.malignant_probability), refer: null, monitor: null }
  const nameOf = (code: string) => byCode.get(code)?.name ?? code
  // the patient view's plain counterpart: why "Higher risk" can stand beside cancer bars of "under 1%"
  const patientNote = patientShareNote(card, probs, res.malignant_probability, res.risk, nameOf)
  const gate = card && typeof card.gate === 'object' && card.gate !== null ? (card.gate as Record<string, unknown>) : null
  // gate v2 scores with its own head (v2_threshold); gate v1 with the kNN score (ood_threshold)
  const oodThreshold =
    typeof gate?.v2_threshold === 'number' ? gate.v2_threshold : typeof gate?.ood_threshold === 'number' ? gate.ood_threshold : null
  const patient = audience === 'patient'
  // a flag says how reliable this result is, is not known (e.g. not a dermatoscope picture): the
  // counts of the validation (dermoscopic) images do not describe it, and the patient view does
  // not reassure (`patientUncertain`: no "Lower risk", no "no urgent step")
  const unsure = reliabilityUnknown(res.risk, flags)
  const uncertain = patientUncertain(res.risk, flags, audience)
  const advice = uncertain ? UNCERTAIN_ADVICE : PATIENT_ADVICE[res.risk] ?? PATIENT_ADVICE.cannot_assess
  const modelName = [res.model?.name, res.model?.version].filter(Boolean).join(' ')
  const input = {
    age: res.input?.age ?? outcome.form.age,
    sex: res.input?.sex ?? (outcome.form.sex || null),
    site: res.input?.site ?? (outcome.form.site || null),
  }
  const detailsVisible = !patient || showDetails

  return (
    <div className="result" data-testid="result">
      <header className="print-only report-head">
        <h1>dermsight lesion report</h1>
        <p>
          {formatTimestamp(outcome.at.toISOString())} · image “{outcome.fileName}”
        </p>
        {/* Blank lines to fill in by hand on paper: nothing of the kind is typed, stored or sent. */}
        <dl className="report-fields" data-testid="report-fields">
          {['Patient reference', 'Lesion location', 'Clinician', 'Date'].map((label) => (
            <div key={label}>
              <dt>{label}</dt>
              <dd />
            </div>
          ))}
        </dl>
      </header>

      <dl className="inputs-summary">
        <div>
          <dt>Age</dt>
          <dd>{formatAge(input.age)}</dd>
        </div>
        <div>
          <dt>Sex</dt>
          <dd>{input.sex ?? 'not stated'}</dd>
        </div>
        <div>
          <dt>Body site</dt>
          <dd>{input.site ? (SITE_LABELS[input.site] ?? input.site) : 'not stated'}</dd>
        </div>
      </dl>

      <RiskBanner
        risk={res.risk}
        flags={flags}
        audience={audience}
        predictionName={predictionName}
        prediction={res.prediction}
        probabilities={probs}
        nameOf={nameOf}
      />

      {patient && (
        <div className={`advice advice-${uncertain ? 'uncertain' : res.risk}`} data-testid="patient-advice">
          <IconDoctor size={32} />
          <div>
            <p className="advice-title">{advice.title}</p>
            <p>{advice.text}</p>
          </div>
        </div>
      )}

      {patient && !cannot && !unsure && <NaturalFrequency card={card} risk={res.risk} audience={audience} />}

      {!patient && (
        <dl className="key-numbers" data-testid="clinician-numbers">
          {!cannot && typeof res.malignant_probability === 'number' && (
            <div>
              <dt>{malignantLabel(card, res)}</dt>
              <dd>
                <strong>{shown.share}</strong>
                {thresholds && (thresholds.refer !== null || thresholds.monitor !== null) && (
                  <span className="muted">
                    {' '}
                    (refer ≥ {shown.refer ?? formatPercent(thresholds.refer)}, monitor ≥{' '}
                    {shown.monitor ?? formatPercent(thresholds.monitor)})
                  </span>
                )}
                {shareNote && (
                  <span className="muted" data-testid="malignant-share-note">
                    {' '}
                    {shareNote}
                  </span>
                )}
              </dd>
            </div>
          )}
          {predictionName && (
            <div>
              <dt>{SUGGESTED_CLASS}</dt>
              <dd data-testid="suggested-class">
                {predictionName}
                {res.prediction && ` (${res.prediction})`}
                {res.decision_rule && (
                  <span className="muted" data-testid="decision-rule">
                    {' '}
                    — chosen as: {res.decision_rule}
                  </span>
                )}
              </dd>
            </div>
          )}
          <div>
            <dt>Out-of-distribution score</dt>
            <dd data-testid="ood-score">
              {typeof res.ood_score === 'number' ? res.ood_score.toFixed(2) : 'not available'}
              {typeof res.ood_score === 'number' && oodThreshold !== null && (
                <span className="muted"> (flagged above {oodThreshold.toFixed(2)})</span>
              )}
            </dd>
          </div>
          <div>
            <dt>Flags</dt>
            <dd>
              {flags.length === 0 ? (
                'none'
              ) : (
                <ul className="flag-list" data-testid="flags">
                  {flags.map((f) => (
                    <li key={f.code}>
                      <code>{f.code}</code> {f.message}
                      {f.blocking !== false ? <span className="tag tag-malignant">blocking</span> : <span className="tag">warning</span>}
                    </li>
                  ))}
                </ul>
              )}
            </dd>
          </div>
        </dl>
      )}

      {patient && !cannot && (
        <button
          type="button"
          className="btn btn-secondary no-print details-toggle"
          aria-expanded={showDetails}
          aria-controls={detailsId}
          onClick={() => setShowDetails((v) => !v)}
          data-testid="details-toggle"
        >
          {showDetails ? 'Hide details' : 'Show details'}
        </button>
      )}

      {cannot ? (
        <p className="muted" data-testid="no-result">
          No result is shown for this image: no risk level, no probabilities and no heatmap, because the model was not
          built for it and any numbers would be meaningless.
        </p>
      ) : (
      <div id={detailsId} className={`details${detailsVisible ? '' : ' collapsed'}`}>
        <div className="details-grid">
          <div>
            <h3>Where the model looked</h3>
            <HeatmapViewer
              key={preview.url ?? 'none'}
              imageSrc={preview.url}
              noImageReason={preview.dicom ? 'This DICOM file' : undefined}
              heatmapSrc={heatmapSrc(res.heatmap)}
              crop={cardCrop(card)}
              // the patient view does not name the suggested class (RiskBanner hides it on purpose)
              predictionName={patient ? undefined : predictionName}
              opacity={opacity}
              onOpacity={onOpacity}
            />
          </div>
          <div>
            <h3>{patient ? PATIENT_PROBS_TITLE : 'Class probabilities'}</h3>
            {patient && (
              <p className="muted prob-note" data-testid="patient-probs-note">
                {PATIENT_PROBS_NOTE}
              </p>
            )}
            {patient && patientNote && (
              <p className="muted prob-note" data-testid="patient-share-note">
                {patientNote}
              </p>
            )}
            <ProbBars probabilities={probs} classes={classes} prediction={res.prediction} audience={audience} />
          </div>
        </div>
        {!patient && <SimilarCases result={res} />}
      </div>
      )}

      <p className="model-line">
        Model: <strong data-testid="model-name">{modelName || 'unknown'}</strong>
        {typeof res.timing_ms === 'number' && !patient && <span className="muted"> · {Math.round(res.timing_ms)} ms</span>}
      </p>

      <Disclaimer text={res.disclaimer} />

      <div className="result-actions no-print">
        <button type="button" className="btn btn-secondary" onClick={() => window.print()} data-testid="print-report">
          <IconPrinter /> Print report
        </button>
        <button type="button" className="btn btn-secondary" onClick={onNewCase} data-testid="new-case-result">
          New case
        </button>
      </div>

      <CardSummary card={card} />
    </div>
  )
}

/** Printed with the report: what the model is and how well it did. */
function CardSummary({ card }: { card: ModelCard | null }) {
  if (!card) return null
  const key = cardKeyMetrics(card, ['malignant_auc', 'mel_auc', 'refer_sensitivity', 'refer_specificity', 'balanced_accuracy'])
  const metrics = cardMetricSets(card)[0]
  const t = cardThresholds(card)
  // every limitation: the later ones carry clinical caveats (e.g. the refer threshold on another camera)
  const limits = cardList(card, 'limitations')
  const intended = card.intended_use
  return (
    <section className="print-only card-summary">
      <h2>About the model</h2>
      <p>
        {cardString(card, 'name') ?? 'Model'} {cardString(card, 'version') ?? ''}
        {t && t.refer !== null && (
          <>
            {' '}
            · high risk when {malignantShortName(card)} ≥ {formatPercent(t.refer)}, moderate when ≥ {formatPercent(t.monitor)}
          </>
        )}
      </p>
      {intended !== undefined && intended !== null && <p>Intended use: {inlineValue(intended)}</p>}
      {key.length > 0 ? (
        <p>
          Test set (95% CI): {key.map(([label, e]) => `${label} ${formatInterval({ value: e.value ?? NaN, lo: e.lo, hi: e.hi })}`).join('; ')}
        </p>
      ) : (
        metrics && (
          <p>
            {humanize(metrics[0])} metrics (95% CI):{' '}
            {Object.entries(metrics[1])
              .slice(0, 6)
              .map(([k, v]) => `${humanize(k)} ${inlineValue(v)}`)
              .join('; ')}
          </p>
        )
      )}
      {limits.length > 0 && (
        <>
          <p>Known limitations:</p>
          <ul data-testid="card-summary-limitations">
            {limits.map((l) => (
              <li key={l}>{l}</li>
            ))}
          </ul>
        </>
      )}
    </section>
  )
}
