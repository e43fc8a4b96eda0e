import { useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent, type MouseEvent, type ReactNode } from 'react'
import { SITE_LABELS } from '../content.ts'

export type View = 'front' | 'back'

/** The figure's size in SVG units (its viewBox). */
export const FIGURE = { width: 120, height: 240 }

/** A lesion pinned on the figure (clinic lesion map), in the figure's units (see FIGURE). */
export interface Pin {
  id: number
  view: View
  x: number
  y: number
  label: string
  selected?: boolean
  /** drawn in the alert colour (e.g. the lesion's risk rose) */
  alert?: boolean
  /** only drawn (e.g. the mark of a new lesion not saved yet): a tap on or near it goes to the
   * region beneath, as a tap anywhere else on the body does */
  inert?: boolean
}

/** The drawn pin's radius, in the figure's units. */
export const PIN_RADIUS = 4.5
/** The tap area a pin aims for on a touch screen, in CSS px across (a finger: 44 px, WCAG 2.5.5). */
export const PIN_TARGET_PX = 44
/** The largest radius of a pin's tap area, in the figure's units, however small the figure is
 * drawn: 10 units is a circle 20 across, half the torso's width and under a tenth of its area
 * (40 x 81), so a few pins never cover the back. */
export const MAX_HIT_RADIUS = 10
/** The figure's width in CSS px when it has not been measured yet (its CSS minimum, the
 * `min-width` of `.bodymap-fig` in styles.css). */
export const FIGURE_MIN_PX = 100

/** The radius (in the figure's units) of a pin's tap area. With a mouse or pen (`coarse` false)
 * it is the drawn dot. On a touch screen it aims at `targetPx` CSS px across on a figure drawn
 * `renderedWidthPx` wide, capped at MAX_HIT_RADIUS; never less than the dot. A tap in this area
 * but outside the dot does not open the lesion by itself: it asks (see BodyMap). */
export function pinHitRadius(
  renderedWidthPx: number,
  coarse: boolean,
  figureWidth: number = FIGURE.width,
  targetPx: number = PIN_TARGET_PX,
): number {
  if (!coarse) return PIN_RADIUS
  const width = Number.isFinite(renderedWidthPx) && renderedWidthPx > 0 ? renderedWidthPx : FIGURE_MIN_PX
  const r = Math.ceil((((targetPx / 2) * figureWidth) / width) * 10) / 10
  return Math.max(PIN_RADIUS, Math.min(MAX_HIT_RADIUS, r))
}

/** Each tap-able pin's own hit radius in `view`: `base` (see pinHitRadius), but never more than
 * half the distance to its nearest other pin (two close moles keep apart areas); never less
 * than the drawn dot. Inert pins get none. */
export function pinHitRadii(pins: readonly Pin[], view: View, base: number): Map<number, number> {
  const mine = pins.filter((p) => p.view === view && !p.inert)
  const radii = new Map<number, number>()
  for (const p of mine) {
    let r = base
    for (const q of mine) if (q !== p) r = Math.min(r, Math.hypot(p.x - q.x, p.y - q.y) / 2)
    radii.set(p.id, Math.max(PIN_RADIUS, r))
  }
  return radii
}

/** The pin of `view` nearest to (x, y) within its hit radius (figure units; one number for all
 * pins, or each pin's own as pinHitRadii gives), or null. Inert pins are never chosen. */
export function nearestPin(
  pins: readonly Pin[],
  view: View,
  x: number,
  y: number,
  radius: number | ReadonlyMap<number, number>,
): Pin | null {
  let best: Pin | null = null
  let bestD = Infinity
  for (const p of pins) {
    if (p.view !== view || p.inert) continue
    const r = typeof radius === 'number' ? radius : radius.get(p.id)
    if (r === undefined) continue
    const d = Math.hypot(p.x - x, p.y - y)
    if (d <= r && d < bestD) {
      best = p
      bestD = d
    }
  }
  return best
}

/** What a tap on the body at (x, y) does when pins can be opened and points placed: place a new
 * point, or (on a touch screen, beside a pin: in its hit area but off its dot) ask whether to
 * open that pin's lesion or place a new one there. Never opens a lesion without a tap on its dot. */
export function tapOutcome(
  pins: readonly Pin[],
  view: View,
  x: number,
  y: number,
  radii: ReadonlyMap<number, number>,
): { kind: 'place' } | { kind: 'ask'; pin: Pin } {
  const near = nearestPin(pins, view, x, y, radii)
  return near ? { kind: 'ask', pin: near } : { kind: 'place' }
}

