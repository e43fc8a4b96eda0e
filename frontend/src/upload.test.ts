import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from './api.ts'
import { formatLimit, tooLargeMessage } from './format.ts'
import { useApiImage } from './hooks.ts'
import { NO_PREVIEW, settlePreview, tooLargeAnswer, uploadRefusal, useImageUpload, type Preview } from './upload.ts'

// No DOM here (no jsdom, no testing library): `useImageUpload` and `useApiImage` run in a
// one-component host (src/testing/hookHost.ts) that keeps React's contract for the hooks they use:
// state kept between renders, an update to a component that is gone ignored, effects run after a
// render when their deps changed (the old one's cleanup first), every cleanup run at unmount, and
// strict mode's mount, unmount, mount again.
const host = await vi.hoisted(async () => (await import('./testing/hookHost.ts')).createHookHost())

vi.mock('react', async (original) => ({ ...(await original<typeof import('react')>()), ...host.hooks }))

/** The shared data's isic-subset folder, found as the Python tests find it: $DERMSIGHT_SHARED_DATA,
 * else `../shared/data/isic-subset` beside the repository (not relative to the working folder). */
const SHARED_DATA: string =
  import.meta.env.DERMSIGHT_SHARED_DATA ||
  decodeURIComponent(new URL('../../../shared/data/isic-subset', import.meta.url).pathname)

/** A real image of the shared data, as a data: URL; a missing one fails the tests, saying where it was looked for. */
async function sharedImage(name: string): Promise<string> {
  const path = `${SHARED_DATA}/images/${name}`
  try {
    return ((await import(/* @vite-ignore */ `${path}?inline`)) as { default: string }).default
  } catch (err) {
    throw new Error(`shared data not found: cannot read ${path} (set DERMSIGHT_SHARED_DATA to the isic-subset folder): ${String(err)}`)
  }
}

