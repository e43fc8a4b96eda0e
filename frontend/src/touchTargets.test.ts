// Findings of a touch audit (phones 390 x 844 and 360 x 740, a tablet 820 x 1180): the diagnosis'
// "Correct" and "Remove diagnosis" were 24 px tall and 5 px apart, the stacked lists' links 33 px
// tall, the body map's figures stopped at 180 px on a tablet (a pin's tap area 30 px across), and
// the sign-in form said the page hid "after 1 minute" when it hid after 45 seconds. The sizes in a
// browser: tests/test_e2e_touch_targets.py.

import { describe, expect, it } from 'vitest'
import { FIGURE, PIN_TARGET_PX, pinHitRadius } from './components/BodyMap.tsx'
import { idleReason, pageIdleMs } from './clinic/session.ts'

// node's file reading, named so that the app's TypeScript (no node types) leaves it alone
const NODE_FS = 'node:fs'
const { readFileSync } = (await import(/* @vite-ignore */ NODE_FS)) as { readFileSync: (p: URL, enc: 'utf8') => string }

const css = readFileSync(new URL('./styles.css', import.meta.url), 'utf8')
/** The bodies of the `@media (pointer: coarse)` blocks (touch screens), joined. */
const coarse = [...css.matchAll(/@media \(pointer: coarse\)[^{]*\{([\s\S]*?)\n\}/g)].map((m) => m[1]).join('\n')

/** The declarations of the first rule in `block` whose selector list includes `selector`. */
function ruleFor(block: string, selector: string): string {
  for (const m of block.matchAll(/([^{}]+)\{([^{}]*)\}/g)) {
    const selectors = m[1]
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .split(',')
      .map((s) => s.trim())
    if (selectors.includes(selector)) return m[2]
  }
  return ''
}

describe('touch targets on a touch screen', () => {
  it('makes the diagnosis’ buttons 44 px tall, 8 px or more apart', () => {
    const rule = ruleFor(coarse, "[data-testid='diagnosis-section'] .btn-link")
    expect(rule).toMatch(/min-height: 44px/)
    expect(rule).toMatch(/display: inline-flex/)
    // 4 px of margin on each: 8 px between them, on one line or two
    expect(rule).toMatch(/margin: 4px;/)
  })

  it('makes the stacked lists’ links 44 px tall', () => {
    const rule = ruleFor(coarse, '.data-table.stack-narrow a')
    expect(rule).toMatch(/min-height: 44px/)
    expect(rule).toMatch(/display: inline-flex/)
  })

  it('lets the body map grow on a tablet to where a pin’s tap area is 44 px across', () => {
    const m = /@media \(pointer: coarse\) and \(min-width: (\d+)px\) \{\s*\.bodymap-fig \{\s*flex-basis: (\d+)px/.exec(css)
    expect(m).not.toBeNull()
    const [minWidth, basis] = [Number(m?.[1]), Number(m?.[2])]
    expect(minWidth).toBeLessThanOrEqual(820) // an iPad Air held upright
    expect(2 * basis + 24).toBeLessThan(minWidth) // two figures and the gap fit
    const across = (2 * pinHitRadius(basis, true) * basis) / FIGURE.width
    expect(across).toBeGreaterThanOrEqual(PIN_TARGET_PX)
  })
})

describe('the reason the page was hidden', () => {
  it('says "about": the page hides a little before the server’s timeout', () => {
    expect(idleReason(1)).toContain('after about 1 minute without activity')
    expect(idleReason(30)).toContain('after about 30 minutes without activity')
    expect(pageIdleMs(60_000)).toBe(45_000)
    expect(pageIdleMs(30 * 60_000)).toBe(29 * 60_000)
  })
})
