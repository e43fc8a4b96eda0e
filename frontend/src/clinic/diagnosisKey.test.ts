import { describe, expect, it } from 'vitest'
import { diagnosisKey } from './format.ts'
import type { Diagnosis } from './types.ts'

const dx: Diagnosis = { code: 'NV', method: 'clinical', note: 'review in 3 months', recorded_by: 'ana', recorded_at: '2026-10-15T09:00:00+00:00' }

describe('diagnosisKey', () => {
  it('changes with a note-only edit, which keeps recorded_at (a new form for the saved note)', () => {
    expect(diagnosisKey({ ...dx, note: 'review in 3 months.' })).not.toBe(diagnosisKey(dx))
  })
  it('changes with the code, the method and the day; stays for the same version', () => {
    expect(diagnosisKey({ ...dx, code: 'MEL' })).not.toBe(diagnosisKey(dx))
    expect(diagnosisKey({ ...dx, method: 'histopathology' })).not.toBe(diagnosisKey(dx))
    expect(diagnosisKey({ ...dx, recorded_at: '2026-11-01T09:00:00+00:00' })).not.toBe(diagnosisKey(dx))
    expect(diagnosisKey({ ...dx })).toBe(diagnosisKey(dx))
    expect(diagnosisKey(null)).toBe('none')
  })
})
