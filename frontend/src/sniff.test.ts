import { describe, expect, it } from 'vitest'
import { imageKind, refusedUpload } from './format.ts'
import sniffCases from './sniffCases.json'

/** First bytes and the kind the server accepts them as (tests/test_sniff_contract.py checks the
 * server against the same file): the UI must refuse before upload exactly what the server refuses. */
function bytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

describe('the UI reads first bytes as the server does', () => {
  for (const c of sniffCases.cases) {
    it(c.name, () => {
      const head = bytes(c.head)
      expect(imageKind(head)).toBe(c.kind)
      expect(refusedUpload(head, 1000) === null).toBe(c.kind !== null)
    })
  }
})
