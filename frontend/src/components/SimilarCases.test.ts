import { describe, expect, it } from 'vitest'
import type { PredictResponse } from '../api.ts'
import { similarCases } from './SimilarCases.tsx'

const CASE = {
  image_id: 'ISIC_0000001',
  diagnosis: 'NV',
  diagnosis_name: 'Melanocytic nevus',
  similarity: 0.91,
  thumbnail_url: '/api/v1/reference/ISIC_0000001.webp',
  licence: 'CC-0',
  attribution: 'ISIC 2017',
}

describe('similarCases', () => {
  it('returns the well-formed entries of an assessable result', () => {
    const res = { risk: 'low', similar: [CASE, { image_id: 3 }, null] } as unknown as PredictResponse
    expect(similarCases(res)).toEqual([CASE])
  })

  it('shows none for a cannot-assess result or an answer without the field', () => {
    expect(similarCases({ risk: 'cannot_assess', similar: [CASE] } as unknown as PredictResponse)).toEqual([])
    expect(similarCases({ risk: 'high' })).toEqual([])
    expect(similarCases({ risk: 'high', similar: 'x' } as unknown as PredictResponse)).toEqual([])
  })
})
