import type { ReactNode } from 'react'
import { API, type ExampleImage, type LesionClassInfo, type ModelCard } from '../api.ts'
import { cardDataSummary, cardTestSplitUse, joinList, sourceName, unkOrigin } from '../card.ts'
import { FALLBACK_CLASSES, PHOTO_TIPS, riskHeadline } from '../content.ts'
import { classMixSentence, countWord, OTHER_CLASS } from '../format.ts'
import { useApiData, useApiImage } from '../hooks.ts'

const SECTIONS = [
  ['learn-types', 'Lesion types'],
  ['learn-abcde', 'The ABCDE rule'],
  ['learn-early', 'Why early matters'],
  ['learn-dermoscopy', 'Dermoscopy'],
  ['learn-photo', 'Taking a good image'],
  ['learn-use', 'Using this tool'],
  ['learn-limits', 'Limits'],
] as const

const n = (v: number) => v.toLocaleString('en-US')

/** What the catch-all class is learned from, for the class list: its images come from one
 * collection (the card's source check), so it does not stand for "any other kind of lesion". */
export function otherClassSentence(card: ModelCard | null, name: string, ordinal: string): string {
  const origin = card ? unkOrigin(card, OTHER_CLASS) : null
  const what = `${ordinal ? `The ${ordinal}, ` : ''}${name} (${OTHER_CLASS}), `
  if (origin) {
    // the training images only: the test and validation images teach the model nothing
    const images = origin.images !== null ? `${n(origin.images)} training images` : 'training images'
    // SIIM-ISIC 2020 records these lesions as benign without naming a diagnosis
    const label = origin.source === 'isic2020' ? ' labelled “benign, diagnosis unknown”' : ''
    return (
      `${what}is learned from ${images}, all from one collection (${sourceName(origin.source)})${label}: ` +
      'it does not mean “none of the other kinds”.'
    )
  }
  return `${what}stands for benign lesions without a specific diagnosis in the training images; it does not mean “none of the other kinds”.`
}

/** The training data in one sentence, from the card when it says (card.data). */
export function trainingDataSentence(card: ModelCard | null): string {
  const d = cardDataSummary(card)
  if (!d) return 'Trained on public dermoscopic images (HAM10000 and ISIC challenge collections), many of them small copies.'
  const split =
    d.total !== null && d.val !== null && d.test !== null
      ? ` (${n(d.total)} used in all: ${n(d.train)} for training, ${n(d.val)} for validation, ${n(d.test)} for testing)`
      : ''
  const from = d.sources.length ? ` from ${joinList(d.sources)}` : ''
  return `Trained on ${n(d.train)} public dermoscopic images${split}${from}, many of them small copies.`
}

const ORDINALS = ['', 'first', 'second', 'third', 'fourth', 'fifth', 'sixth', 'seventh', 'eighth', 'ninth', 'tenth', 'eleventh', 'twelfth']

function jump(id: string) {
  const el = document.getElementById(id)
  if (!el) return
  el.scrollIntoView({ block: 'start' })
  el.focus({ preventScroll: true })
}

