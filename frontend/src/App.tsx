import { useEffect, useRef, useState } from 'react'
import { clearCache, onAuthRequired } from './api.ts'
import { logout, onSessionExpired, sameSession, sessionNow, setCsrfToken } from './clinic/api.ts'
import { clinicHref } from './clinic/format.ts'
import { asSentence } from './format.ts'
import { focusLost, whenFound } from './clinic/focus.ts'
import { ClinicContext, idleReason, useClinicRoute, useIdleTimeout } from './clinic/session.ts'
import type { Session } from './clinic/types.ts'
import { AudienceSwitch, ClinicNavLinks, ClinicUser } from './components/ClinicNav.tsx'
import { Logo } from './components/Icons.tsx'
import { confirmDiscardUnsaved, setAppHash } from './components/NewVisitForm.tsx'
import { SessionTimeoutWarning } from './components/SessionTimeoutWarning.tsx'
import { TokenPrompt } from './components/TokenPrompt.tsx'
import { HealthContext, healthStatusText, useHealth, useHealthPoll } from './health.ts'
import {
  AudienceChoiceContext,
  AudienceContext,
  AuthVersionContext,
  loadAudience,
  saveAudience,
  storedAudience,
  useHashRoute,
  type Audience,
  type Route,
} from './hooks.ts'
import { AssessPage, forgetAssessCase } from './pages/AssessPage.tsx'
import { ClinicMain, clinicPageTitle } from './pages/ClinicMain.tsx'
import { PageTitleContext } from './pages/ClinicPatientPage.tsx'
import { LearnPage } from './pages/LearnPage.tsx'
import { ModelPage } from './pages/ModelPage.tsx'
import { NotFoundPage } from './pages/NotFoundPage.tsx'

const NAV: { route: Route; href: string; label: string }[] = [
  { route: 'assess', href: '#/', label: 'Assess' },
  { route: 'learn', href: '#/learn', label: 'Learn' },
  { route: 'model', href: '#/model', label: 'Model' },
]

const TITLES: Record<Route, string> = {
  assess: 'Assess a lesion',
  learn: 'Learn',
  model: 'Model card',
  notfound: 'Page not found',
}

/** The idle time (`minutes`) passed without activity: the clinic page is hidden under a sign-in
 * form for `user`, saying why, and the Assess page's case (photo, result, age) is forgotten and
 * the page, if shown, starts empty (`clearAssess`), as at sign-out, so that nobody else finds it. */
export function hideAfterIdle(
  minutes: number,
  user: string | null,
  set: {
    clearAssess: () => void
    setResumeAs: (u: string | null) => void
    setHiddenWhy: (why: string | null) => void
    setSession: (s: Session | null) => void
  },
): void {
  forgetAssessCase()
  set.clearAssess()
  set.setResumeAs(user)
  set.setHiddenWhy(idleReason(minutes))
  set.setSession(null)
}

/** "Sign in as someone else" on the sign-in form over a page hidden after the session ended: the
 * hidden page (and the Assess page's case) is discarded for the plain sign-in form, after the
 * same question as signing out when a form on it has unsaved work (`ask`, e.g. `window.confirm`;
 * Cancel keeps the page, hidden, for its user). Returns whether it was discarded. */
export function switchUser(
  ask: (message: string) => boolean,
  set: {
    setResumeAs: (u: string | null) => void
    setHiddenWhy: (why: string | null) => void
  },
): boolean {
  if (!confirmDiscardUnsaved(ask)) return false
  forgetAssessCase()
  set.setResumeAs(null)
  set.setHiddenWhy(null)
  return true
}

/** The page's main heading: the first <h1> in `root` that is not inside a hidden part (the clinic
 * page kept, hidden, under the sign-in form). */
export function visibleHeading(root: HTMLElement): HTMLElement | null {
  for (const h of Array.from(root.querySelectorAll('h1'))) if (!h.closest('[hidden]')) return h
  return null
}

/** Whether a modal part of the page holds focus (the session warning, the API token prompt): a
 * route change (Back, Forward) then leaves focus there, rather than moving it behind the modal. */
export function modalHoldsFocus(): boolean {
  const active = document.activeElement as (Element & { closest?: Element['closest'] }) | null
  return Boolean(active?.closest?.('[aria-modal="true"], .token-prompt'))
}

