import { describe, expect, it } from 'vitest'
import { describeTooLarge, formatLimit, oversizeUpload, tooLargeMessage, uploadLimitBytes } from './format.ts'

const MIB = 1024 * 1024

describe('upload size limit', () => {
  it('reads max_upload_mb from GET /health as bytes, exactly as the server caps them', () => {
    expect(uploadLimitBytes(20)).toBe(20 * MIB)
    // DERMSIGHT_MAX_UPLOAD_MB=0.05: the server caps at int(0.05 * MiB) bytes and reports that / MiB
    expect(uploadLimitBytes(Math.floor(0.05 * MIB) / MIB)).toBe(Math.floor(0.05 * MIB))
    for (const bad of [undefined, null, 0, -1, Number.NaN, '20']) expect(uploadLimitBytes(bad)).toBeNull()
  })

  it('refuses a file over the limit before sending, and only then', () => {
    expect(oversizeUpload(20 * MIB, 20 * MIB)).toBeNull()
    expect(oversizeUpload(20 * MIB + 1, 20 * MIB)).toBe(tooLargeMessage(20 * MIB + 1, '20 MB'))
    expect(oversizeUpload(10 ** 9, null)).toBeNull() // limit not known: the server's 413 decides
  })

  it('says the limit as the server does', () => {
    expect(formatLimit(20 * MIB)).toBe('20 MB')
    expect(formatLimit(Math.floor(0.05 * MIB))).toBe('0.05 MB')
    expect(formatLimit(1.5 * MIB)).toBe('1.5 MB')
  })

  it('words the check before sending and the 413 after it the same way', () => {
    const size = 25 * MIB
    const before = oversizeUpload(size, 20 * MIB)
    const after = describeTooLarge('upload too large: the limit is 20 MB per image', size)
    expect(before).toBe(after)
    expect(after).toBe(
      'The image file is too large (25.0 MB): this server accepts files up to 20 MB. Send a smaller copy of the photo (for example a high-quality JPEG export).',
    )
    // the older server wording, and one without a limit in it
    expect(describeTooLarge('request too large: the limit is 20 MB', size)).toBe(after)
    expect(describeTooLarge('payload too large', 2048)).toBe('Payload too large. This file is 2 KB.')
    expect(describeTooLarge('image too large: the limit is 0 MB', 2048)).toBe('Image too large: the limit is 0 MB. This file is 2 KB.')
  })
})