export function LearnPage() {
  const classesQ = useApiData<LesionClassInfo[]>(`${API}/classes`)
  const examplesQ = useApiData<ExampleImage[]>(`${API}/examples`)
  const cardQ = useApiData<ModelCard>(`${API}/model`)
  const classes = Array.isArray(classesQ.data) && classesQ.data.length ? classesQ.data : FALLBACK_CLASSES
  const examples = Array.isArray(examplesQ.data) ? examplesQ.data : []
  const card = cardQ.data && typeof cardQ.data === 'object' && !Array.isArray(cardQ.data) ? cardQ.data : null
  const other = classes.find((c) => c.code === OTHER_CLASS)
  const specific = classes.filter((c) => c.code !== OTHER_CLASS)
  const otherOrdinal = other && specific.length && classMixSentence(specific) ? (ORDINALS[classes.length] ?? '') : ''

  return (
    <div className="learn" data-testid="learn-page">
      <header className="learn-hero">
        <h1 className="page-title">Skin lesions, melanoma and this tool</h1>
        <p className="lead">
          A short guide to the kinds of spots this tool knows, the warning signs of melanoma, why catching it early
          matters, and how to get a useful result.
        </p>
        <nav aria-label="On this page" className="toc">
          {SECTIONS.map(([id, label]) => (
            <button key={id} type="button" className="chip" onClick={() => jump(id)}>
              {label}
            </button>
          ))}
        </nav>
      </header>

      <Section id="learn-types" title="What the tool can recognise">
        <p>
          The model sorts a dermoscopic image into one of {countWord(classes.length)} groups.{' '}
          {other ? classMixSentence(specific) : classMixSentence(classes)}
          {other && <span data-testid="other-class-origin"> {otherClassSentence(card, other.name, otherOrdinal)}</span>}
        </p>
        <div className="class-grid">
          {classes.map((c) => (
            <article key={c.code} className={`class-card${c.malignant ? ' is-malignant' : c.premalignant ? ' is-premalignant' : ''}`}>
              <h3>
                {c.name} <span className="muted">({c.code})</span>
              </h3>
              <p>
                <span
                  className={`tag${c.malignant ? ' tag-malignant' : c.premalignant ? ' tag-premalignant' : c.code === OTHER_CLASS ? '' : ' tag-benign'}`}
                >
                  {c.malignant ? 'cancer' : c.premalignant ? 'pre-cancer' : c.code === OTHER_CLASS ? 'other' : 'benign'}
                </span>
              </p>
              <p>{c.lay}</p>
              <div className="example-row">
                {examples
                  .filter((e) => e.code === c.code)
                  .slice(0, 2)
                  .map((e) => (
                    <ExampleFigure key={e.image_id} example={e} name={c.name} />
                  ))}
              </div>
            </article>
          ))}
        </div>
        {examplesQ.error && <p className="muted">Example images could not be loaded.</p>}
      </Section>

      <Section id="learn-abcde" title="The ABCDE rule for moles">
        <p>Signs that a mole may be a melanoma. One sign is enough to have it checked.</p>
        <ol className="abcde">
          <Abcde letter="A" title="Asymmetry" art={<ArtAsymmetry />}>
            The two halves do not match.
          </Abcde>
          <Abcde letter="B" title="Border" art={<ArtBorder />}>
            The edge is ragged, notched or blurred.
          </Abcde>
          <Abcde letter="C" title="Colour" art={<ArtColour />}>
            Several colours or uneven shades: brown, black, red, white or blue-grey.
          </Abcde>
          <Abcde letter="D" title="Diameter" art={<ArtDiameter />}>
            Larger than about 6 mm (a pencil eraser), though melanomas can be smaller.
          </Abcde>
          <Abcde letter="E" title="Evolving" art={<ArtEvolving />}>
            It changes in size, shape, colour or height, or starts to bleed, itch or crust.
          </Abcde>
        </ol>
      </Section>

      <Section id="learn-early" title="Why early detection matters">
        <p>
          Melanoma found while it is still only in the skin is usually cured by a small operation. Once it has spread,
          treatment is much harder. In the United States, the five-year relative survival for melanoma is
          approximately:
        </p>
        <div className="survival" role="img" aria-label="Approximate 5-year relative survival for melanoma: localized about 99 percent, regional about 75 percent, distant about 35 percent">
          <SurvivalBar label="Localized" detail="only in the skin where it started" pct={99} />
          <SurvivalBar label="Regional" detail="spread to nearby lymph nodes or tissue" pct={75} />
          <SurvivalBar label="Distant" detail="spread to other parts of the body" pct={35} />
        </div>
        <p className="source">
          Approximate figures, rounded, for people diagnosed in the US. Source:{' '}
          <cite>SEER Cancer Stat Facts: Melanoma of the Skin, National Cancer Institute</cite>{' '}
          (<a href="https://seer.cancer.gov/statfacts/html/melan.html" rel="noreferrer" target="_blank">seer.cancer.gov</a>).
          Survival depends on many factors and differs by country and over time.
        </p>
      </Section>

      <Section id="learn-dermoscopy" title="What is dermoscopy?">
        <div className="two-col">
          <p>
            A <strong>dermatoscope</strong> is a hand-held magnifier with its own light. Placed on the skin (often
            with a drop of gel or alcohol) or held just above it with polarised light, it removes surface glare and
            shows colours and patterns under the skin surface that the naked eye cannot see. Dermatologists use these
            patterns to tell harmless moles from melanoma and other cancers. Phone clip-on dermatoscopes exist too.
          </p>
          <p>
            This tool was trained on <strong>dermoscopic</strong> images. Ordinary phone photos taken without a
            dermatoscope look different, so the tool may refuse them (“cannot assess”) or be less accurate on them.
          </p>
        </div>
      </Section>

      <Section id="learn-photo" title="How to take a good image">
        <ul className="checklist">
          {PHOTO_TIPS.map((t) => (
            <li key={t}>
              <span className="check" aria-hidden="true">✓</span> {t}
            </li>
          ))}
          <li>
            <span className="check" aria-hidden="true">✓</span> One lesion per image; take a separate picture for each spot.
          </li>
        </ul>
      </Section>

      <Section id="learn-use" title="How to use this tool and read its result">
        <ol className="steps">
          <li>Upload or take a picture of one lesion on the <a href="#/">Assess</a> page.</li>
          <li>Add age, sex and body site if you know them (optional; they help a little).</li>
          <li>Press “Assess lesion”. The image is analysed by the server; the result appears in a few seconds.</li>
        </ol>
        {/* Each level as the clinician view words it, and as the patient view does. */}
        <div className="tier-legend" data-testid="tier-legend">
          {(['high', 'moderate', 'low', 'cannot_assess'] as const).map((r) => {
            const c = riskHeadline(r, 'clinician')
            const p = riskHeadline(r, 'patient')
            return (
              <div key={r} className={`tier risk-${r}`}>
                <strong>{c.label}</strong>
                <span>{c.nextStep}.</span>
                <span className="tier-patient" data-testid={`tier-patient-${r}`}>
                  Patient view: <strong>{p.label}</strong>
                  {p.nextStep !== c.nextStep && <> — {p.nextStep}.</>}
                </span>
              </div>
            )
          })}
        </div>
        <ul className="plain-list">
          <li>
            The <strong>risk level</strong> compares two cut-offs with how much of the model’s estimate for the
            specific, named types goes to the three cancers (melanoma, basal cell or squamous cell carcinoma). It is a
            share of those named types, not the chance that the lesion is a cancer: when most of the estimate goes to
            “Other / unknown”, the level can be higher than the cancer bars alone suggest. The cut-offs were set
            on the validation images (kept out of training). Separate test images, never used for training or for
            setting the cut-offs, measure how well the tool does
            {cardTestSplitUse(card)
              ? '; the model card says how they were used before this release (see “Test split use” on the Model page), so these figures may be optimistic.'
              : '.'}
          </li>
          <li>
            The <strong>bars</strong> show how likely the model thinks each type is. They add up to about 100% (in the
            patient view each is rounded to a whole number, so the total can be a little off). A close race
            between two types means the model is unsure.
          </li>
          <li>
            The <strong>heatmap</strong> shows which parts of the whole image influenced the answer most. The answer
            itself comes from the centre square of the image (outlined when the image is not square); the heatmap shows
            the same type over the whole picture. Use the slider to fade it.
          </li>
          <li>
            <strong>Cannot assess</strong> means the image is too dark, blurred, small, black and white, or not the
            kind of picture the model was built for (a dermoscopic picture of a skin lesion). Take a better picture, or see a doctor.
          </li>
        </ul>
      </Section>

      <Section id="learn-limits" title="Limits of this tool">
        <ul className="plain-list limits">
          <li>
            <strong>Not a diagnosis.</strong> Only a doctor who examines the skin (and sometimes a biopsy) can diagnose a
            lesion. If a spot worries you, see a doctor whatever the tool says.
          </li>
          <li data-testid="training-data">
            {trainingDataSentence(card)} Real clinics see lesions the training set does not.
          </li>
          <li>
            Most training images come from people with <strong>fair skin</strong>; accuracy on darker skin is unknown
            and may be lower.
          </li>
          <li>
            It knows only <strong>{countWord(classes.length)} types</strong> of lesion. Anything else (e.g. rare tumours,
            rashes, infections) will still be forced into one of the {countWord(classes.length)}.
          </li>
          <li>
            Not for lesions of the <strong>nails</strong>, <strong>mucosa</strong> (mouth, genitals, eyes), or for
            ordinary photos without a dermatoscope.
          </li>
          <li>
            It reads <strong>colour</strong>: a photo with a filter (sepia, a tint, swapped colours) is often answered
            wrongly and not always refused. Send the picture as the camera took it.
          </li>
        </ul>
      </Section>
    </div>
  )
}

