import { useEffect, useId, useRef, type MouseEvent } from 'react'

/** "in about 2 minutes" / "in about 40 seconds": the time left until `deadline` (WCAG 2.2.1 asks
 * that the user be told before the time runs out). Said once, when the warning opens: a running
 * count would be read out again and again by a screen reader. */
export function timeLeftText(deadline: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((deadline - now) / 1000))
  if (s < 60) return `in about ${s} second${s === 1 ? '' : 's'}`
  const m = Math.round(s / 60)
  return `in about ${m} minute${m === 1 ? '' : 's'}`
}

/** Focus back where it was before the warning took it (`previous`: the field being typed in, a
 * button), when that is still in the page; else on `fallback` (the page's <main>). */
export function focusBack(previous: Element | null, fallback: HTMLElement | null): void {
  const el = previous as HTMLElement | null
  if (el && el.isConnected && typeof el.focus === 'function' && el !== document.body) el.focus({ preventScroll: true })
  else fallback?.focus({ preventScroll: true })
}

/** Whether focus is nowhere the user can use it: on <body>, nowhere, or on an element gone. */
function focusGone(): boolean {
  const active = document.activeElement
  return !active || active === document.body || !active.isConnected
}

/** What the warning does with a key pressed anywhere in the page while it is open (`dialog`: its
 * element; `first`, `last`: its buttons): Escape is "Stay signed in" (`stay`); Tab and Shift+Tab
 * go round its buttons, and from outside it (focus left on <body> by a click beside it) into it.
 * Returns whether the key was handled (its default then prevented). */
export function warningKey(
  e: { key: string; shiftKey: boolean; preventDefault: () => void },
  dialog: Pick<HTMLElement, 'contains'> | null,
  first: HTMLElement | null,
  last: HTMLElement | null,
  stay: () => void,
): boolean {
  if (e.key === 'Escape') {
    e.preventDefault()
    stay()
    return true
  }
  if (e.key !== 'Tab') return false
  // the page behind is not reachable while the dialog is open (aria-modal; the page is inert)
  const active = document.activeElement
  const inDialog = active !== null && dialog?.contains(active) === true
  let to: HTMLElement | null = null
  // from outside the dialog, or from the dialog itself (a click on its text): into its buttons
  if (!inDialog || active === dialog) to = e.shiftKey ? last : first
  else if (e.shiftKey && active === first) to = last
  else if (!e.shiftKey && active === last) to = first
  if (!to) return false
  e.preventDefault()
  to.focus()
  return true
}

/** The warning before the clinic page is hidden for inactivity (WCAG 2.2.1 Timing Adjustable): a
 * modal alert dialog that takes focus (on "Stay signed in") so that screen readers read it at
 * once, keeps Tab inside it (also after a click on its text or beside it: the keys are heard by
 * the whole document while it is open, and the page behind is inert: see App), and answers Escape
 * as "Stay signed in". When it goes, focus goes back where it was after "Stay signed in"; else
 * (signed out, or the page hidden after the timeout) to `fallbackFocus` when it would be left
 * on <body>. */
export function SessionTimeoutWarning({
  deadline,
  onStay,
  onSignOut,
  fallbackFocus,
}: {
  /** when the page will be hidden (a `Date.now()` time) */
  deadline: number
  onStay: () => void
  onSignOut: () => void
  /** where focus goes when the warning goes and the element that had focus before it is gone
   * (after "Stay signed in"), or when focus would be left on <body> (the page's heading or <main>) */
  fallbackFocus: () => HTMLElement | null
}) {
  const ids = useId()
  const stayRef = useRef<HTMLButtonElement | null>(null)
  const signOutRef = useRef<HTMLButtonElement | null>(null)
  const dialogRef = useRef<HTMLDivElement | null>(null)
  const previous = useRef<Element | null>(null)
  const stayed = useRef(false)
  const handlers = useRef({ onStay, fallbackFocus })
  useEffect(() => {
    handlers.current = { onStay, fallbackFocus }
  })

  useEffect(() => {
    previous.current = document.activeElement
    stayRef.current?.focus()
    const onKey = (e: globalThis.KeyboardEvent) => {
      warningKey(e, dialogRef.current, stayRef.current, signOutRef.current, () => {
        stayed.current = true
        handlers.current.onStay()
      })
    }
    document.addEventListener('keydown', onKey)
    return () => {
      document.removeEventListener('keydown', onKey)
      // After the page behind is no longer inert (the warning is gone with the same render):
      // focus back where it was after "Stay signed in"; else not left on <body> (the page hidden
      // after the timeout, on a page without a sign-in form: Assess, Learn, Model).
      if (stayed.current) focusBack(previous.current, handlers.current.fallbackFocus())
      else if (focusGone()) handlers.current.fallbackFocus()?.focus({ preventScroll: true })
    }
  }, [])

  const stay = () => {
    stayed.current = true
    onStay()
  }
  // a press beside the dialog (its backdrop) leaves focus where it is, in the dialog
  const onBackdropDown = (e: MouseEvent) => {
    if (!dialogRef.current?.contains(e.target as Node)) e.preventDefault()
  }
  const at = new Date(deadline).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  return (
    <div className="session-warning-backdrop no-print" onMouseDown={onBackdropDown} data-testid="session-warning-backdrop">
      <div
        className="session-warning"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby={`${ids}-title`}
        aria-describedby={`${ids}-text`}
        tabIndex={-1}
        ref={dialogRef}
        data-testid="session-warning"
      >
        <h2 id={`${ids}-title`} className="session-warning-title">
          You will be signed out soon
        </h2>
        <div id={`${ids}-text`}>
          <p data-testid="session-warning-time">
            This page has not been used for a while. So that nobody else sees patient data on an unattended screen, it
            will be hidden and you will need to sign in again {timeLeftText(deadline)} (at {at}).
          </p>
          <p>
            What you typed in a clinic form and did not save is kept, hidden, until you sign in again; a case on the
            Assess page is cleared.
          </p>
        </div>
        <div className="result-actions">
          <button type="button" className="btn btn-primary" ref={stayRef} onClick={stay} data-testid="session-warning-stay">
            Stay signed in
          </button>
          <button type="button" className="btn btn-secondary" ref={signOutRef} onClick={onSignOut} data-testid="session-warning-sign-out">
            Sign out
          </button>
        </div>
      </div>
    </div>
  )
}
