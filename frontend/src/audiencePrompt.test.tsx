// The audit of the web app on a phone: a first-time visitor got the Clinician view ("Low risk",
// "Suggested class: Melanocytic nevus", the decision rule) unless they spotted the small "View:
// Clinician | Patient" switch. Now, until a view is chosen, results are in the Patient view and
// the Assess page asks once, inline above the upload, who is using dermsight.

import { createElement } from 'react'
import { renderToStaticMarkup } from 'react-dom/server'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  AUDIENCE_PROMPT_CHOICES,
  AUDIENCE_PROMPT_QUESTION,
  AudiencePrompt,
} from './components/AudiencePrompt.tsx'
import { AudienceChoiceContext, loadAudience, saveAudience, storedAudience, type AudienceChoice } from './hooks.ts'
import { AssessPage } from './pages/AssessPage.tsx'
import { visibleText } from './testing/html.ts'

const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }
const source = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8')

function fakeStorage(initial: Record<string, string> = {}): Storage {
  const data = new Map(Object.entries(initial))
  return {
    get length() {
      return data.size
    },
    clear: () => data.clear(),
    getItem: (k: string) => data.get(k) ?? null,
    key: (i: number) => Array.from(data.keys())[i] ?? null,
    removeItem: (k: string) => void data.delete(k),
    setItem: (k: string, v: string) => void data.set(k, String(v)),
  }
}

afterEach(() => {
  vi.unstubAllGlobals()
})

function withChoice(choice: AudienceChoice, child: ReturnType<typeof createElement>): string {
  return renderToStaticMarkup(createElement(AudienceChoiceContext.Provider, { value: choice }, child))
}

describe('the audience remembered in the browser', () => {
  it('is the Patient view until someone chooses (it was the Clinician view)', () => {
    vi.stubGlobal('localStorage', fakeStorage())
    expect(storedAudience()).toBeNull()
    expect(loadAudience()).toBe('patient')
  })

  it('is the saved choice once made, either way', () => {
    vi.stubGlobal('localStorage', fakeStorage())
    saveAudience('clinician')
    expect(storedAudience()).toBe('clinician')
    expect(loadAudience()).toBe('clinician')
    saveAudience('patient')
    expect(loadAudience()).toBe('patient')
  })

  it('treats an unknown stored value, or storage that cannot be read, as not chosen', () => {
    vi.stubGlobal('localStorage', fakeStorage({ 'dermsight.audience': 'doctor' }))
    expect(storedAudience()).toBeNull()
    expect(loadAudience()).toBe('patient')
    vi.stubGlobal('localStorage', {
      getItem: () => {
        throw new Error('denied')
      },
    })
    expect(storedAudience()).toBeNull()
    expect(loadAudience()).toBe('patient')
  })
})

describe('the Assess page asks once who is using dermsight', () => {
  const notChosen: AudienceChoice = { chosen: false, choose: () => {} }

  it('shows a labelled group of two buttons while no view is chosen', () => {
    const html = withChoice(notChosen, createElement(AudiencePrompt))
    expect(html).toContain('data-testid="audience-prompt"')
    expect(html).toMatch(/role="group"/)
    const labelled = /aria-labelledby="([^"]+)"/.exec(html)?.[1]
    expect(labelled).toBeTruthy()
    expect(html).toContain(`id="${labelled}"`)
    expect(html).toContain(`id="${labelled}" class="audience-prompt-question">${AUDIENCE_PROMPT_QUESTION}</p>`)
    const text = visibleText(html)
    expect(text).toContain('I am a health professional')
    expect(text).toContain('I am a patient or member of the public')
    // plain buttons (not submit: they sit in the upload form), the app's 44 px buttons
    expect(html.match(/<button type="button" class="btn btn-secondary"/g)).toHaveLength(AUDIENCE_PROMPT_CHOICES.length)
    expect(html).not.toMatch(/autofocus/i) // no focus taken on load
  })

  it('is gone once a view is chosen (the default context: chosen)', () => {
    expect(withChoice({ chosen: true, choose: () => {} }, createElement(AudiencePrompt))).toBe('')
    expect(renderToStaticMarkup(createElement(AudiencePrompt))).toBe('')
  })

  it('sits on the Assess page above the upload, not as a modal', () => {
    const html = withChoice(notChosen, createElement(AssessPage))
    const prompt = html.indexOf('data-testid="audience-prompt"')
    expect(prompt).toBeGreaterThan(-1)
    expect(prompt).toBeLessThan(html.indexOf('data-testid="dropzone"'))
    expect(prompt).toBeGreaterThan(html.indexOf('<h1'))
    expect(html).not.toMatch(/aria-modal/)
    expect(renderToStaticMarkup(createElement(AssessPage))).not.toContain('audience-prompt')
  })

  it('has touch-sized buttons in the style sheet', () => {
    const css = source('./styles.css')
    expect(css).toMatch(/\.audience-prompt-choices \.btn \{[^}]*min-height: 44px/)
  })

  it('is answered for a signed-in clinic user: the Clinician view, unless a view was chosen', () => {
    const app = source('./App.tsx')
    expect(app).toMatch(/if \(session && !audienceChosen\) chooseAudience\('clinician'\)/)
  })
})
