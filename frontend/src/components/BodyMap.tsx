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
 * (40 x 81), so a few pins never cover the back. The 44 px target is reached on a figure 264 px
 * wide or more (a tablet: styles.css lets the figures grow to 280 px there); on a phone's
 * narrower figures the area stays at this cap (about 26 px across on a 390 px phone). */
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

/** The outline of the triangle drawn round an alert pin's dot (clear of the dot and its white edge). */
export function alertTriangle(x: number, y: number): string {
  const r = (v: number) => Math.round(v * 10) / 10
  return `M${r(x)} ${r(y - 11)} L${r(x + 10)} ${r(y + 6.5)} L${r(x - 10)} ${r(y + 6.5)} Z`
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
  /** When given, a click on a region places a point there (the caller pins a lesion); `how` is
   * 'move' when an arrow key moved the mark (the caller can say how far it is now, see stepPosition). */
  onPoint?: (p: MapPoint, how?: 'move') => void
  /** The new lesion's mark (with onPoint): its region alone shows as chosen, and the arrow keys
   * move it while the focus is on that region. */
  point?: MapPoint | null
  /** The Side field's value (with onPoint): Enter on a region with a shape on each side puts the
   * mark on the shape of that side. */
  side?: string
  /** An arrow key could not move the mark (the edge of its part of the body): the key's direction
   * on the screen. */
  onMoveBlocked?: (p: MapPoint, direction: ArrowDirection) => void
  /** The id of the text that says how to use the map (e.g. with the keyboard). */
  describedBy?: string
  onPinSelect?: (id: number) => void
  /** A mouse/touch shortcut for a list beside it that says the same: out of the tab order and
   * hidden from screen readers, which use the list (13 extra tab stops otherwise). */
  pointerOnly?: boolean
}

const TORSO = new Set(['anterior torso', 'posterior torso', 'lateral torso'])

/** Where a pointer's click fell, in the figure's units; null for a keyboard or synthetic click
 * (no pointer position): the caller places the mark from the region's shapes then. */
function pointerPoint(e: MouseEvent<SVGElement> | KeyboardEvent<SVGElement>): { x: number; y: number } | null {
  const svg = e.currentTarget.ownerSVGElement
  const ctm = svg?.getScreenCTM()
  if ('clientX' in e && e.detail > 0 && ctm) {
    const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse())
    return { x: Math.round(p.x * 10) / 10, y: Math.round(p.y * 10) / 10 }
  }
  return null
}

/** One drawn shape of a region, in the figure's units. `name` says which part it is where a
 * region has several (the patient's side is worked out from where it is, see shapeSide). */
export type Shape = { name?: string } & (
  | { kind: 'circle'; cx: number; cy: number; r: number }
  | { kind: 'rect'; x: number; y: number; width: number; height: number; rx: number }
  | { kind: 'ellipse'; cx: number; cy: number; rx: number; ry: number }
  | { kind: 'poly'; points: readonly (readonly [number, number])[] }
)

export interface Region {
  site: string
  shapes: readonly Shape[]
}

// One simple figure, 120 x 240 units, drawn facing the viewer on the front view (the figure's
// left is the patient's right) and from behind on the back view (the figure's left is the
// patient's left). Arms, hands, legs and feet are shared by both views.
const head: Shape[] = [
  { kind: 'circle', cx: 60, cy: 20, r: 15, name: 'head' },
  { kind: 'rect', x: 54, y: 32, width: 12, height: 12, rx: 2, name: 'neck' },
]
const arms: Shape[] = [
  { kind: 'poly', points: [[31, 47], [22, 50], [11, 128], [21, 131], [32, 72]], name: 'arm' },
  { kind: 'poly', points: [[89, 47], [98, 50], [109, 128], [99, 131], [88, 72]], name: 'arm' },
]
const legs: Shape[] = [
  { kind: 'rect', x: 40, y: 124, width: 19, height: 96, rx: 6, name: 'leg' },
  { kind: 'rect', x: 61, y: 124, width: 19, height: 96, rx: 6, name: 'leg' },
]
const handsFeet: Shape[] = [
  { kind: 'ellipse', cx: 15, cy: 138, rx: 6, ry: 8, name: 'hand' },
  { kind: 'ellipse', cx: 105, cy: 138, rx: 6, ry: 8, name: 'hand' },
  { kind: 'ellipse', cx: 47, cy: 228, rx: 10, ry: 5, name: 'foot' },
  { kind: 'ellipse', cx: 73, cy: 228, rx: 10, ry: 5, name: 'foot' },
]
const sides: Shape[] = [
  { kind: 'rect', x: 31, y: 46, width: 9, height: 76, rx: 4, name: 'side' },
  { kind: 'rect', x: 80, y: 46, width: 9, height: 76, rx: 4, name: 'side' },
]
const trunk: Shape[] = [{ kind: 'rect', x: 40, y: 43, width: 40, height: 81, rx: 5 }]