function Section({ id, title, children }: { id: string; title: string; children: ReactNode }) {
  return (
    <section className="learn-section" aria-labelledby={id}>
      <h2 id={id} tabIndex={-1}>
        {title}
      </h2>
      {children}
    </section>
  )
}

function ExampleFigure({ example, name }: { example: ExampleImage; name: string }) {
  const { src, failed } = useApiImage(example.url)
  if (failed) return null
  return (
    <figure className="example">
      {src ? <img src={src} alt={`Dermoscopic example of ${name} (${example.image_id})`} width={128} height={128} /> : <div className="example-ph" aria-hidden="true" />}
      <figcaption>
        {example.credit || example.image_id}
        {example.attribution && <> · {example.attribution}</>}
        {example.license_url && (
          <>
            {' '}
            (
            <a
              href={example.license_url}
              target="_blank"
              rel="noreferrer"
              aria-label={`Licence of ${example.image_id}${example.license ? `: ${example.license}` : ''} (opens in a new tab)`}
            >
              licence
            </a>
            )
          </>
        )}
      </figcaption>
    </figure>
  )
}

function Abcde({ letter, title, art, children }: { letter: string; title: string; art: ReactNode; children: ReactNode }) {
  return (
    <li className="abcde-card">
      <span className="abcde-letter" aria-hidden="true">
        {letter}
      </span>
      <div className="abcde-art" aria-hidden="true">
        {art}
      </div>
      <h3>
        <span className="visually-hidden">{letter}: </span>
        {title}
      </h3>
      <p>{children}</p>
    </li>
  )
}

