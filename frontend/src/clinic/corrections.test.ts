// Correcting what was filed wrongly on the lesion page (deleting a visit, changing its date,
// removing or replacing a diagnosis without overwriting a change made meanwhile), the new-visit
// form's starting values (no age from an earlier visit; a carried-over sex says so; the site left
// to the lesion), its note limit (the server's), and the warning before unsaved work is lost.

import { makeVisit } from './testVisits.ts'
import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { DiagnosisForm, downgradesHistology, removeShownDiagnosis, replacesHint, saveDiagnosis } from '../components/DiagnosisForm.tsx'
import {
  carriedSexNote,
  confirmDiscardUnsaved,
  hasUnsavedWork,
  inAppLinkTarget,
  installLeaveGuard,
  LEAVE_MESSAGE,
  registerUnsaved,
  setAppHash,
  sexField,
  visitDefaults,
  type ClickLike,
  type GuardWindow,
} from '../components/NewVisitForm.tsx'
import { focusAfterDelete, latestVisitDate, MALIGNANT_SHARE_DEFINITION, visitName, visitToShow } from '../components/VisitTimeline.tsx'
import { ClinicLesionPage } from '../pages/ClinicLesionPage.tsx'
import { NOTE_MAX } from './api.ts'
import { scrollLeftToShow } from './focus.ts'
import type { Diagnosis, Lesion, LesionDetail, Visit } from './types.ts'

const loaded = vi.hoisted(() => new Map<string, unknown>())

vi.mock('./session.ts', async (original) => ({
  ...(await original<typeof import('./session.ts')>()),
  useLoad: (_load: unknown, key: string) =>
    loaded.has(key)
      ? { data: loaded.get(key), error: null, loading: false, reload: () => undefined }
      : { data: null, error: null, loading: true, reload: () => undefined },
}))

afterEach(() => {
  vi.unstubAllGlobals()
})

const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/<!-- -->/g, '').replace(/\s+/g, ' ')

const visit = (id: number, taken_at: string, over: Partial<Visit> = {}): Visit =>
  makeVisit(id, taken_at, { heatmap_url: null, ...over })

const LESION: Lesion = {
  id: 70,
  patient_id: 5,
  body_site: 'posterior torso',
  side: null,
  location: null,
  map: null,
  created_at: '2020-01-01T00:00:00Z',
  n_visits: 2,
  latest_risk: 'low',
  latest_malignant_probability: 0.1,
  latest_risk_taken_at: '2025-05-20',
  latest_visit_risk: 'low',
  risk_rose: false,
  diagnosis: null,
} as unknown as Lesion

const HISTO: Diagnosis = { code: 'MEL', method: 'histopathology', note: null, recorded_by: 'ana', recorded_at: '2026-01-02T10:00:00Z' }

function lesionPageHtml(visits: Visit[], diagnosis: Diagnosis | null = null): string {
  loaded.clear()
  const detail: LesionDetail = { lesion: LESION, patient: { id: 5, ref: 'P-5' }, visits, changes: [], diagnosis } as unknown as LesionDetail
  loaded.set('70', detail)
  return renderToStaticMarkup(createElement(ClinicLesionPage, { id: 70 }))
}

/** The new-visit form's part of the lesion page. */
const newVisitForm = (html: string) => /<form class="new-visit"[\s\S]*?<\/form>/.exec(html)?.[0] ?? ''