/** The regions of each view, in drawing order (a later one is drawn over an earlier one). */
export const REGIONS: Record<View, readonly Region[]> = {
  front: [
    { site: 'head/neck', shapes: head },
    { site: 'upper extremity', shapes: arms },
    { site: 'lower extremity', shapes: legs },
    { site: 'palms/soles', shapes: handsFeet },
    { site: 'anterior torso', shapes: trunk },
    { site: 'lateral torso', shapes: sides },
    {
      site: 'oral/genital',
      shapes: [
        { kind: 'ellipse', cx: 60, cy: 26, rx: 5.5, ry: 2.8, name: 'mouth' },
        { kind: 'ellipse', cx: 60, cy: 127, rx: 6, ry: 6.5, name: 'genital area' },
      ],
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

function drawShape(s: Shape, key: number): ReactNode {
  switch (s.kind) {
    case 'circle':
      return <circle key={key} cx={s.cx} cy={s.cy} r={s.r} />
    case 'rect':
      return <rect key={key} x={s.x} y={s.y} width={s.width} height={s.height} rx={s.rx} />
    case 'ellipse':
      return <ellipse key={key} cx={s.cx} cy={s.cy} rx={s.rx} ry={s.ry} />
    case 'poly':
      return <path key={key} d={`M${s.points.map(([x, y]) => `${x} ${y}`).join(' L')} Z`} />
  }
}

/** A shape's bounding box. */
export function shapeBox(s: Shape): { x: number; y: number; width: number; height: number } {
  switch (s.kind) {
    case 'circle':
      return { x: s.cx - s.r, y: s.cy - s.r, width: 2 * s.r, height: 2 * s.r }
    case 'rect':
      return { x: s.x, y: s.y, width: s.width, height: s.height }
    case 'ellipse':
      return { x: s.cx - s.rx, y: s.cy - s.ry, width: 2 * s.rx, height: 2 * s.ry }
    case 'poly': {
      const xs = s.points.map((p) => p[0])
      const ys = s.points.map((p) => p[1])
      const x = Math.min(...xs)
      const y = Math.min(...ys)
      return { x, y, width: Math.max(...xs) - x, height: Math.max(...ys) - y }
    }
  }
}

/** Whether (x, y) is inside the shape (its edge included). */
export function shapeContains(s: Shape, x: number, y: number): boolean {
  switch (s.kind) {
    case 'circle':
      return Math.hypot(x - s.cx, y - s.cy) <= s.r
    case 'ellipse':
      return ((x - s.cx) / s.rx) ** 2 + ((y - s.cy) / s.ry) ** 2 <= 1
    case 'rect': {
      if (x < s.x || x > s.x + s.width || y < s.y || y > s.y + s.height) return false
      const dx = Math.max(s.x + s.rx - x, 0, x - (s.x + s.width - s.rx))
      const dy = Math.max(s.y + s.rx - y, 0, y - (s.y + s.height - s.rx))
      return dx === 0 || dy === 0 || Math.hypot(dx, dy) <= s.rx
    }
    case 'poly': {
      let inside = false
      const pts = s.points
      for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
        const [xi, yi] = pts[i]
        const [xj, yj] = pts[j]
        if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside
      }
      return inside
    }
  }
}

/** The middle of a shape's bounding box, to a tenth of a unit (where Enter places the mark). */
export function shapeMiddle(s: Shape): { x: number; y: number } {
  const b = shapeBox(s)
  return { x: Math.round((b.x + b.width / 2) * 10) / 10, y: Math.round((b.y + b.height / 2) * 10) / 10 }
}

/** The patient's side a shape is on (null for a shape on the middle line: head, trunk, mouth):
 * on the front view the figure's left is the patient's right, on the back view their left. */
export function shapeSide(view: View, s: Shape): 'left' | 'right' | null {
  const b = shapeBox(s)
  const mid = b.x + b.width / 2
  if (Math.abs(mid - FIGURE.width / 2) < 2) return null
  return patientSideOf(view, mid < FIGURE.width / 2)
}

/** The region and shape drawn on top at (x, y) of `view`, or null off the body. */
export function regionAt(view: View, x: number, y: number): { site: string; shape: number } | null {
  const regions = REGIONS[view]
  for (let r = regions.length - 1; r >= 0; r--) {
    const shapes = regions[r].shapes
    for (let i = 0; i < shapes.length; i++) if (shapeContains(shapes[i], x, y)) return { site: regions[r].site, shape: i }
  }
  return null
}

function regionOf(view: View, site: string): Region | undefined {
  return REGIONS[view].find((r) => r.site === site)
}

/** Which of its region's shapes a point is on: the one it is inside, else the one whose middle
 * is nearest (a tap on a shape's outline). */
export function shapeIndexOf(p: MapPoint): number {
  const shapes = regionOf(p.view, p.site)?.shapes ?? []
  const inside = shapes.findIndex((s) => shapeContains(s, p.x, p.y))
  if (inside >= 0) return inside
  let best = 0
  let bestD = Infinity
  shapes.forEach((s, i) => {
    const m = shapeMiddle(s)
    const d = Math.hypot(m.x - p.x, m.y - p.y)
    if (d < bestD) [best, bestD] = [i, d]
  })
  return best
}

/** The patient's side of the shape a point is on (null on the middle line). */
export function pointSide(p: MapPoint): 'left' | 'right' | null {
  const s = regionOf(p.view, p.site)?.shapes[shapeIndexOf(p)]
  return s ? shapeSide(p.view, s) : null
}

/** Where Enter (or Space) on a region puts the mark. The first time: the middle of the region's
 * shape on the patient's `side` when the region has one there (the Side field), else of its first
 * shape. Again on the region that holds the mark: the middle of its next shape (the other arm,
 * hand or side; hands, then feet; mouth, then genital area; head, then neck). */
export function keyboardPoint(view: View, site: string, current: MapPoint | null, side: string): MapPoint {
  const shapes = regionOf(view, site)?.shapes ?? []
  let i = 0
  if (current && current.view === view && current.site === site) {
    i = (shapeIndexOf(current) + 1) % Math.max(1, shapes.length)
  } else if (side === 'left' || side === 'right') {
    i = Math.max(0, shapes.findIndex((s) => shapeSide(view, s) === side))
  }
  const at = shapes[i] ? shapeMiddle(shapes[i]) : { x: FIGURE.width / 2, y: FIGURE.height / 2 }
  return { view, site, ...at }
}

export type ArrowDirection = 'left' | 'right' | 'up' | 'down'
const ARROWS: Record<string, readonly [number, number, ArrowDirection]> = {
  ArrowLeft: [-1, 0, 'left'],
  ArrowRight: [1, 0, 'right'],
  ArrowUp: [0, -1, 'up'],
  ArrowDown: [0, 1, 'down'],
}

/** The step of an arrow key, in the figure's units (with Shift: BIG_STEP). */
export const STEP = 2
export const BIG_STEP = 8

/** The mark moved by (dx, dy), kept on the same shape of the same region (at most up to its edge:
 * a smaller step is tried when the whole one would leave it); null when it cannot move that way. */
export function movePoint(p: MapPoint, dx: number, dy: number): MapPoint | null {
  const shape = shapeIndexOf(p)
  for (const f of [1, 0.5, 0.25]) {
    const x = Math.round((p.x + dx * f) * 10) / 10
    const y = Math.round((p.y + dy * f) * 10) / 10
    if (x < 0 || y < 0 || x > FIGURE.width || y > FIGURE.height) continue
    const at = regionAt(p.view, x, y)
    if (at && at.site === p.site && at.shape === shape) return { ...p, x, y }
  }
  return null
}

/** The part of the body a point is on, in words: "the patient's right arm", "mouth", "" (the
 * trunk: its site says it all). */
export function pointPart(p: MapPoint): string {
  const s = regionOf(p.view, p.site)?.shapes[shapeIndexOf(p)]
  if (!s) return ''
  const side = shapeSide(p.view, s)
  return [side && `the patient’s ${side}`, s.name].filter(Boolean).join(' ')
}

/** The third of a shape's box a point is in, across (0: the figure's left) and down (0: the top). */
function thirds(p: MapPoint, s: Shape): { across: number; down: number } {
  const b = shapeBox(s)
  const third = (v: number, from: number, size: number) => Math.min(2, Math.max(0, Math.floor(((v - from) / size) * 3)))
  return { across: third(p.x, b.x, b.width), down: third(p.y, b.y, b.height) }
}

/** The patient's side that the figure's left (`figureLeft` true) or right is on, in `view`: on the
 * front view the figure's left is the patient's right, on the back view their left. */
export function patientSideOf(view: View, figureLeft: boolean): 'left' | 'right' {
  return figureLeft === (view === 'back') ? 'left' : 'right'
}

/** Whether a shape is wide enough for its left, centre and right thirds to be told apart in words
 * (the head and the trunk). */
const isWide = (s: Shape) => shapeBox(s).width >= 30

/** The patient's side a point is on, as its words say (see describePoint): the side of an arm,
 * leg, hand, foot or side of the trunk; on the head or trunk, the outer thirds (the patient's left
 * or right side); null on the middle line (the centre third, the neck, the mouth, the genital area). */
export function markSide(p: MapPoint): 'left' | 'right' | null {
  const s = regionOf(p.view, p.site)?.shapes[shapeIndexOf(p)]
  if (!s) return null
  const side = shapeSide(p.view, s)
  if (side || !isWide(s)) return side
  const { across } = thirds(p, s)
  return across === 1 ? null : patientSideOf(p.view, across === 0)
}

/** Where a point is, in words a screen reader can say: the view, the body site, the part (which
 * side, for arms, legs, hands, feet and the sides of the trunk) and, on a large shape, whereabouts
 * on it (upper, middle or lower part; on the head or trunk also the patient's right side, centre or
 * the patient's left side: every side is the patient's, never the drawing's).
 * Only what the drawing shows: it is a simple outline, not an anatomical position. */
export function describePoint(p: MapPoint): string {
  const s = regionOf(p.view, p.site)?.shapes[shapeIndexOf(p)]
  const head = `${p.view} view, ${SITE_LABELS[p.site] ?? p.site}`
  if (!s) return head
  const b = shapeBox(s)
  const { across, down } = thirds(p, s)
  const where: string[] = []
  if (b.height >= 20) where.push(['upper part', 'middle', 'lower part'][down])
  if (isWide(s)) where.push(across === 1 ? 'centre' : `the patient’s ${patientSideOf(p.view, across === 0)} side`)
  const part = pointPart(p)
  return `${head}${part ? `: ${part}` : ''}${where.length ? `, ${where.join(', ')}` : ''}`
}

/** How far the mark is from the middle of the part it is on, in arrow-key steps (see STEP), in
 * words: "3 steps up and 1.5 steps to the patient’s left from its middle", "at its middle". Finer than
 * describePoint's thirds, so that each arrow key press says something new. */
export function stepPosition(p: MapPoint): string {
  const s = regionOf(p.view, p.site)?.shapes[shapeIndexOf(p)]
  if (!s) return ''
  const m = shapeMiddle(s)
  // to a tenth of a step: the smallest move (a quarter step, at an edge) still changes the words
  const steps = (d: number) => Math.round((Math.abs(d) / STEP) * 10) / 10
  const count = (n: number) => `${n} step${n === 1 ? '' : 's'}`
  const parts: string[] = []
  const up = steps(p.y - m.y)
  if (up > 0) parts.push(`${count(up)} ${p.y < m.y ? 'up' : 'down'}`)
  const across = steps(p.x - m.x)
  if (across > 0) parts.push(`${count(across)} to the patient’s ${patientSideOf(p.view, p.x < m.x)}`)
  return parts.length ? `${parts.join(' and ')} from its middle` : 'at its middle'
}

/** The point moved to the mirror shape on the patient's other side (the figure is symmetric),
 * when it is on a shape of the side that is not `side`; else the point as it is. */
export function pointOnSide(p: MapPoint, side: 'left' | 'right'): MapPoint {
  const now = pointSide(p)
  if (now === null || now === side) return p
  return { ...p, x: Math.round((FIGURE.width - p.x) * 10) / 10 }
}

/** Whether a body site chosen in the list says the same as the region a point is on ("torso",
 * side not known, fits any torso region). */
export function siteFitsPoint(site: string, p: MapPoint): boolean {
  return site === p.site || (site === 'torso' && TORSO.has(p.site))
}

function slug(site: string): string {
  return site.replace(/[^a-z]+/g, '-')
}

/** Clickable front/back body outline; every region is a keyboard-focusable button. With onPoint
 * (the clinic's lesion map), Enter or Space on a region places the mark in the middle of one of
 * its shapes (see keyboardPoint: the Side's, then the next one on each press) and the arrow keys
 * move it within that shape (see movePoint); the caller says where it is (see describePoint). */
export function BodyMap({ value, onChange, pins = [], onPoint, onPinSelect, point = null, side = '', onMoveBlocked, describedBy, pointerOnly = false }: Props) {
  // the figure's drawn width (it grows with the space it has): the pins' tap areas follow it
  const boxRef = useRef<HTMLDivElement>(null)
  const [figurePx, setFigurePx] = useState(0)
  const hasPins = pins.length > 0
  useLayoutEffect(() => {
    const svg = boxRef.current?.querySelector('svg')
    if (!svg || !hasPins) return
    // the drawn figure's width: the box's, or less where its height limits the drawing's scale
    const update = () => {
      const box = svg.getBoundingClientRect()
      const byHeight = box.height > 0 ? (box.height * FIGURE.width) / FIGURE.height : box.width
      setFigurePx(Math.round(Math.min(box.width, byHeight)))
    }
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
    const pointer = pointerPoint(e)
    setChoice(null)
    if (!pointer) {
      // a key (or a synthetic click): the middle of one of the region's shapes (see keyboardPoint)
      onPoint(keyboardPoint(view, site, point, side))
      return
    }
    const at = pointer
    // a pointer's tap from a finger, beside a pin: ask
    if (onPinSelect && 'clientX' in e && fromTouch(e)) {
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
      return
    }
    // arrow keys move the new lesion's mark, on the region that holds it
    const dir = ARROWS[e.key]
    if (!dir || !onPoint || !point || point.view !== view || point.site !== site || e.altKey || e.ctrlKey || e.metaKey) return
    e.preventDefault()
    const step = e.shiftKey ? BIG_STEP : STEP
    const moved = movePoint(point, dir[0] * step, dir[1] * step)
    if (moved) onPoint(moved, 'move')
    else onMoveBlocked?.(point, dir[2])
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
        aria-describedby={pointerOnly ? undefined : describedBy}
        aria-hidden={pointerOnly ? true : undefined}
      >
        {(['front', 'back'] as View[]).map((view) => (
          <figure key={view} className="bodymap-fig">
            <svg viewBox={`0 0 ${FIGURE.width} ${FIGURE.height}`} className="bodymap-svg" aria-label={`${view === 'front' ? 'Front' : 'Back'} of the body`} role="group">
              {REGIONS[view].map((r) => {
                // with a mark placed, only the region (of its view) that holds it is the one chosen
                const selected = point && onPoint ? point.view === view && point.site === r.site : value === r.site
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
                    {r.shapes.map(drawShape)}
                  </g>
                )
              })}
              {choice && choice.point.view === view && (
                <circle cx={choice.point.x} cy={choice.point.y} r={PIN_RADIUS} className="bodymap-tap-mark" data-testid="bodymap-tap-mark" aria-hidden="true" />
              )}
              {pins
                .filter((p) => p.view === view)
                .map((p) =>
                  p.inert ? (
                    // only drawn (the new lesion's mark, said in words beside the form): no tab stop
                    <g key={p.id} role="img" aria-label={p.label} data-testid={`pin-${p.id}`} className={`bodymap-pin is-inert${p.selected ? ' is-selected' : ''}`}>
                      <circle cx={p.x} cy={p.y} r={PIN_RADIUS} />
                    </g>
                  ) : (
                    // a button that opens the lesion (no pressed state: it is not a toggle)
                    <g
                      key={p.id}
                      role="button"
                      tabIndex={0}
                      aria-label={p.label}
                      data-testid={`pin-${p.id}`}
                      className={`bodymap-pin${p.selected ? ' is-selected' : ''}${p.alert ? ' is-alert' : ''}`}
                      onClick={() => {
                        setChoice(null)
                        onPinSelect?.(p.id)
                      }}
                      onKeyDown={(e) => onPinKey(e, p.id)}
                    >
                      <title>{p.label}</title>
                      <circle cx={p.x} cy={p.y} r={PIN_RADIUS} />
                      {/* its focus ring, outside the dot: a dark halo under a thick white ring
                          (ellipses, so that the dot stays the pin's one circle) */}
                      <ellipse cx={p.x} cy={p.y} rx={PIN_RADIUS + 3.2} ry={PIN_RADIUS + 3.2} className="bodymap-pin-focus-halo" aria-hidden="true" />
                      <ellipse cx={p.x} cy={p.y} rx={PIN_RADIUS + 2} ry={PIN_RADIUS + 2} className="bodymap-pin-focus-ring" aria-hidden="true" />
                      {/* a rise: a triangle round the dot, a mark that does not rely on its colour */}
                      {p.alert && (
                        <path
                          d={alertTriangle(p.x, p.y)}
                          className="bodymap-pin-alert-mark"
                          data-testid={`pin-${p.id}-alert-mark`}
                          aria-hidden="true"
                        />
                      )}
                    </g>
                  ),
                )}
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