/** Whether the device's main pointer is coarse (a finger), as CSS `(pointer: coarse)` says. */
function coarseMedia(): boolean {
  return typeof window !== 'undefined' && typeof window.matchMedia === 'function' && window.matchMedia('(pointer: coarse)').matches
}

/** Whether this click came from a finger: the click's own pointer type where the browser gives it
 * (a PointerEvent), else the device's main pointer. */
function fromTouch(e: MouseEvent<Element>): boolean {
  const type = (e.nativeEvent as Partial<PointerEvent>).pointerType
  if (type === 'touch') return true
  if (type === 'mouse' || type === 'pen') return false
  return coarseMedia()
}

/** A tap beside a pin, waiting for the user to say what it meant. */
interface Choice {
  pin: Pin
  point: MapPoint
}

/** What of the pins a pending choice depends on: when it changes (a lesion deleted, moved or
 * renamed), the choice is dropped, as it may name a lesion that is no longer there. */
export function pinsSignature(pins: readonly Pin[]): string {
  return JSON.stringify(pins.map((p) => [p.id, p.view, p.x, p.y, p.label, Boolean(p.inert)]))
}

/** The words a screen reader hears when a tap beside a pin asks what it meant. */
export function choiceAnnouncement(label: string): string {
  return `Your tap was beside a pin (${label}). Open it, place a new lesion here, or cancel?`
}

export interface MapPoint {
  view: View
  x: number
  y: number
  site: string
}

interface Props {
  value: string
  onChange: (site: string) => void
  pins?: Pin[]
  /** When given, a click on a region places a point there (the caller pins a lesion). */
  onPoint?: (p: MapPoint) => void
  onPinSelect?: (id: number) => void
  /** A mouse/touch shortcut for a list beside it that says the same: out of the tab order and
   * hidden from screen readers, which use the list (13 extra tab stops otherwise). */
  pointerOnly?: boolean
}

/** Where a click fell, in the figure's units; the middle of the region's first shape for a
 * keyboard or synthetic click (no pointer position). */
function pointOf(e: MouseEvent<SVGElement> | KeyboardEvent<SVGElement>): { x: number; y: number } {
  const g = e.currentTarget
  const svg = g.ownerSVGElement
  const ctm = svg?.getScreenCTM()
  if ('clientX' in e && e.detail > 0 && ctm) {
    const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse())
    return { x: Math.round(p.x * 10) / 10, y: Math.round(p.y * 10) / 10 }
  }
  const shape = g.querySelector<SVGGraphicsElement>('circle, rect, path, ellipse')
  const b = shape?.getBBox()
  return b ? { x: Math.round(b.x + b.width / 2), y: Math.round(b.y + b.height / 2) } : { x: 60, y: 120 }
}

interface Region {
  site: string
  shapes: ReactNode
}

// One simple figure, 120 x 250 units. Arms, hands, legs and feet are shared by both views.
const head = (
  <>
    <circle cx="60" cy="20" r="15" />
    <rect x="54" y="32" width="12" height="12" rx="2" />
  </>
)
const arms = (
  <>
    <path d="M31 47 L22 50 L11 128 L21 131 L32 72 Z" />
    <path d="M89 47 L98 50 L109 128 L99 131 L88 72 Z" />
  </>
)
const legs = (
  <>
    <rect x="40" y="124" width="19" height="96" rx="6" />
    <rect x="61" y="124" width="19" height="96" rx="6" />
  </>
)
const handsFeet = (
  <>
    <ellipse cx="15" cy="138" rx="6" ry="8" />
    <ellipse cx="105" cy="138" rx="6" ry="8" />
    <ellipse cx="47" cy="228" rx="10" ry="5" />
    <ellipse cx="73" cy="228" rx="10" ry="5" />
  </>
)
const sides = (
  <>
    <rect x="31" y="46" width="9" height="76" rx="4" />
    <rect x="80" y="46" width="9" height="76" rx="4" />
  </>
)
const trunk = <rect x="40" y="43" width="40" height="81" rx="5" />

