// Findings of the second clinic UI audit, on a lesion's page:
// - a visit photo that cannot be assessed showed only the reason (retake the photo) and hid a
//   non-blocking safety warning (the photo may be of another lesion: its site contradicts the
//   lesion's); a clinician now sees both (the patient view keeps to the reason);
// - the diagnosis form, a visit's note and its date were lost without asking (only the new visit
//   registered its unsaved work): they register too, each with its own question;
// - "Compare two" started with the first and last visits even when one could not be assessed;
// - a "Change date" error was not tied to the date field.

import { makeVisit } from './testVisits.ts'
import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, describe, expect, it } from 'vitest'
import type { Flag } from '../api.ts'
import { DIAGNOSIS_LEAVE_MESSAGE, diagnosisUnsaved } from '../components/DiagnosisForm.tsx'
import {
  confirmDiscardUnsaved,
  hasUnsavedForms,
  LEAVE_MESSAGE,
  LEAVE_MESSAGE_SEVERAL,
  registerUnsaved,
  unsavedMessage,
} from '../components/NewVisitForm.tsx'
import { RiskBanner } from '../components/RiskBanner.tsx'
import {
  CompareVisits,
  DATE_LEAVE_MESSAGE,
  editorUnsaved,
  NOTE_LEAVE_MESSAGE,
  VisitDateEditor,
  VisitTimeline,
} from '../components/VisitTimeline.tsx'
import { defaultComparePair, isSafetyWarning, resultNotes } from './timelineSafety.ts'
import type { Visit } from './types.ts'

const DARK: Flag = { code: 'too_dark', message: 'the image is too dark to assess', blocking: true }
const SITE: Flag = {
  code: 'site_contradicts_lesion',
  message: "the DICOM file's body part (palms/soles) contradicts the lesion's recorded body site (posterior torso): the photo may be of another lesion",
  blocking: false,
}
const EARLIER: Flag = { code: 'site_contradicts_earlier_visit', message: 'the site contradicts an earlier visit’s', blocking: false }
const COMPRESSED: Flag = { code: 'compressed', message: 'JPEG quality about 60; use the original file if you have it', blocking: false }

const visit = (id: number, taken_at: string, result: Partial<Visit['result']> = {}): Visit =>
  makeVisit(id, taken_at, {}, result)
const cannot = (id: number, taken_at: string, flags: Flag[] = [DARK]) =>
  visit(id, taken_at, { risk: 'cannot_assess', malignant_probability: undefined, flags })

/** The data-code attributes of the list items inside the element with `testId` in `html`. */
function codesIn(html: string, testId: string): string[] {
  const start = html.indexOf(`data-testid="${testId}"`)
  if (start < 0) return []
  const list = html.slice(start, html.indexOf('</ul>', start))
  return [...list.matchAll(/data-code="([^"]*)"/g)].map((m) => m[1])
}

describe('a photo that cannot be assessed, with a safety warning', () => {
  it('shows the clinician the warning beside the reason', () => {
    expect(resultNotes([DARK, SITE, COMPRESSED], true, 'clinician')).toEqual({ reasons: [DARK], warnings: [SITE] })
    expect(resultNotes([DARK, SITE, EARLIER], true)).toEqual({ reasons: [DARK], warnings: [SITE, EARLIER] })
    // no blocking flag: the other flags are the reasons, the safety warning stays a warning
    expect(resultNotes([SITE, COMPRESSED], true)).toEqual({ reasons: [COMPRESSED], warnings: [SITE] })
    expect(isSafetyWarning(SITE) && isSafetyWarning(EARLIER)).toBe(true)
    expect(isSafetyWarning(COMPRESSED) || isSafetyWarning({ ...SITE, blocking: true })).toBe(false)
  })

  it('keeps the patient view to the reason, and a valid result to all its warnings', () => {
    expect(resultNotes([DARK, SITE], true, 'patient')).toEqual({ reasons: [DARK], warnings: [] })
    expect(resultNotes([SITE, COMPRESSED], false, 'patient')).toEqual({ reasons: [], warnings: [SITE, COMPRESSED] })
    expect(resultNotes(undefined, true)).toEqual({ reasons: [], warnings: [] })
  })

  it('is shown on the visit card of the timeline', () => {
    const v = cannot(1, '2021-05-06', [DARK, SITE])
    const html = renderToStaticMarkup(createElement(VisitTimeline, { visits: [v], changes: [], onChanged: () => undefined }))
    expect(codesIn(html, 'visit-flags')).toEqual(['too_dark', 'site_contradicts_lesion'])
    expect(html).toContain('the photo may be of another lesion')
  })

  it('is shown in the clinician banner, not the patient one', () => {
    const banner = (audience: 'clinician' | 'patient') =>
      renderToStaticMarkup(createElement(RiskBanner, { risk: 'cannot_assess', flags: [DARK, SITE], audience }))
    expect(codesIn(banner('clinician'), 'risk-warnings')).toEqual(['site_contradicts_lesion'])
    expect(banner('clinician')).toContain('data-code="too_dark"')
    expect(codesIn(banner('patient'), 'risk-warnings')).toEqual([])
    expect(banner('patient')).not.toContain('site_contradicts_lesion')
  })
})

