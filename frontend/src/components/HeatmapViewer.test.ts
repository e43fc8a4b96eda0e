import { describe, expect, it } from 'vitest'
import { centreSquare } from './HeatmapViewer.tsx'

describe('centreSquare', () => {
  it('outlines the centre square of a landscape image', () => {
    expect(centreSquare({ w: 400, h: 200 })).toEqual({ left: '25%', top: '0%', width: '50%', height: '100%' })
  })
  it('outlines the centre square of a portrait image', () => {
    expect(centreSquare({ w: 300, h: 600 })).toEqual({ left: '0%', top: '25%', width: '100%', height: '50%' })
  })
  it('draws nothing for a square image or an unknown size', () => {
    expect(centreSquare({ w: 256, h: 256 })).toBeNull()
    expect(centreSquare({ w: 0, h: 0 })).toBeNull()
  })
})