function reply(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

describe('the new visit form starts from what is known today', () => {
  // the visit of 2020 said 41 years, female, posterior torso; the new one is five years later
  const visits = [visit(1, '2020-03-04', { sex: 'female' }), visit(2, '2020-06-01', { sex: null, age: 41 })]

  it('never re-uses an earlier visit’s age', () => {
    const form = newVisitForm(lesionPageHtml(visits))
    const age = /<input[^>]*data-testid="age-input"[^>]*>/.exec(form)?.[0] ?? ''
    expect(age).toContain('value=""')
    expect(age).not.toContain('41')
    expect(visitDefaults(visits).age).toBe('')
  })

  it('carries the sex over, saying from which visit; leaves the site to the lesion and says so', () => {
    const html = newVisitForm(lesionPageHtml(visits))
    // the latest visit with a sex (the one of 2020-03-04: the later one has none)
    expect(/<option value="female" selected="">/.test(html)).toBe(true)
    const t = text(html)
    expect(t).toContain('Sex (female) is taken from the visit of 2020-03-04: check it.')
    // the site list stays at "Not stated": the server gives the visit the lesion's site
    expect(/<option value="posterior torso" selected="">/.test(html)).toBe(false)
    expect(visitDefaults(visits).site).toBe('')
    expect(t).toContain('leave it at “Not stated” to use the lesion’s site (')
    expect(t).toContain('it is not taken from earlier visits')
  })

  it('says nothing is carried over once the user changes the sex, or when no visit had one', () => {
    const d = visitDefaults(visits)
    expect(d).toEqual({ age: '', sex: 'female', sexFrom: '2020-03-04', site: '' })
    expect(carriedSexNote(d, 'female')).toMatch(/from the visit of 2020-03-04/)
    expect(carriedSexNote(d, 'male')).toBeNull()
    expect(visitDefaults([visit(3, '2021-01-01', { sex: null })])).toEqual({ age: '', sex: '', sexFrom: null, site: '' })
    expect(visitDefaults([])).toEqual({ age: '', sex: '', sexFrom: null, site: '' })
  })

  it('follows the current visits while the user has not touched the sex; a choice of theirs stays, without the note', () => {
    // the visit the sex came from is deleted (or re-dated): the form no longer names it
    const before = visitDefaults(visits)
    expect(sexField(before, null)).toEqual({ sex: 'female', note: 'Sex (female) is taken from the visit of 2020-03-04: check it.' })
    const after = visitDefaults([visit(2, '2020-06-01', { sex: null })])
    expect(sexField(after, null)).toEqual({ sex: '', note: null })
    const redated = visitDefaults([visit(1, '2019-12-31', { sex: 'male' })])
    expect(sexField(redated, null).note).toMatch(/\(male\) is taken from the visit of 2019-12-31/)
    // chosen by the user: kept whatever the visits say, and no "taken from" note
    expect(sexField(after, 'female')).toEqual({ sex: 'female', note: null })
    expect(sexField(before, 'female')).toEqual({ sex: 'female', note: null })
  })

  it('limits the note to the server’s NOTE_MAX (src/dermsight/clinic/visits.py), on the form and in the timeline', async () => {
    const py = ((await import(/* @vite-ignore */ `${new URL('../../../src/dermsight/clinic/visits.py', import.meta.url).pathname}?raw`)) as { default: string }).default
    const server = Number(/^NOTE_MAX = (\d+)$/m.exec(py)?.[1])
    expect(server).toBe(2000)
    expect(NOTE_MAX).toBe(server)
    const html = lesionPageHtml(visits)
    const note = /<textarea[^>]*data-testid="visit-note-input"[^>]*>/.exec(html)?.[0] ?? ''
    expect(note).toContain(`maxLength="${server}"`)
    expect(html).not.toContain('maxLength="4000"')
  })
})

describe('unsaved work in the new visit form', () => {
  const none = { file: null, note: '', age: '', takenAt: '', sex: 'female', site: '' }
  const d = { age: '', sex: 'female', sexFrom: '2020-03-04', site: '' }

  it('is an image chosen, or anything typed or changed', () => {
    expect(hasUnsavedWork(none, d)).toBe(false)
    expect(hasUnsavedWork({ ...none, file: new File(['x'], 'a.jpg') }, d)).toBe(true)
    expect(hasUnsavedWork({ ...none, note: 'grew 2 mm' }, d)).toBe(true)
    expect(hasUnsavedWork({ ...none, note: '   ' }, d)).toBe(false)
    expect(hasUnsavedWork({ ...none, age: '46' }, d)).toBe(true)
    expect(hasUnsavedWork({ ...none, sex: 'male' }, d)).toBe(true)
  })

  function fakeWindow(href: string) {
    const target = new EventTarget()
    const pushed: string[] = []
    const win: GuardWindow = {
      addEventListener: target.addEventListener.bind(target),
      removeEventListener: target.removeEventListener.bind(target),
      location: { href },
      history: { pushState: (_d, _u, url) => pushed.push(url) },
    }
    return { target, win, pushed }
  }
    const here = 'http://127.0.0.1:8000/#/clinic/lesions/70'
  const there = 'http://127.0.0.1:8000/#/clinic/patients/5'

  it('asks before a reload or closing the tab (beforeunload), only while there is work', () => {
    let dirty = true
    const { target, win } = fakeWindow(here)
    const stop = installLeaveGuard(win, new EventTarget(), () => dirty, () => true)
    // a browser's BeforeUnloadEvent: its returnValue is writable (Node's Event has a getter only)
    const unload = () => {
      const e = new Event('beforeunload', { cancelable: true })
      Object.defineProperty(e, 'returnValue', { value: true, writable: true })
      target.dispatchEvent(e)
      return e.defaultPrevented && (e as unknown as { returnValue: unknown }).returnValue === ''
    }
    expect(unload()).toBe(true)
    dirty = false
    expect(unload()).toBe(false)
    dirty = true
    stop()
    expect(unload()).toBe(false) // the form is gone
  })

  it('Back while there is work: asks; staying puts the page’s address back before the app routes', () => {
    const { target, win, pushed } = fakeWindow(here)
    const asked: string[] = []
    let answer = false
    installLeaveGuard(win, new EventTarget(), () => true, (m) => {
      asked.push(m)
      return answer
    })
    // the app's router reads the address at hashchange, which comes after popstate
    const appSaw: string[] = []
    target.addEventListener('hashchange', () => appSaw.push(win.location.href))
    const back = (to: string) => {
      win.location.href = to
      target.dispatchEvent(new Event('popstate'))
      target.dispatchEvent(new Event('hashchange'))
    }
    win.history.pushState = (_d, _u, url) => {
      pushed.push(url)
      win.location.href = url
    }
    back(there)
    expect(asked).toEqual([LEAVE_MESSAGE])
    expect(pushed).toEqual([here])
    expect(appSaw).toEqual([here]) // the app stays on the lesion
    answer = true
    back(there)
    expect(asked).toHaveLength(2)
    expect(appSaw).toEqual([here, there])
  })

  it('signing out asks once, before the session ends, only while a form has unsaved work', () => {
    let dirty = false
    const unregister = registerUnsaved(() => dirty)
    const asked: string[] = []
    const ask = (answer: boolean) => (m: string) => {
      asked.push(m)
      return answer
    }
    try {
      expect(confirmDiscardUnsaved(ask(false))).toBe(true) // nothing unsaved: no question
      expect(asked).toEqual([])
      dirty = true
      expect(confirmDiscardUnsaved(ask(false))).toBe(false) // Cancel: the sign-out does nothing
      expect(confirmDiscardUnsaved(ask(true))).toBe(true)
      expect(asked).toEqual([LEAVE_MESSAGE, LEAVE_MESSAGE])
    } finally {
      unregister()
    }
    expect(confirmDiscardUnsaved(ask(false))).toBe(true) // the form is gone
  })

  it('the address the app goes to itself (after signing out) passes the guard without a question', () => {
    const { target, win, pushed } = fakeWindow(here)
    let asked = 0
    installLeaveGuard(win, new EventTarget(), () => true, () => {
      asked += 1
      return false
    })
    // a browser: setting the hash changes the address, then popstate, then hashchange
    const appWin = {
      addEventListener: target.addEventListener.bind(target),
      location: {
        get href() {
          return win.location.href
        },
        set hash(h: string) {
          win.location.href = new URL(h, win.location.href).href
          target.dispatchEvent(new Event('popstate'))
          target.dispatchEvent(new Event('hashchange'))
        },
        get hash() {
          return new URL(win.location.href).hash
        },
      },
    }
    setAppHash(appWin, '#/clinic/patients')
    expect(asked).toBe(0)
    expect(pushed).toEqual([])
    expect(win.location.href).toBe('http://127.0.0.1:8000/#/clinic/patients')
    // later, the user's own Back to that same address is asked about again
    win.location.href = here
    target.dispatchEvent(new Event('hashchange'))
    win.location.href = 'http://127.0.0.1:8000/#/clinic/patients'
    target.dispatchEvent(new Event('popstate'))
    expect(asked).toBe(1)
  })

  it('a click on an in-app link (breadcrumb): asks once; staying cancels the click', () => {
    const { target, win } = fakeWindow(here)
    const doc = new EventTarget()
    let answer = false
    let asked = 0
    installLeaveGuard(win, doc, () => true, () => {
      asked++
      return answer
    })
    const anchor = { href: there, target: '', hasAttribute: () => false }
    const click = () => {
      const e = Object.assign(new Event('click', { cancelable: true }), { button: 0, metaKey: false, ctrlKey: false, shiftKey: false, altKey: false })
      Object.defineProperty(e, 'target', { value: { closest: () => anchor } })
      doc.dispatchEvent(e)
      return e.defaultPrevented
    }
    expect(click()).toBe(true)
    answer = true
    expect(click()).toBe(false)
    // the navigation the accepted click makes is not asked about again
    win.location.href = there
    target.dispatchEvent(new Event('popstate'))
    target.dispatchEvent(new Event('hashchange'))
    expect(asked).toBe(2)
  })

  it('only guards plain clicks on links to another page of this app', () => {
    const click = (a: object | null, over: Partial<ClickLike> = {}): ClickLike => ({
      defaultPrevented: false,
      button: 0,
      metaKey: false,
      ctrlKey: false,
      shiftKey: false,
      altKey: false,
      target: { closest: () => a },
      ...over,
    })
    const link = (href: string, more: object = {}) => ({ href, target: '', hasAttribute: () => false, ...more })
    expect(inAppLinkTarget(click(link(there)), here)).toBe(there)
    expect(inAppLinkTarget(click(link(here)), here)).toBeNull() // the same page
    expect(inAppLinkTarget(click(link(there), { ctrlKey: true }), here)).toBeNull() // new tab
    expect(inAppLinkTarget(click(link(there, { target: '_blank' })), here)).toBeNull()
    expect(inAppLinkTarget(click(link('http://127.0.0.1:8000/api/v1/patients/5/export', { hasAttribute: (n: string) => n === 'download' })), here)).toBeNull()
    expect(inAppLinkTarget(click(null), here)).toBeNull()
  })
})

// the server's 409 (src/dermsight/web/clinic/cases.py, docs/clinic.md "Correcting what was filed wrongly")
const DETAIL_409 =
  'the diagnosis of lesion 70 changed since you loaded it: it is now BCC (histopathology), recorded 2026-01-03 09:00 UTC by ben; reload the lesion and check it before saving'

describe('correcting a diagnosis', () => {
  it('sends what the page showed; a 409 keeps the entry and says what is recorded now', async () => {
    const calls: { url: string; init: RequestInit }[] = []
    const now: Diagnosis = { code: 'BCC', method: 'histopathology', note: null, recorded_by: 'ben', recorded_at: '2026-01-03T09:00:00Z' }
    vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
      calls.push({ url, init })
      if (init.method === 'PUT') return reply({ detail: DETAIL_409 }, 409)
      return reply({ lesion: LESION, patient: { id: 5, ref: 'P-5' }, visits: [], changes: [], diagnosis: now })
    })
    const outcome = await saveDiagnosis(70, { code: 'NV', method: 'clinical', note: 'typed' }, HISTO)
    // the note the page showed is part of what it showed: a note corrected meanwhile is a 409 too
    expect(JSON.parse(String(calls[0].init.body))).toEqual({ code: 'NV', method: 'clinical', note: 'typed', replaces: { code: 'MEL', method: 'histopathology', note: null } })
    expect(calls[1].url).toBe('/api/v1/lesions/70')
    expect(outcome).toEqual({
      conflict: {
        current: now,
        message:
          'The diagnosis of lesion 70 changed since you loaded it: it is now BCC (histopathology), recorded 2026-01-03 09:00 UTC by ben; reload the lesion and check it before saving. Your entry is kept: check it and save again to replace the diagnosis recorded now, or cancel.',
      },
    })
  })

  it('removing sends the diagnosis the page showed; a 409 removes nothing and says what is recorded now', async () => {
    const calls: { url: string; method?: string }[] = []
    const now: Diagnosis = { code: 'BCC', method: 'histopathology', note: null, recorded_by: 'ben', recorded_at: '2026-01-03T09:00:00Z' }
    let status = 409
    vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
      calls.push({ url, method: init.method })
      if (init.method === 'DELETE') return status === 409 ? reply({ detail: DETAIL_409 }, 409) : new Response(null, { status })
      return reply({ lesion: LESION, patient: { id: 5, ref: 'P-5' }, visits: [], changes: [], diagnosis: now })
    })
    const outcome = await removeShownDiagnosis(70, HISTO)
    expect(calls[0]).toEqual({ url: '/api/v1/lesions/70/diagnosis?code=MEL&method=histopathology', method: 'DELETE' })
    expect(outcome).toEqual({
      conflict: {
        current: now,
        message: expect.stringMatching(/^The diagnosis of lesion 70 changed since you loaded it: it is now BCC .*Nothing was removed/),
      },
    })
    status = 204
    expect(await removeShownDiagnosis(70, { code: 'NV', method: 'clinical' })).toEqual({ removed: true })
    expect(calls[2].url).toBe('/api/v1/lesions/70/diagnosis?code=NV&method=clinical')
  })

  it('after a 409 the hint says saving replaces the diagnosis recorded now, not the one above', () => {
    expect(replacesHint(false)).toContain('replaces the diagnosis above')
    expect(replacesHint(true)).toContain('replaces the diagnosis recorded now')
    expect(replacesHint(true)).not.toContain('replaces the diagnosis above')
    // the form as first shown says "above"
    const html = renderToStaticMarkup(createElement(DiagnosisForm, { lesionId: 70, diagnosis: null, onSaved: () => undefined }))
    expect(text(html)).not.toContain('recorded now')
  })

  it('a first diagnosis replaces none (null); other errors are thrown as before', async () => {
    const bodies: unknown[] = []
    vi.stubGlobal('fetch', async (_url: string, init: RequestInit) => {
      bodies.push(JSON.parse(String(init.body)))
      return bodies.length === 1 ? reply(HISTO) : reply({ detail: 'unknown code' }, 422)
    })
    expect(await saveDiagnosis(70, { code: 'MEL', method: 'histopathology', note: '' }, null)).toEqual({ saved: HISTO })
    expect(bodies[0]).toEqual({ code: 'MEL', method: 'histopathology', note: '', replaces: null })
    await expect(saveDiagnosis(70, { code: 'XX', method: 'clinical', note: '' }, null)).rejects.toThrow('Unknown code')
  })

  it('asks before a clinical diagnosis replaces a histopathology one, not otherwise', () => {
    expect(downgradesHistology(HISTO, 'clinical')).toBe(true)
    expect(downgradesHistology(HISTO, 'histopathology')).toBe(false)
    expect(downgradesHistology({ code: 'NV', method: 'clinical' }, 'clinical')).toBe(false)
    expect(downgradesHistology(null, 'clinical')).toBe(false)
  })

  it('offers to correct or remove a recorded diagnosis', () => {
    const html = renderToStaticMarkup(createElement(DiagnosisForm, { lesionId: 70, diagnosis: HISTO, onSaved: () => undefined }))
    expect(html).toContain('data-testid="diagnosis-edit"')
    expect(html).toContain('data-testid="diagnosis-remove"')
    expect(text(html)).toContain('Remove diagnosis')
  })
})

