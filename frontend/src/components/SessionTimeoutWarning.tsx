import { useEffect, useId, useRef, type KeyboardEvent } from 'react'

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

/** The warning before the clinic page is hidden for inactivity (WCAG 2.2.1 Timing Adjustable): a
 * modal alert dialog that takes focus (on "Stay signed in") so that screen readers read it at
 * once, keeps Tab inside it, and answers Escape as "Stay signed in". After "Stay signed in" focus
 * goes back where it was. */
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
  /** where focus goes after "Stay signed in" when the element that had it is gone */
  fallbackFocus: () => HTMLElement | null
}) {
  const ids = useId()
  const stayRef = useRef<HTMLButtonElement | null>(null)
  const signOutRef = useRef<HTMLButtonElement | null>(null)
  const previous = useRef<Element | null>(null)

  useEffect(() => {
    previous.current = document.activeElement
    stayRef.current?.focus()
  }, [])

  const stay = () => {
    onStay()
    focusBack(previous.current, fallbackFocus())
  }
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      stay()
    } else if (e.key === 'Tab') {
      // the page behind is not reachable while the dialog is open (aria-modal)
      const first = stayRef.current
      const last = signOutRef.current
      if (e.shiftKey && document.activeElement === first) {
        e.preventDefault()
        last?.focus()
      } else if (!e.shiftKey && document.activeElement === last) {
        e.preventDefault()
        first?.focus()
      }
    }
  }
  const at = new Date(deadline).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  return (
    <div className="session-warning-backdrop no-print" data-testid="session-warning-backdrop">
      <div
        className="session-warning"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby={`${ids}-title`}
        aria-describedby={`${ids}-text`}
        onKeyDown={onKeyDown}
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