// a real dermoscopic JPEG of the shared data (9.5 KB), as a data: URL
const lesionJpeg = await sharedImage('ISIC_0000000.jpg')

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

  it('says a 413 about something else (a note too long) in its own words, without the file size', async () => {
    const file = lesion() // the real 9 KB JPEG: well under any limit
    // the clinic's visit route: the note is over NOTE_MAX (clinicFetch capitalises the detail)
    const note = new ApiError(413, 'The note is too long (2,500 characters; at most 2,000): shorten it')
    expect(tooLargeAnswer(note, file)).toBeNull()
    // a 413 about the upload's size still gets the file-size wording, whoever sent it
    expect(tooLargeAnswer(new ApiError(413, 'Upload too large: the limit is 20 MB per image'), file)).toBe(
      'The image file is too large (9 KB): this server accepts files up to 20 MB. Send a smaller copy of the photo (for example a high-quality JPEG export).',
    )
    expect(tooLargeAnswer(new ApiError(413, 'The image file is too large.'), file)).toBe('The image file is too large. This file is 9 KB.')
    expect(tooLargeAnswer(new ApiError(413, 'Request Entity Too Large'), file)).toBe('Request Entity Too Large. This file is 9 KB.')
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

describe('the blob: URLs of images shown: the upload preview (Assess page, clinic visit), API images', () => {
  const created: string[] = []
  const revoked: string[] = []

  afterEach(() => {
    vi.restoreAllMocks()
    vi.unstubAllGlobals()
    created.length = revoked.length = 0
  })

  function watchUrls() {
    const create = URL.createObjectURL.bind(URL)
    const revoke = URL.revokeObjectURL.bind(URL)
    vi.spyOn(URL, 'createObjectURL').mockImplementation((blob) => {
      const url = create(blob)
      created.push(url)
      return url
    })
    vi.spyOn(URL, 'revokeObjectURL').mockImplementation((url) => {
      revoked.push(url)
      revoke(url)
    })
  }

  /** Until `n` reads (of a file's first bytes, of an API image) have made their URL, and a little after. */
  async function reads(n: number) {
    await vi.waitFor(() => expect(created).toHaveLength(n))
    await new Promise((resolve) => setTimeout(resolve, 0))
  }

  it('releases the preview shown when the form is gone (the user went to another page)', async () => {
    watchUrls()
    const form = host.mount(() => useImageUpload())
    form.first.choose(lesion())
    await reads(1)
    const shown = form.result().preview.url
    expect(shown).toBe(created[0])
    expect(revoked).toEqual([])
    form.unmount()
    expect(revoked).toEqual([shown])
  })

  it('releases the URL of a read that ends after the form is gone', async () => {
    watchUrls()
    const form = host.mount(() => useImageUpload())
    form.first.choose(lesion())
    form.unmount() // before the file's first bytes were read
    await reads(1)
    expect(revoked).toEqual(created)
  })

  it('releases a replaced preview only once another is shown, never the one shown', async () => {
    watchUrls()
    const form = host.mount(() => useImageUpload())
    form.first.choose(lesion())
    await reads(1)
    const first = form.result()
    expect(first.preview.url).toBe(created[0])
    first.choose(new File([dataUrlBytes(lesionJpeg)], 'second.jpg', { type: 'image/jpeg' }))
    expect(revoked).toEqual([]) // still shown until the form renders the new file
    form.result()
    expect(revoked).toEqual([created[0]])
    await reads(2)
    const second = form.result()
    expect(second.preview.url).toBe(created[1])
    expect(revoked).toEqual([created[0]])
    second.clear()
    form.result()
    expect(revoked).toEqual(created)
    form.unmount()
    expect(revoked).toEqual(created) // each once
  })

  it('releases a read overtaken by another file or cleared before it ended', async () => {
    watchUrls()
    const form = host.mount(() => useImageUpload())
    const { choose, clear } = form.first
    choose(lesion())
    choose(new File([dataUrlBytes(lesionJpeg)], 'second.jpg', { type: 'image/jpeg' }))
    clear()
    await reads(2)
    expect(form.result()).toMatchObject({ file: null, preview: NO_PREVIEW })
    expect(revoked.toSorted()).toEqual(created.toSorted())
  })

  it('a kept file read again in strict mode (Assess page): one preview shown, every URL released once the page is left', async () => {
    watchUrls()
    const kept = lesion()
    const form = host.mount(() => useImageUpload(kept), true)
    await reads(2) // strict mode mounts twice: read twice, the first read is not shown
    const { preview, ready } = form.result()
    expect(ready).toBe(true)
    expect(created).toContain(preview.url)
    expect(revoked).toEqual(created.filter((u) => u !== preview.url))
    form.unmount()
    expect(revoked.toSorted()).toEqual(created.toSorted())
  })

  /** The server answers every image request with the real JPEG. */
  function serveImages() {
    const bytes = dataUrlBytes(lesionJpeg)
    vi.stubGlobal('fetch', async () => new Response(bytes, { headers: { 'Content-Type': 'image/jpeg' } }))
  }

  it('an API image (similar cases, plots): released when its path changes or goes, and not shown after', async () => {
    watchUrls()
    serveImages()
    let path: string | null = '/api/v1/reference/ISIC_0000000/thumbnail'
    const image = host.mount(() => useApiImage(path))
    await reads(1)
    expect(image.result()).toEqual({ src: created[0], failed: false })
    path = '/api/v1/reference/ISIC_0000001/thumbnail'
    // the render with the new path comes before its effect releases the old URL: not shown there either
    expect(image.result()).toEqual({ src: null, failed: false })
    expect(revoked).toEqual([created[0]])
    expect(image.result().src).toBeNull() // not the released URL while the next one loads
    await reads(2)
    expect(image.result()).toEqual({ src: created[1], failed: false })
    path = null
    expect(image.result()).toEqual({ src: null, failed: false })
    expect(revoked).toEqual(created)
    expect(image.result()).toEqual({ src: null, failed: false }) // not the released URL
    image.unmount()
    expect(revoked).toEqual(created) // each once
  })

  it('an API image: released when the page is left, also while it was loading', async () => {
    watchUrls()
    serveImages()
    const shown = host.mount(() => useApiImage('/api/v1/model/plots/roc.png'))
    await reads(1)
    expect(shown.result().src).toBe(created[0])
    shown.unmount()
    expect(revoked).toEqual([created[0]])
    const loading = host.mount(() => useApiImage('/api/v1/model/plots/calibration.png'))
    loading.unmount()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(revoked).toEqual(created)
  })
})