describe('correcting a visit', () => {
  it('each visit offers "Change date" and "Delete visit", named by number and date for screen readers', () => {
    // two visits of one date differ by their number
    const html = lesionPageHtml([visit(1, '2020-03-04'), visit(2, '2021-05-06'), visit(3, '2021-05-06')])
    expect(html).toContain('aria-label="Delete visit 1 of 3, 2020-03-04"')
    expect(html).toContain('aria-label="Delete visit 2 of 3, 2021-05-06"')
    expect(html).toContain('aria-label="Delete visit 3 of 3, 2021-05-06"')
    expect(html).toContain('aria-label="Change date of visit 3 of 3, 2021-05-06"')
    expect(visitName(visit(3, '2021-05-06'), [{ id: 1 }, { id: 3 }])).toBe('visit 2 of 2, 2021-05-06')
  })

  it('a new date may be at most tomorrow (UTC), the server’s limit', () => {
    expect(latestVisitDate(new Date('2026-03-14T23:30:00Z'))).toBe('2026-03-15')
    expect(latestVisitDate(new Date('2026-12-31T00:10:00Z'))).toBe('2027-01-01')
  })

  it('after a deletion focus goes to the visit before, else after, else the "no visits" line', () => {
    const vs = [{ id: 1 }, { id: 2 }, { id: 3 }]
    expect(focusAfterDelete(vs, 2)).toBe('1')
    expect(focusAfterDelete(vs, 1)).toBe('2')
    expect(focusAfterDelete([{ id: 4 }], 4)).toBe('none')
  })
})