function SurvivalBar({ label, detail, pct }: { label: string; detail: string; pct: number }) {
  return (
    <div className="survival-row" aria-hidden="true">
      <div className="survival-label">
        <strong>{label}</strong>
        <span className="muted">{detail}</span>
      </div>
      <div className="survival-track">
        <div className="survival-fill" style={{ width: `${pct}%` }} />
      </div>
      <div className="survival-pct">~{pct}%</div>
    </div>
  )
}

// --- ABCDE illustrations -------------------------------------------------------------------------

const svgProps = { viewBox: '0 0 80 60', width: 80, height: 60, focusable: 'false' as const }

function ArtAsymmetry() {
  return (
    <svg {...svgProps}>
      <path d="M40 10c10 0 14 8 13 16-1 6 8 9 6 16-2 7-12 9-19 8-14-1-24-8-22-20 2-12 12-20 22-20z" fill="#6b3f22" />
      <line x1="40" y1="4" x2="40" y2="56" stroke="#1a2233" strokeDasharray="3 3" />
    </svg>
  )
}
function ArtBorder() {
  return (
    <svg {...svgProps}>
      <path d="M40 8l5 6 7-3 1 8 8 2-4 7 6 5-7 4 2 8-8-1-3 7-6-5-6 5-3-7-8 1 2-8-7-4 6-5-4-7 8-2 1-8 7 3z" fill="#6b3f22" />
    </svg>
  )
}
function ArtColour() {
  return (
    <svg {...svgProps}>
      <ellipse cx="40" cy="30" rx="24" ry="20" fill="#8a5a36" />
      <ellipse cx="33" cy="25" rx="10" ry="8" fill="#2b1a12" />
      <ellipse cx="48" cy="35" rx="8" ry="6" fill="#b2443a" />
      <ellipse cx="45" cy="22" rx="5" ry="4" fill="#7d8aa3" />
    </svg>
  )
}
function ArtDiameter() {
  return (
    <svg {...svgProps}>
      <circle cx="20" cy="26" r="15" fill="#6b3f22" />
      <line x1="5" y1="50" x2="35" y2="50" stroke="#1a2233" strokeWidth="2" />
      <line x1="5" y1="45" x2="5" y2="55" stroke="#1a2233" strokeWidth="2" />
      <line x1="35" y1="45" x2="35" y2="55" stroke="#1a2233" strokeWidth="2" />
      <text x="37" y="31" fontSize="11" fill="#1a2233" fontFamily="inherit">
        &gt;6 mm
      </text>
    </svg>
  )
}
function ArtEvolving() {
  return (
    <svg {...svgProps}>
      <circle cx="14" cy="30" r="7" fill="#8a5a36" />
      <path d="M26 30h14m-5-5 5 5-5 5" stroke="#1a2233" strokeWidth="2" fill="none" />
      <path d="M60 12c10 2 14 10 12 18-2 10-10 16-19 14-9-2-12-10-10-18 2-9 9-15 17-14z" fill="#4a2a18" />
    </svg>
  )
}
