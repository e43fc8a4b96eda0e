// Two findings of the clinic UI audit: "Sign in as someone else", on the sign-in form over a page
// hidden after the session ended, asks before discarding unsaved work (as signing out does), and
// the images of a lesion's visits are named by the visit's number, so that two visits of one date
// do not give identical alt texts (the same names as the visit's confirmations).

import { makeVisit } from './testVisits.ts'
import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { switchUser } from '../App.tsx'
import { heatmapViewerAlts, HeatmapViewer } from '../components/HeatmapViewer.tsx'
import { LEAVE_MESSAGE, registerUnsaved } from '../components/NewVisitForm.tsx'
import { CompareVisits, visitImageAlts, visitName, VisitTimeline } from '../components/VisitTimeline.tsx'
import { forgetAssessCase } from '../pages/AssessPage.tsx'
import type { Visit } from './types.ts'

vi.mock('../pages/AssessPage.tsx', async (original) => ({
  ...(await original<typeof import('../pages/AssessPage.tsx')>()),
  forgetAssessCase: vi.fn(),
}))

afterEach(() => {
  vi.mocked(forgetAssessCase).mockClear()
})

describe('"Sign in as someone else" over a hidden page', () => {
  const setters = () => ({ setResumeAs: vi.fn(), setHiddenWhy: vi.fn() })
  const asker = (answer: boolean) => {
    const asked: string[] = []
    const ask = (m: string) => {
      asked.push(m)
      return answer
    }
    return { asked, ask }
  }

  it('asks before discarding a page with unsaved work; Cancel keeps it, hidden, for its user', () => {
    const unregister = registerUnsaved(() => true) // a new visit typed in on the hidden page
    try {
      const set = setters()
      const cancel = asker(false)
      expect(switchUser(cancel.ask, set)).toBe(false)
      expect(cancel.asked).toEqual([LEAVE_MESSAGE])
      expect(set.setResumeAs).not.toHaveBeenCalled()
      expect(set.setHiddenWhy).not.toHaveBeenCalled()
      expect(forgetAssessCase).not.toHaveBeenCalled()

      const ok = asker(true)
      expect(switchUser(ok.ask, set)).toBe(true)
      expect(ok.asked).toEqual([LEAVE_MESSAGE])
      expect(set.setResumeAs).toHaveBeenCalledWith(null)
      expect(set.setHiddenWhy).toHaveBeenCalledWith(null)
      expect(forgetAssessCase).toHaveBeenCalledTimes(1)
    } finally {
      unregister()
    }
  })

  it('discards a page without unsaved work at once, without a question', () => {
    const unregister = registerUnsaved(() => false)
    try {
      const set = setters()
      const never = asker(false)
      expect(switchUser(never.ask, set)).toBe(true)
      expect(never.asked).toEqual([])
      expect(set.setResumeAs).toHaveBeenCalledWith(null)
      expect(set.setHiddenWhy).toHaveBeenCalledWith(null)
      expect(forgetAssessCase).toHaveBeenCalledTimes(1)
    } finally {
      unregister()
    }
  })
})

const visit = (id: number, taken_at: string): Visit => makeVisit(id, taken_at)

/** The alt attributes of the `<img>`s with `testId` in `html`, in order. */
function alts(html: string, testId: string): string[] {
  return [...html.matchAll(/<img\b[^>]*>/g)]
    .map((m) => m[0])
    .filter((tag) => tag.includes(`data-testid="${testId}"`))
    .map((tag) => /\balt="([^"]*)"/.exec(tag)?.[1] ?? '')
}

describe('the alt texts of visit images', () => {
  // two visits of one date
  const visits = [visit(1, '2020-03-04'), visit(2, '2021-05-06'), visit(3, '2021-05-06')]

  it('name each visit by its number and date, as its confirmations do', () => {
    expect(visitImageAlts(visits[1], visits)).toEqual({
      image: 'Image of visit 2 of 3, 2021-05-06',
      heatmap: 'Heatmap of the areas the model used, visit 2 of 3, 2021-05-06',
    })
    for (const v of visits) expect(visitImageAlts(v, visits).image).toBe(`Image of ${visitName(v, visits)}`)
  })

  it('differ between the visits of one date on the timeline', () => {
    const html = renderToStaticMarkup(createElement(VisitTimeline, { visits, changes: [], onChanged: () => undefined }))
    const images = alts(html, 'visit-image')
    expect(images).toEqual([
      'Image of visit 1 of 3, 2020-03-04',
      'Image of visit 2 of 3, 2021-05-06',
      'Image of visit 3 of 3, 2021-05-06',
    ])
    const heatmaps = alts(html, 'visit-heatmap')
    expect(heatmaps).toHaveLength(3)
    expect(new Set(heatmaps).size).toBe(3)
    // the same name as the visit's "Delete" confirmation
    expect(html).toContain('aria-label="Delete visit 3 of 3, 2021-05-06"')
  })

  it('differ between two visits of one date compared side by side', () => {
    const html = renderToStaticMarkup(createElement(CompareVisits, { visits: visits.slice(1), crop: 'none' }))
    // the first and the last visit are compared at first: here both of 2021-05-06
    const shown = [...html.matchAll(/<img\b[^>]*class="heatmap-base"[^>]*>/g)]
      .map((m) => /\balt="([^"]*)"/.exec(m[0])?.[1] ?? '')
      .filter((a) => a !== '') // the print-only copy under the heatmap is decorative
    expect(shown).toEqual(['Image of visit 1 of 2, 2021-05-06', 'Image of visit 2 of 2, 2021-05-06'])
    const heat = alts(html, 'heatmap-overlay')
    expect(heat).toHaveLength(2)
    expect(heat[0]).toContain('visit 1 of 2, 2021-05-06')
    expect(heat[1]).toContain('visit 2 of 2, 2021-05-06')
  })

  it('keep the Assess page’s wording where one image is shown', () => {
    expect(heatmapViewerAlts().image).toBe('The uploaded lesion image')
    expect(heatmapViewerAlts(undefined, 'Melanoma').heatmap).toBe(
      "Heatmap over the image: warm colours mark the areas that most influenced the model's answer (Melanoma)",
    )
    const html = renderToStaticMarkup(
      createElement(HeatmapViewer, { imageSrc: '/x.png', heatmapSrc: '/h.png', crop: 'none', opacity: 50, onOpacity: () => undefined }),
    )
    expect(html).toContain('alt="The uploaded lesion image"')
  })
})