describe('the lesion page on a phone', () => {
  it('the timeline shows the newest visit when first shown, else the one focus was asked for', () => {
    const vs = [{ id: 4 }, { id: 7 }, { id: 9 }]
    expect(visitToShow(vs, undefined, true)).toBe(9) // opened: the newest, not visit 1
    expect(visitToShow(vs, 9, false)).toBe(9) // just saved
    expect(visitToShow(vs, 4, false)).toBe(4) // a new date put it first, or its neighbour was deleted
    expect(visitToShow(vs, 4, true)).toBe(4)
    expect(visitToShow(vs, undefined, false)).toBeUndefined() // left where the user scrolled it
    expect(visitToShow(vs, 12, false)).toBeUndefined() // not (yet) in the timeline
    expect(visitToShow([], undefined, true)).toBeUndefined()
  })

  it('the timeline scrolls just far enough for the whole card to show', () => {
    const view = { left: 16, width: 343 } // a 375 px phone
    // already whole: unchanged
    expect(scrollLeftToShow(view, 120, { left: 30, width: 300 })).toBe(120)
    expect(scrollLeftToShow(view, 0, { left: 16, width: 343 })).toBe(0)
    // off to the right (the newest visit on opening): its right edge at the view's right edge
    expect(scrollLeftToShow(view, 0, { left: 880, width: 300 })).toBe(880 + 300 - (16 + 343))
    // partly clipped at the right (the old page after a save: 35 px cut off): 35 px on
    expect(scrollLeftToShow(view, 1216, { left: 94, width: 300 })).toBe(1216 + 35)
    // off to the left: its left edge at the view's left edge
    expect(scrollLeftToShow(view, 900, { left: -200, width: 300 })).toBe(900 - 216)
    // wider than the view: its start shows, from either side
    expect(scrollLeftToShow(view, 0, { left: 500, width: 400 })).toBe(500 - 16)
    expect(scrollLeftToShow(view, 600, { left: -50, width: 400 })).toBe(600 - 66)
    expect(scrollLeftToShow(view, 10, { left: -50, width: 300 })).toBe(0) // never below 0
  })

  it('a "New visit" button near the top goes to the form\'s heading, which can take focus', () => {
    const html = lesionPageHtml([visit(1, '2020-03-04'), visit(2, '2021-05-06'), visit(3, '2022-07-08')])
    const jump = html.indexOf('data-testid="jump-new-visit"')
    expect(jump).toBeGreaterThan(-1)
    expect(jump).toBeLessThan(html.indexOf('data-testid="timeline"')) // before the visits
    expect(text(/<button[^>]*data-testid="jump-new-visit"[^>]*>[\s\S]*?<\/button>/.exec(html)?.[0] ?? '').trim()).toBe('New visit ↓')
    expect(html).toMatch(/<h2 id="[^"]*" tabindex="-1" data-testid="new-visit-heading">New visit<\/h2>/)
  })

  it('what "Malignant share" means is one tap away, not only in a tooltip', () => {
    const html = lesionPageHtml([visit(1, '2020-03-04'), visit(2, '2021-05-06')])
    const help = /<details[^>]*data-testid="malignant-share-help"[^>]*>[\s\S]*?<\/details>/.exec(html)?.[0] ?? ''
    expect(text(help)).toContain('What “Malignant share” means')
    expect(text(help)).toContain(MALIGNANT_SHARE_DEFINITION)
    expect(MALIGNANT_SHARE_DEFINITION).toContain('not an absolute probability')
  })
})