describe('unsaved work outside the new visit form', () => {
  const cleanups: (() => void)[] = []
  afterEach(() => {
    while (cleanups.length) cleanups.pop()?.()
  })

  it('a typed diagnosis or note is unsaved work until saved or cancelled', () => {
    const shown = { code: 'MEL', method: 'histopathology' as const, note: 'Breslow 0.4 mm' }
    expect(diagnosisUnsaved(true, { code: '', method: 'histopathology', note: '' }, null)).toBe(false)
    expect(diagnosisUnsaved(true, { code: 'MEL', method: 'histopathology', note: '' }, null)).toBe(true)
    expect(diagnosisUnsaved(true, { code: '', method: 'histopathology', note: 'biopsy sent' }, null)).toBe(true)
    expect(diagnosisUnsaved(true, { ...shown }, shown)).toBe(false)
    expect(diagnosisUnsaved(true, { ...shown, note: 'Breslow 0.6 mm' }, shown)).toBe(true)
    expect(diagnosisUnsaved(false, { ...shown, note: 'Breslow 0.6 mm' }, shown)).toBe(false)
  })

  it('an edited note or date is unsaved work while its editor is open', () => {
    expect(editorUnsaved(true, 'new text', null)).toBe(true)
    expect(editorUnsaved(true, '', null)).toBe(false)
    expect(editorUnsaved(true, 'same', 'same')).toBe(false)
    expect(editorUnsaved(false, 'new text', 'old')).toBe(false)
    expect(editorUnsaved(true, '2021-05-07', '2021-05-06')).toBe(true)
  })

  it('signing out asks with the question of the form that holds it, once', () => {
    let diagnosis = true
    let note = false
    cleanups.push(registerUnsaved(() => diagnosis, DIAGNOSIS_LEAVE_MESSAGE))
    cleanups.push(registerUnsaved(() => note, NOTE_LEAVE_MESSAGE))
    cleanups.push(registerUnsaved(() => false)) // a clean new visit form
    const asked: string[] = []
    expect(confirmDiscardUnsaved((m) => (asked.push(m), false))).toBe(false) // Cancel keeps it
    expect(asked).toEqual([DIAGNOSIS_LEAVE_MESSAGE])
    note = true
    expect(unsavedMessage()).toBe(LEAVE_MESSAGE_SEVERAL)
    diagnosis = false
    note = false
    expect(hasUnsavedForms()).toBe(false)
    expect(confirmDiscardUnsaved(() => false)).toBe(true) // nothing to ask about
    expect(new Set([LEAVE_MESSAGE, DIAGNOSIS_LEAVE_MESSAGE, NOTE_LEAVE_MESSAGE, DATE_LEAVE_MESSAGE]).size).toBe(4)
  })
})

describe('"Compare two" starts with the last two assessed visits', () => {
  const a = visit(1, '2020-01-01', { malignant_probability: 0.1 })
  const b = visit(2, '2020-06-01', { malignant_probability: 0.2 })
  const c = visit(3, '2021-01-01', { malignant_probability: 0.3 })
  const x = cannot(4, '2021-06-01')
  const y = cannot(5, '2019-06-01')

  it('skips visits that could not be assessed', () => {
    expect(defaultComparePair([y, a, b, c, x])).toEqual([2, 3])
    expect(defaultComparePair([y, a, x, b])).toEqual([1, 2])
  })

  it('falls back when fewer than two were assessed', () => {
    expect(defaultComparePair([a, x])).toEqual([1, 4])
    expect(defaultComparePair([y, a])).toEqual([5, 1])
    expect(defaultComparePair([x, a, y])).toEqual([1, 5])
    expect(defaultComparePair([y, x])).toEqual([5, 4])
    expect(defaultComparePair([a])).toEqual([1, 1])
    expect(defaultComparePair([])).toEqual([0, 0])
  })

  it('shows their change instead of "not available"', () => {
    const html = renderToStaticMarkup(createElement(CompareVisits, { visits: [y, a, b, x], crop: 'full' }))
    const delta = /data-testid="compare-delta"[^>]*>(.*?)<\/p>/.exec(html)?.[1] ?? ''
    expect(delta).toContain('+10.0 points')
    expect(delta).not.toContain('not available')
  })
})

describe('a "Change date" error', () => {
  const render = (error: string | null, invalid: boolean) =>
    renderToStaticMarkup(
      createElement(VisitDateEditor, {
        id: 'v7-date',
        when: '2021-05-06',
        date: '2031-01-01',
        onDate: () => undefined,
        error,
        invalid,
        busy: false,
        onSave: () => undefined,
        onCancel: () => undefined,
      }),
    )
  const input = (html: string) => /<input\b[^>]*>/.exec(html)?.[0] ?? ''

  it('is tied to the date field', () => {
    const html = render('taken_at 2031-01-01 lies in the future: check the date', true)
    const errorId = /<div[^>]*role="alert"[^>]*id="([^"]+)"/.exec(html)?.[1] ?? /id="([^"]+)"[^>]*role="alert"/.exec(html)?.[1]
    expect(errorId).toBeTruthy()
    expect(input(html)).toContain(`aria-describedby="${errorId}"`)
    expect(input(html)).toContain('aria-invalid="true"')
  })

  it('marks the date invalid only when the date was refused, and nothing without an error', () => {
    expect(input(render('the server could not be reached', false))).not.toContain('aria-invalid')
    expect(input(render('the server could not be reached', false))).toContain('aria-describedby=')
    expect(input(render(null, true))).not.toContain('aria-')
  })
})