/** The page's main heading (`visibleHeading`), made focusable (tabindex -1) to be given focus. */
export function pageHeadingToFocus(main: HTMLElement): HTMLElement | null {
  const h = visibleHeading(main)
  if (h && !h.hasAttribute('tabindex')) h.setAttribute('tabindex', '-1')
  return h
}

/** A new page (route change): focus its main heading, so that a screen reader reads where the
 * user is (the page's name) rather than the whole of <main>. Until the heading is shown (a page
 * still loading) <main> holds focus; it is moved then, unless the user has put focus elsewhere
 * meanwhile. Returns a cleanup (a newer page, unmount). */
export function focusNewPage(
  main: HTMLElement,
  timeoutMs = 10_000,
  onFocused: (heading: HTMLElement) => void = () => {},
): () => void {
  main.focus({ preventScroll: true })
  const tryFocus = (): boolean => {
    const h = visibleHeading(main)
    if (!h) return false
    if (document.activeElement === main || focusLost()) {
      if (!h.hasAttribute('tabindex')) h.setAttribute('tabindex', '-1')
      h.focus({ preventScroll: true })
      onFocused(h)
    }
    return true
  }
  // a heading shown by taking `hidden` off counts too
  return whenFound(main, tryFocus, timeoutMs, { childList: true, subtree: true, attributes: true, attributeFilter: ['hidden'] })
}

/** What the page says when "Sign out" did not end the session on the server. */
export function signOutFailedText(err: unknown): string {
  const why = asSentence(err instanceof Error ? err.message : '') || 'The server did not answer.'
  return `Could not sign out: ${why} You are still signed in.`
}

/** "Sign out": `signedOut()` once the server ended the session (`logout` resolved); when it did
 * not (`logout` rejected: the session is still open), `failed` with what the page says instead,
 * the page left as it is: it does not pretend to be signed out. */
export function signOutThen(logout: () => Promise<void>, signedOut: () => void, failed: (text: string) => void): Promise<void> {
  return logout().then(signedOut, (err: unknown) => failed(signOutFailedText(err)))
}

/** The title of a clinic page: the one it gives itself (`own`, e.g. "Patient not found") while it
 * is shown (someone `signedIn`), else the route's (`routeTitle`: the sign-in page's too). */
export function pageTitleWith(routeTitle: string, signedIn: boolean, own: string | null): string {
  return signedIn && own ? own : routeTitle
}

