// Unit tests for the helpers added by the UI sweep (tests/test_e2e_ui_sweep.py drives them in a
// real browser against a real server).
import { describe, expect, it } from 'vitest'
import { asSentence, formatBytes, formatProbability, imageKind, predictionProblem, refusedUpload } from './format.ts'

const bytes = (...parts: (string | number[])[]) =>
  new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : p)))

describe('asSentence', () => {
  it('capitalises and ends with a full stop', () => {
    expect(asSentence('not an image (looks like a text file)')).toBe('Not an image (looks like a text file).')
    expect(asSentence('request too large: the limit is 20 MB')).toBe('Request too large: the limit is 20 MB.')
    expect(asSentence('Already a sentence.')).toBe('Already a sentence.')
    expect(asSentence('  ')).toBe('')
  })
})

describe('formatProbability', () => {
  it('never shows a model probability as a certainty', () => {
    expect(formatProbability(0)).toBe('<0.1%')
    expect(formatProbability(1)).toBe('>99.9%')
    expect(formatProbability(0.0000078)).toBe('<0.1%')
    expect(formatProbability(0.890440)).toBe('89.0%')
    expect(formatProbability(-0.1)).toBe('—')
    expect(formatProbability(1.5)).toBe('—')
    expect(formatProbability(undefined)).toBe('—')
  })
})

describe('formatBytes', () => {
  it('uses B, KB and MB', () => {
    expect(formatBytes(5)).toBe('5 B')
    expect(formatBytes(9 * 1024)).toBe('9 KB')
    expect(formatBytes(27021126)).toBe('25.8 MB')
  })
})

describe('imageKind / refusedUpload', () => {
  const dicom = new Uint8Array(132)
  dicom.set(bytes('DICM'), 128)
  const bmp = bytes('BM', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [40, 0, 0, 0])
  it('recognises what the server reads', () => {
    expect(imageKind(bytes([0xff, 0xd8, 0xff, 0xe0]))).toBe('JPEG')
    expect(imageKind(bytes([0x89], 'PNG\r\n', [0x1a], '\n'))).toBe('PNG')
    expect(imageKind(bytes('RIFF', [0, 0, 0, 0], 'WEBPVP8 '))).toBe('WEBP')
    expect(imageKind(bmp)).toBe('BMP')
    expect(imageKind(bytes('II*', [0]))).toBe('TIFF')
    expect(imageKind(bytes('MM', [0], '*'))).toBe('TIFF')
    expect(imageKind(dicom)).toBe('DICOM')
    expect(imageKind(bytes('BM', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [41, 0, 0, 0]))).toBeNull()
  })
  it('accepts those and names the common refusals', () => {
    expect(refusedUpload(bytes([0xff, 0xd8, 0xff]), 3000)).toBeNull()
    expect(refusedUpload(dicom, 132)).toBeNull()
    expect(refusedUpload(new Uint8Array(0), 0)).toMatch(/empty \(0 bytes\)/)
    expect(refusedUpload(bytes([0, 0, 0, 0x18], 'ftypheic', [0, 0, 0, 0], 'mif1heic'), 2000)).toMatch(/^HEIC\/HEIF files .*Most Compatible/)
    expect(refusedUpload(bytes([0, 0, 0, 0x1c], 'ftypavif', [0, 0, 0, 0], 'avifmif1'), 2000)).toMatch(/^AVIF files/)
    expect(refusedUpload(bytes('GIF89a'), 50)).toMatch(/^GIF files are not accepted/)
    expect(refusedUpload(bytes('%PDF-1.4'), 50)).toMatch(/^PDF files are not accepted/)
    expect(refusedUpload(bytes('Patient notes'), 50)).toMatch(/not a JPEG, PNG, WebP, BMP, TIFF or DICOM image/)
  })
})

describe('predictionProblem', () => {
  it('accepts a result and a refusal', () => {
    expect(predictionProblem({ risk: 'low', probabilities: { MEL: 0.1, NV: 0.9 } })).toBeNull()
    expect(predictionProblem({ risk: 'cannot_assess', unreliable: { note: 'x' } })).toBeNull()
  })
  it('refuses answers that are not a result', () => {
    for (const bad of [null, 'html', [], {}, { risk: 'low' }, { risk: 'low', probabilities: {} }, { risk: 'very high', probabilities: { NV: 1 } },
      { risk: 'high', probabilities: { MEL: 'x' } }, { risk: 'high', probabilities: { MEL: 1.2 } }]) {
      expect(predictionProblem(bad)).toMatch(/incomplete/)
    }
  })
})
