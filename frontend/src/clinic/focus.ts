// Where keyboard focus goes after a save that re-renders the page. Saving a visit or a diagnosis
// reloads the lesion and remounts the form, so the button that had focus is gone and focus would
// fall back to <body> (a screen reader hears nothing, a keyboard user starts again at the top).
// The saving form asks for focus on what it saved; the view that shows it takes it once shown.

const pending = new Map<string, string>()

/** Ask that the element shown for `kind` / `key` (e.g. 'visit' / '12') takes focus once rendered. */
export function requestFocus(kind: string, key: string): void {
  pending.set(kind, key)
}

/** Whether focus was asked for `kind` / `key`; the request is consumed when `take` is true. */
export function focusRequested(kind: string, key: string, take = true): boolean {
  if (pending.get(kind) !== key) return false
  if (take) pending.delete(kind)
  return true
}

/** Whether keyboard focus is nowhere useful: on <body>, or on an element no longer in the page
 * (the button that was pressed went away with the form it was in). */
export function focusLost(): boolean {
  const active = document.activeElement
  return !active || active === document.body || !active.isConnected
}

/** Run `tryOnce` now and, until it returns true (it found what it waits for), again on each change
 * under `root` (`observe`: which changes a MutationObserver reports); give up after `timeoutMs`.
 * Returns a cleanup that stops waiting (nothing to stop when the first try found it). */
export function whenFound(
  root: Node,
  tryOnce: () => boolean,
  timeoutMs: number,
  observe: MutationObserverInit = { childList: true, subtree: true },
): () => void {
  if (tryOnce()) return () => {}
  const observer = new MutationObserver(() => {
    if (tryOnce()) done()
  })
  const timer = window.setTimeout(() => done(), timeoutMs)
  const done = () => {
    observer.disconnect()
    window.clearTimeout(timer)
  }
  observer.observe(root, observe)
  return done
}

/** Focus the page's main heading (the first <h1> inside `root`) once it is rendered, e.g. after
 * signing in, when the sign-in form that had focus is gone; a page still loading shows it a moment
 * later. Nothing is moved when the user has put focus somewhere meanwhile. Returns a cleanup. */
export function focusHeadingWhenShown(root: HTMLElement, timeoutMs = 10_000): () => void {
  const tryFocus = (): boolean => {
    const h = root.querySelector('h1')
    if (!h) return false
    if (focusLost()) {
      if (!h.hasAttribute('tabindex')) h.setAttribute('tabindex', '-1')
      h.focus({ preventScroll: false })
    }
    return true
  }
  return whenFound(root, tryFocus, timeoutMs, { childList: true, subtree: true })
}

// --- announcements: a polite status line that outlives the page that asked for it -------------
// Deleting a patient leaves its page for the patient list; the deleted patient's page (and any
// status line on it) is gone, so the clinic's frame (ClinicMain) keeps one live region and shows
// the message on the page it was meant for.

export interface Announcement {
  text: string
  /** the location hash of the page the message is shown on */
  hash: string
}

const announceListeners = new Set<(a: Announcement) => void>()

/** Say `text` (politely, to screen readers too) on the page at `hash`. */
export function announce(text: string, hash: string): void {
  announceListeners.forEach((fn) => fn({ text, hash }))
}

/** Subscribe to announcements; returns an unsubscribe function. */
export function onAnnounce(fn: (a: Announcement) => void): () => void {
  announceListeners.add(fn)
  return () => announceListeners.delete(fn)
}

// --- scrolling a sideways list so that one of its items is in view ------------------------------
// The lesion's timeline scrolls sideways; on a phone it shows one visit card at a time. Focusing
// an item lets the browser scroll it in "somehow" (its start in view, its end possibly clipped),
// so the timeline works out where to scroll itself.

/** Where a box is, across (e.g. from `getBoundingClientRect`: left and width). */
export interface Span {
  left: number
  width: number
}

/** The `scrollLeft` a sideways scrolling box (`view`: its visible part, `scrollLeft` now) needs so
 * that `item` is wholly in view: unchanged when it already is; else scrolled just far enough to
 * show its right edge, or its left edge; an item wider than the view shows its start. */
export function scrollLeftToShow(view: Span, scrollLeft: number, item: Span): number {
  const offset = item.left - view.left // the item's left edge from the view's left edge
  const overRight = offset + item.width - view.width
  if (offset >= 0 && overRight <= 0) return scrollLeft // wholly in view
  // too far right: scroll on until its right edge shows, but never past its left edge
  if (offset > 0) return scrollLeft + Math.min(overRight, offset)
  return Math.max(0, scrollLeft + offset) // too far left, or wider than the view
}
