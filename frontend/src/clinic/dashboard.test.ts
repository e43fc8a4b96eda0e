import { describe, expect, it } from 'vitest'
import { leftOut } from '../pages/DashboardPage.tsx'

describe('dashboard: confirmed lesions in no figures', () => {
  it('says how many, why, and what to do, in the right number', () => {
    expect(leftOut(1)).toBe(
      '1 confirmed lesion appears in no figures: none of its photos could be assessed ("cannot assess"). Retake the photo to include it.',
    )
    expect(leftOut(3)).toBe(
      '3 confirmed lesions appear in no figures: none of their photos could be assessed ("cannot assess"). Retake the photo to include them.',
    )
  })
})
