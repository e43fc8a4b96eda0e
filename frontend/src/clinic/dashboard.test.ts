import { describe, expect, it } from 'vitest'
import { leftOut, leftOutSiteInDoubt } from '../pages/DashboardPage.tsx'

describe('dashboard: confirmed lesions in no figures', () => {
  it('says how many, why, and what to do, in the right number', () => {
    expect(leftOut(1)).toBe(
      '1 confirmed lesion appears in no figures: none of its photos could be assessed ("cannot assess"). It is included once a photo of it can be assessed (if the lesion is still there).',
    )
    expect(leftOut(3)).toBe(
      '3 confirmed lesions appear in no figures: none of their photos could be assessed ("cannot assess"). They are included once a photo of them can be assessed (if the lesion is still there).',
    )
    // confirmed lesions are often excised: no "retake" addressed to them
    expect(leftOut(3)).not.toMatch(/retake/i)
  })
})

describe('leftOutSiteInDoubt', () => {
  it('counts the lesions left out for a body-site warning, singular and plural', () => {
    expect(leftOutSiteInDoubt(1)).toMatch(/^1 confirmed lesion appears in no figures: every photo of it /)
    expect(leftOutSiteInDoubt(2)).toMatch(/^2 confirmed lesions appear in no figures: every photo of them /)
  })
})
