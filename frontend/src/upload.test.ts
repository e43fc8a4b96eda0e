import { afterEach, describe, expect, it } from 'vitest'
import { ApiError } from './api.ts'
import { formatLimit, tooLargeMessage } from './format.ts'
import { NO_PREVIEW, settlePreview, tooLargeAnswer, uploadRefusal, type Preview } from './upload.ts'
// a real dermoscopic JPEG of the shared data (9.5 KB), as a data: URL
import lesionJpeg from '../../../shared/data/isic-subset/images/ISIC_0000000.jpg?inline'

const MIB = 1024 * 1024
const urls: string[] = []

afterEach(() => {
  for (const u of urls.splice(0)) URL.revokeObjectURL(u)
})

/** The bytes of a data: URL. */
function dataUrlBytes(url: string): Uint8Array<ArrayBuffer> {
  const bin = atob(url.slice(url.indexOf(',') + 1))
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

function ascii(text: string): number[] {
  return [...text].map((c) => c.charCodeAt(0))
}

const lesion = () => new File([dataUrlBytes(lesionJpeg)], 'ISIC_0000000.jpg', { type: 'image/jpeg' })

/** The one check both forms run: the preview read from the file's first bytes, then the refusal. */
async function check(file: File, maxBytes: number | null): Promise<{ preview: Preview; refused: string | null }> {
  const preview = await settlePreview(file)
  if (preview.url) urls.push(preview.url)
  return { preview, refused: uploadRefusal(file, preview, maxBytes) }
}

describe('the check before an upload (Assess page and clinic visit)', () => {
  it('accepts a real lesion JPEG under the limit, or when the limit is not known', async () => {
    const file = lesion()
    expect(file.size).toBe(9509)
    for (const limit of [20 * MIB, file.size, null]) {
      const { preview, refused } = await check(file, limit)
      expect(refused).toBeNull()
      expect(preview.refused).toBeNull()
      expect(preview.pending).toBe(false)
      expect(preview.url).toMatch(/^blob:/)
    }
  })

  it('refuses the same JPEG over the limit, with its size and the limit', async () => {
    const file = lesion()
    const limit = Math.floor(0.005 * MIB) // 5242 bytes
    const { refused } = await check(file, limit)
    expect(refused).toBe(tooLargeMessage(file.size, formatLimit(limit)))
    expect(refused).toBe(
      'The image file is too large (9 KB): this server accepts files up to 0.005 MB. Send a smaller copy of the photo (for example a high-quality JPEG export).',
    )
  })

  it('says the server 413 in the words of the check before sending', async () => {
    const file = lesion()
    const limit = Math.floor(0.005 * MIB)
    const { refused } = await check(file, limit)
    expect(tooLargeAnswer(new ApiError(413, 'upload too large: the limit is 0.005 MB per image'), file)).toBe(refused)
    expect(tooLargeAnswer(new ApiError(422, 'image has transparent areas'), file)).toBeNull()
    expect(tooLargeAnswer(new Error('upload too large'), file)).toBeNull()
  })

  const refusals: [string, number[], RegExp][] = [
    ['empty.jpg', [], /^This file is empty \(0 bytes\): it holds no image\.$/],
    ['IMG_0001.HEIC', [0, 0, 0, 0x18, ...ascii('ftypheic'), 0, 0, 0, 0, ...ascii('mif1heic'), ...new Array(64).fill(0)], /^HEIC\/HEIF files .*Most Compatible\)\.$/],
    ['photo.avif', [0, 0, 0, 0x1c, ...ascii('ftypavif'), 0, 0, 0, 0, ...ascii('avifmif1'), ...new Array(64).fill(0)], /^AVIF files are not accepted/],
    ['lesion.gif', [...ascii('GIF89a'), ...new Array(64).fill(0)], /^GIF files are not accepted: send a JPEG, PNG, WebP, BMP, TIFF or DICOM image\.$/],
    ['scan.pdf', [...ascii('%PDF-1.7\n'), ...new Array(64).fill(0)], /^PDF files are not accepted/],
    ['notes.txt', ascii('Patient notes: lesion on the back, 6 mm.\n'), /^This file is not a JPEG, PNG, WebP, BMP, TIFF or DICOM image, so it cannot be assessed/],
  ]

  for (const [name, bytes, words] of refusals) {
    it(`refuses ${name} by its first bytes, whatever its size`, async () => {
      const file = new File([new Uint8Array(bytes)], name)
      for (const limit of [20 * MIB, 1, null]) {
        const { preview, refused } = await check(file, limit)
        expect(refused).toMatch(words)
        expect(preview.refused).toBe(refused)
        expect(preview.url).toBeNull() // no preview of a file that is refused
      }
    })
  }

  it('reads a real JPEG named .gif as the JPEG it is (the content decides, as on the server)', async () => {
    const file = new File([dataUrlBytes(lesionJpeg)], 'lesion.gif', { type: 'image/gif' })
    expect((await check(file, 20 * MIB)).refused).toBeNull()
  })

  it('accepts a DICOM file (no preview in the browser)', async () => {
    const head = new Uint8Array(256)
    head.set(ascii('DICM'), 128)
    const { preview, refused } = await check(new File([head], 'scan.dcm'), 20 * MIB)
    expect(refused).toBeNull()
    expect(preview).toEqual({ url: null, dicom: true, refused: null, pending: false })
  })

  it('refuses nothing while no file is chosen', () => {
    expect(uploadRefusal(null, NO_PREVIEW, 1)).toBeNull()
  })
})