export default function App() {
  const route = useHashRoute()
  const [audience, setAudience] = useState<Audience>(loadAudience)
  // whether the view was chosen in this browser: until then the Assess page asks (AudiencePrompt)
  const [audienceChosen, setAudienceChosen] = useState(() => storedAudience() !== null)
  const [authVersion, setAuthVersion] = useState(0)
  const [needToken, setNeedToken] = useState(false)
  const mainRef = useRef<HTMLElement>(null)
  const firstRender = useRef(true)
  // the heading focused at the last route change (focusNewPage)
  const routeFocus = useRef<HTMLElement | null>(null)
  // The clinic (patients, visits, dashboard) exists only when the server stores cases; the
  // server's health is re-checked while the page is open (the footer, the upload limit).
  const health = useHealthPoll(authVersion)
  const clinicOn = health.data?.clinic === true
  const clinicRoute = useClinicRoute()
  const clinicPage = clinicOn ? clinicRoute : null
  const [session, setSession] = useState<Session | null>(null)
  // who was signed in when the server ended the session (idle timeout): the page stays mounted,
  // hidden, under a sign-in form for that user, so nothing typed on it is lost
  const [resumeAs, setResumeAs] = useState<string | null>(null)
  // why the page was hidden, when the page itself saw the idle time pass (one line on the form)
  const [hiddenWhy, setHiddenWhy] = useState<string | null>(null)
  const sessionRef = useRef<Session | null>(null)
  useEffect(() => {
    sessionRef.current = session
  }, [session])
  const [sessionChecked, setSessionChecked] = useState(false)
  // a new key mounts the Assess page afresh (its case forgotten: idle timeout, sign-out)
  const [assessKey, setAssessKey] = useState(0)
  const clearAssess = () => setAssessKey((k) => k + 1)
  const pageKey = clinicPage ? `clinic:${window.location.hash}` : route

  useEffect(() => onAuthRequired(() => setNeedToken(true)), [])
  // Nobody used the page for the server's idle timeout: the server has ended the session (or
  // will at the next request), so the patient's data goes off the screen now, as after a 401.
  // A warning comes first (WCAG 2.2.1): "Stay signed in" tells the server (GET /auth/me, which it
  // counts as activity); typing on the page is passed on to the server too, at most every few
  // minutes, so that the server's session does not end while the page is in use.
  const sessionEnded = () => {
    const was = sessionRef.current?.user.username ?? null
    setResumeAs((prev) => was ?? prev)
    setSession(null)
  }
  useEffect(() => onSessionExpired(sessionEnded), [])
  const idleWarning = useIdleTimeout(
    session,
    (minutes) =>
      hideAfterIdle(minutes, session?.user.username ?? null, { clearAssess, setResumeAs, setHiddenWhy, setSession }),
    // the keep-alive checks the page's session without taking on another one (sessionNow): a
    // session another tab opened (another user) ends the page's (sessionEnded)
    sessionNow,
    sessionEnded,
  )
  const warningDeadline = idleWarning.deadline
  const warningOpen = session !== null && warningDeadline !== null
  useEffect(() => {
    if (session) setHiddenWhy(null)
  }, [session])
  useEffect(() => {
    if (!clinicOn) return
    sessionNow().then(
      (s) => {
        const shown = sessionRef.current
        if (shown && !sameSession(shown, s)) {
          // the clinic came back (the server's health) while a session was shown: one found now
          // that is another (another tab signed in as someone else) is not taken on
          sessionEnded()
        } else {
          if (s) setCsrfToken(s.csrf_token, s.user.id)
          setSession(s)
        }
        setSessionChecked(true)
      },
      () => setSessionChecked(true),
    )
  }, [clinicOn])

  // the title a clinic page gives itself while shown ("Patient not found"; RecordNotFound)
  const [recordTitle, setRecordTitle] = useState<string | null>(null)
  // the title says the page on screen: the sign-in page's until someone is signed in
  const pageTitle = clinicPage
    ? pageTitleWith(clinicPageTitle(clinicPage.page, session, resumeAs, sessionChecked), session !== null, recordTitle)
    : TITLES[route]
  useEffect(() => {
    document.title = `${pageTitle} · dermsight`
  }, [pageTitle])

  useEffect(() => {
    if (firstRender.current) {
      firstRender.current = false
      return
    }
    // Move focus to the new page's heading for keyboard and screen-reader users; not from a modal
    // (Back while the session warning is open: the page behind it is inert; the token prompt).
    window.scrollTo(0, 0)
    if (warningOpen || modalHoldsFocus()) return
    if (mainRef.current) return focusNewPage(mainRef.current, undefined, (h) => (routeFocus.current = h))
  }, [pageKey])
  // The API token prompt takes focus when it is nowhere the user put it (TokenPrompt): also from
  // the heading a new page was given focus on (the page's first request asked for the token).
  useEffect(() => {
    if (needToken && routeFocus.current && document.activeElement === routeFocus.current) {
      document.querySelector<HTMLInputElement>('.token-prompt input')?.focus()
    }
  }, [needToken])

  // why the last "Sign out" failed (the session is still open on the server), until the next try
  const [signOutError, setSignOutError] = useState<string | null>(null)
  const signOut = () => {
    // unsaved work (a new visit) is asked about while the session still exists: Cancel keeps it
    if (!confirmDiscardUnsaved((m) => window.confirm(m))) return
    forgetAssessCase() // an image and result from the Assess page are not left for the next user
    clearAssess() // nor on the screen, where the Assess page is shown
    setSignOutError(null)
    void signOutThen(
      logout,
      () => {
        setSession(null)
        setResumeAs(null) // signing out discards the page, unlike a session that timed out
        setHiddenWhy(null)
        setAppHash(window, clinicHref.patients) // already agreed to: the page's guard does not ask again
      },
      setSignOutError,
    )
  }
  useEffect(() => {
    if (!session) setSignOutError(null)
  }, [session])

  const chooseAudience = (a: Audience) => {
    setAudience(a)
    saveAudience(a)
    setAudienceChosen(true)
  }
  // someone signed in to the clinic is a clinician: the Clinician view, unless a view was chosen
  useEffect(() => {
    if (session && !audienceChosen) chooseAudience('clinician')
  }, [session, audienceChosen])

  return (
    <AudienceContext.Provider value={audience}>
      <AuthVersionContext.Provider value={authVersion}>
        <HealthContext.Provider value={health}>
          {/* while the session warning is open, the page behind it can be neither reached nor
              used (inert): the warning is modal */}
          <button type="button" className="skip-link" inert={warningOpen} onClick={() => mainRef.current?.focus()}>
            Skip to content
          </button>
          <header className="site-header no-print" inert={warningOpen}>
            <div className="container header-inner">
              <a className="brand" href="#/" aria-label="dermsight home">
                <Logo />
                <span>dermsight</span>
              </a>
              <nav aria-label="Main" className="main-nav">
                {NAV.map((n) => (
                  <a
                    key={n.route}
                    href={n.href}
                    className="nav-link"
                    aria-current={route === n.route && !clinicPage ? 'page' : undefined}
                    data-testid={`nav-${n.route}`}
                  >
                    {n.label}
                  </a>
                ))}
                {clinicOn && <ClinicNavLinks route={clinicPage} session={session} />}
              </nav>
              {clinicOn && <ClinicUser session={session} onLogout={signOut} />}
              <AudienceSwitch audience={audience} onChoose={chooseAudience} clinic={clinicPage !== null} />
            </div>
          </header>
          {needToken && (
            <TokenPrompt
              onSaved={() => {
                clearCache()
                // the prompt goes: focus the page (the prompt takes it back if the token is refused)
                mainRef.current?.focus({ preventScroll: true })
                setNeedToken(false)
                setAuthVersion((v) => v + 1)
              }}
              onDismiss={() => {
                mainRef.current?.focus({ preventScroll: true })
                setNeedToken(false)
              }}
            />
          )}
          {warningOpen && (
            <SessionTimeoutWarning
              deadline={warningDeadline}
              onStay={idleWarning.stay}
              onSignOut={signOut}
              fallbackFocus={() => (mainRef.current && pageHeadingToFocus(mainRef.current)) ?? mainRef.current}
            />
          )}
          {signOutError && (
            <div className="container no-print">
              <p className="error-message" role="alert" data-testid="logout-error">
                {signOutError}
              </p>
            </div>
          )}
          <main id="main" ref={mainRef} tabIndex={-1} className="container main" inert={warningOpen}>
            {clinicPage ? (
              <ClinicContext.Provider value={{ session, setSession }}>
                <PageTitleContext.Provider value={setRecordTitle}>
                <ClinicMain
                  route={clinicPage}
                  checked={sessionChecked}
                  resumeAs={resumeAs}
                  hiddenWhy={hiddenWhy}
                  onSwitchUser={() => switchUser((m) => window.confirm(m), { setResumeAs, setHiddenWhy })}
                />
                </PageTitleContext.Provider>
              </ClinicContext.Provider>
            ) : (
              <>
                {route === 'assess' && (
                  <AudienceChoiceContext.Provider value={{ chosen: audienceChosen, choose: chooseAudience }}>
                    <AssessPage key={assessKey} />
                  </AudienceChoiceContext.Provider>
                )}
                {route === 'learn' && <LearnPage />}
                {route === 'model' && <ModelPage />}
                {route === 'notfound' && <NotFoundPage hash={window.location.hash} />}
              </>
            )}
          </main>
          <Footer inert={warningOpen} />
        </HealthContext.Provider>
      </AuthVersionContext.Provider>
    </AudienceContext.Provider>
  )
}

function Footer({ inert }: { inert: boolean }) {
  const health = useHealth()
  return (
    <footer className="site-footer no-print" inert={inert}>
      <div className="container">
        <p>
          <strong>dermsight</strong> is decision support for clinicians and informed patients, not a diagnosis, and no
          replacement for examination by a dermatologist. Open source, Apache-2.0.
        </p>
        <p className="muted" data-testid="health" data-state={health.error ? 'down' : health.loading ? 'checking' : 'up'}>
          Server: {healthStatusText(health)}
        </p>
      </div>
    </footer>
  )
}