const REGIONS: Record<View, Region[]> = {
  front: [
    { site: 'head/neck', shapes: head },
    { site: 'upper extremity', shapes: arms },
    { site: 'lower extremity', shapes: legs },
    { site: 'palms/soles', shapes: handsFeet },
    { site: 'anterior torso', shapes: trunk },
    { site: 'lateral torso', shapes: sides },
    {
      site: 'oral/genital',
      shapes: (
        <>
          <ellipse cx="60" cy="26" rx="5.5" ry="2.8" />
          <ellipse cx="60" cy="127" rx="6" ry="6.5" />
        </>
      ),
    },
  ],
  back: [
    { site: 'head/neck', shapes: head },
    { site: 'upper extremity', shapes: arms },
    { site: 'lower extremity', shapes: legs },
    { site: 'palms/soles', shapes: handsFeet },
    { site: 'posterior torso', shapes: trunk },
    { site: 'lateral torso', shapes: sides },
  ],
}

const TORSO = new Set(['anterior torso', 'posterior torso', 'lateral torso'])

function slug(site: string): string {
  return site.replace(/[^a-z]+/g, '-')
}

/** Clickable front/back body outline; every region is a keyboard-focusable button. */
export function BodyMap({ value, onChange, pins = [], onPoint, onPinSelect, pointerOnly = false }: Props) {
  // the figure's drawn width (it grows with the space it has): the pins' tap areas follow it
  const boxRef = useRef<HTMLDivElement>(null)
  const [figurePx, setFigurePx] = useState(0)
  const hasPins = pins.length > 0
  useLayoutEffect(() => {
    const svg = boxRef.current?.querySelector('svg')
    if (!svg || !hasPins) return
    const update = () => setFigurePx(Math.round(svg.getBoundingClientRect().width))
    update()
    if (typeof ResizeObserver === 'undefined') return
    const observer = new ResizeObserver(update)
    observer.observe(svg)
    return () => observer.disconnect()
  }, [hasPins])
  // a tap beside a pin (touch only) asks what it meant, under the figures: brought into view
  // (on a phone it is below both figures, off the screen) with the focus on its first button
  const [choice, setChoice] = useState<Choice | null>(null)
  const openRef = useRef<HTMLButtonElement>(null)
  const choiceRef = useRef<HTMLDivElement>(null)
  // where the focus goes back to when the choice closes without leaving the page: the tapped region
  const returnRef = useRef<Element | null>(null)
  useEffect(() => {
    if (!choice) return
    const box = choiceRef.current
    if (box && typeof box.scrollIntoView === 'function') box.scrollIntoView({ block: 'nearest' })
    openRef.current?.focus({ preventScroll: true })
  }, [choice])
  /** Close the choice (Cancel, Escape, Place, new pins): a focus left on nothing (it was in the
   * choice) goes back to the tapped region, else to the map's first region. */
  const closeChoice = () => setChoice(null)
  const hadChoice = useRef(false)
  useLayoutEffect(() => {
    const had = hadChoice.current
    hadChoice.current = choice !== null
    if (!had || choice || typeof document === 'undefined') return
    const active = document.activeElement
    if (active !== null && active !== document.body) return
    const back = returnRef.current
    const target = (back instanceof HTMLElement || back instanceof SVGElement) && back.isConnected ? back : null
    ;(target ?? boxRef.current?.querySelector<SVGElement>('[role="button"]'))?.focus({ preventScroll: true })
  }, [choice])
  // Escape closes it, wherever the focus is
  useEffect(() => {
    if (!choice) return
    const onDocKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.preventDefault()
        setChoice(null)
      }
    }
    document.addEventListener('keydown', onDocKey)
    return () => document.removeEventListener('keydown', onDocKey)
  }, [choice])
  // new pins (a lesion deleted, moved or renamed): the choice may name one no longer there
  const pinsSig = pinsSignature(pins)
  const [seenSig, setSeenSig] = useState(pinsSig)
  if (seenSig !== pinsSig) {
    setSeenSig(pinsSig)
    if (choice) setChoice(null)
  }
  const pick = (e: MouseEvent<SVGGElement> | KeyboardEvent<SVGGElement>, view: View, site: string) => {
    if (!onPoint) {
      onChange(value === site ? '' : site)
      return
    }
    const at = pointOf(e)
    setChoice(null)
    // a pointer's tap (not a key nor a synthetic click) from a finger, beside a pin: ask
    if (onPinSelect && 'clientX' in e && e.detail > 0 && fromTouch(e)) {
      const radii = pinHitRadii(pins, view, pinHitRadius(figurePx, true))
      const outcome = tapOutcome(pins, view, at.x, at.y, radii)
      if (outcome.kind === 'ask') {
        returnRef.current = e.currentTarget
        setChoice({ pin: outcome.pin, point: { view, site, ...at } })
        return
      }
    }
    onPoint({ view, site, ...at })
  }
  const onKey = (e: KeyboardEvent<SVGGElement>, view: View, site: string) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault()
      pick(e, view, site)
    }
  }
  const onPinKey = (e: KeyboardEvent, id: number) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault()
      onPinSelect?.(id)
    }
  }
  return (
    <>
      <div
        ref={boxRef}
        className="bodymap"
        role={pointerOnly ? undefined : 'group'}
        aria-label={pointerOnly ? undefined : 'Body map: choose where the lesion is'}
        aria-hidden={pointerOnly ? true : undefined}
      >
        {(['front', 'back'] as View[]).map((view) => (
          <figure key={view} className="bodymap-fig">
            <svg viewBox={`0 0 ${FIGURE.width} ${FIGURE.height}`} className="bodymap-svg" aria-label={`${view === 'front' ? 'Front' : 'Back'} of the body`} role="group">
              {REGIONS[view].map((r) => {
                const selected = value === r.site
                // "torso" (side unknown) lights every torso region faintly.
                const partial = value === 'torso' && TORSO.has(r.site)
                const label = `${view === 'front' ? 'Front' : 'Back'}: ${SITE_LABELS[r.site] ?? r.site}`
                return (
                  <g
                    key={r.site}
                    role="button"
                    tabIndex={pointerOnly ? -1 : 0}
                    aria-pressed={selected}
                    aria-label={label}
                    data-testid={`bodymap-${view}-${slug(r.site)}`}
                    data-site={r.site}
                    className={`bodymap-region${selected ? ' is-selected' : ''}${partial ? ' is-partial' : ''}`}
                    onClick={(e) => pick(e, view, r.site)}
                    onKeyDown={(e) => onKey(e, view, r.site)}
                  >
                    <title>{label}</title>
                    {r.shapes}
                  </g>
                )
              })}
              {choice && choice.point.view === view && (
                <circle cx={choice.point.x} cy={choice.point.y} r={PIN_RADIUS} className="bodymap-tap-mark" data-testid="bodymap-tap-mark" aria-hidden="true" />
              )}
              {pins
                .filter((p) => p.view === view)
                .map((p) => (
                  <g
                    key={p.id}
                    role="button"
                    tabIndex={0}
                    aria-pressed={Boolean(p.selected)}
                    aria-label={p.label}
                    data-testid={`pin-${p.id}`}
                    className={`bodymap-pin${p.selected ? ' is-selected' : ''}${p.alert ? ' is-alert' : ''}${p.inert ? ' is-inert' : ''}`}
                    onClick={() => {
                      setChoice(null)
                      onPinSelect?.(p.id)
                    }}
                    onKeyDown={(e) => onPinKey(e, p.id)}
                  >
                    <title>{p.label}</title>
                    <circle cx={p.x} cy={p.y} r={PIN_RADIUS} />
                  </g>
                ))}
            </svg>
            <figcaption>{view === 'front' ? 'Front' : 'Back'}</figcaption>
          </figure>
        ))}
      </div>
      {choice && (
        <div
          ref={choiceRef}
          className="bodymap-choice"
          role="group"
          aria-label={`Your tap was beside a pin (${choice.pin.label})`}
          data-testid="bodymap-choice"
        >
          <p>Your tap was beside a pin ({choice.pin.label}). Which did you mean?</p>
          <div className="bodymap-choice-actions">
            <button
              ref={openRef}
              type="button"
              className="btn btn-primary"
              data-testid="bodymap-choice-open"
              onClick={() => {
                setChoice(null)
                onPinSelect?.(choice.pin.id)
              }}
            >
              Open {choice.pin.label}
            </button>
            <button
              type="button"
              className="btn btn-secondary"
              data-testid="bodymap-choice-place"
              onClick={() => {
                closeChoice()
                onPoint?.(choice.point)
              }}
            >
              Place a new lesion here
            </button>
            <button type="button" className="btn btn-ghost" data-testid="bodymap-choice-cancel" onClick={closeChoice}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {onPoint && onPinSelect && (
        <p className="visually-hidden" role="status" aria-live="polite" data-testid="bodymap-choice-status">
          {choice ? choiceAnnouncement(choice.pin.label) : ''}
        </p>
      )}
    </>
  )
}
