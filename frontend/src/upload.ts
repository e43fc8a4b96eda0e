// The one check of an image before it is uploaded, shared by the Assess page and the clinic's
// visit form: the chosen file, its preview (read from its first bytes), and why it would be refused
// (empty, not an image format the server reads, over the server's upload limit from GET /health),
// in the same words on both forms; and the server's 413, said the same way when the limit was not
// known before sending.

import { useCallback, useEffect, useState } from 'react'
import { ApiError } from './api.ts'
import { DICOM_HEAD_BYTES, describeTooLarge, isDicom, oversizeUpload, refusedUpload, uploadLimitBytes } from './format.ts'
import { useHealth } from './health.ts'

/** The heading a refused file's reason is shown under, on both forms. */
export const REFUSED_TITLE = 'This file cannot be assessed.'

/** How the chosen file can be shown: a blob: URL, or none (DICOM, which no browser displays). */
export interface Preview {
  url: string | null
  dicom: boolean
  /** why the server will refuse this file (empty, or not an accepted image format), read from its first bytes */
  refused: string | null
  /** the file's first bytes are still being read (a few milliseconds): not known yet whether it is refused */
  pending: boolean
}

export const NO_PREVIEW: Preview = { url: null, dicom: false, refused: null, pending: false }

/** A first guess from the file's name and type, before its bytes are read. */
export function guessPreview(f: File): Preview {
  return { url: null, dicom: isDicom(f.name, f.type), refused: null, pending: true }
}

/** The file's first bytes decide (DICOM: "DICM" at byte 128; a format the server refuses: no
 * preview, and why); a blob: URL for anything else. */
export async function settlePreview(f: File): Promise<Preview> {
  let head: Uint8Array
  try {
    head = new Uint8Array(await f.slice(0, DICOM_HEAD_BYTES).arrayBuffer())
  } catch {
    const dicom = isDicom(f.name, f.type)
    return { url: dicom ? null : URL.createObjectURL(f), dicom, refused: null, pending: false }
  }
  const refused = refusedUpload(head, f.size)
  if (refused) return { url: null, dicom: false, refused, pending: false }
  const dicom = isDicom(f.name, f.type, head)
  return { url: dicom ? null : URL.createObjectURL(f), dicom, refused: null, pending: false }
}

/**
 * Why `file` cannot be sent (null: it can, or nothing is chosen): what its first bytes say
 * (`preview.refused`: empty, or not an image format the server reads), else its size against the
 * server's limit (`maxBytes`, from GET /health; null when not known: the server's 413 decides).
 */
export function uploadRefusal(file: File | null, preview: Preview, maxBytes: number | null): string | null {
  if (!file) return null
  return preview.refused ?? oversizeUpload(file.size, maxBytes)
}

/** Whether a 413's detail is about the size of the upload (the server's "upload too large: the
 * limit is 20 MB per image", a proxy's "Request Entity Too Large", none at all), not about
 * another part of the request, such as the clinic's "the note is too long (2,500 characters; at
 * most 2,000): shorten it", where the image's size is beside the point. */
export function isUploadSizeRefusal(message: string): boolean {
  return /too large|entity|limit is [\d.]+\s*[KMG]?B/i.test(message)
}

/** A failed upload of `file` that the server refused as too large (a 413 about the upload's
 * size), in the words of the check before sending; null for any other failure, also a 413 about
 * something else (a note too long), whose own message says what to change. */
export function tooLargeAnswer(err: unknown, file: File): string | null {
  if (!(err instanceof ApiError) || err.status !== 413 || !isUploadSizeRefusal(err.message)) return null
  return describeTooLarge(err.message, file.size)
}

export interface ImageUpload {
  file: File | null
  preview: Preview
  /** why the chosen file cannot be sent (see `uploadRefusal`); null when it can */
  refused: string | null
  /** a file is chosen, its first bytes are read and nothing refuses it: it may be sent */
  ready: boolean
  /** a new file: its preview is guessed from its name, then decided by its first bytes */
  choose: (f: File) => void
  /** no file (a new case, a saved visit) */
  clear: () => void
}

/**
 * Which read of a form's file may still show its preview. Each chosen file starts a read
 * (`begin`); only the latest read shows its preview (`accept`), and only while the form is there:
 * the blob: URL of any other (its file replaced or cleared meanwhile, or the form gone, e.g. the
 * user left the page, before the file's first bytes were read) is released, as nothing will ever
 * show it.
 */
export class PreviewReads {
  private latest = 0

  /** A new read: earlier ones still running will not be shown. Returns its number. */
  begin(): number {
    return ++this.latest
  }

  /** No file any more (cleared), or no form (unmounted): reads still running will not be shown. */
  cancel(): void {
    this.latest++
  }

  /** Whether read `pick`'s preview `p` is shown; when not, its blob: URL is released. */
  accept(pick: number, p: Preview): boolean {
    if (pick === this.latest) return true
    if (p.url) URL.revokeObjectURL(p.url)
    return false
  }
}

/** The image of a form (Assess, a clinic visit) and whether it may be sent; `initial`: a file
 * chosen before (the Assess page's kept case), read again. Every blob: URL is released: the one
 * shown once the form shows another or none, or is gone (unmount); one never shown (a file
 * replaced, cleared, or the form gone before its first bytes were read) when its read ends. */
export function useImageUpload(initial: File | null = null): ImageUpload {
  const maxBytes = uploadLimitBytes(useHealth().data?.max_upload_mb)
  const [file, setFile] = useState<File | null>(initial)
  const [preview, setPreview] = useState<Preview>(() => (initial ? guessPreview(initial) : NO_PREVIEW))
  const [reads] = useState(() => new PreviewReads()) // which late answer of the content check is shown

  // the form is gone: a read still running releases its URL when it ends
  useEffect(() => () => reads.cancel(), [reads])

  // the URL shown is released after the form shows another or none, or is gone
  useEffect(() => {
    return () => {
      if (preview.url) URL.revokeObjectURL(preview.url)
    }
  }, [preview.url])

  const show = useCallback(
    (f: File) => {
      const pick = reads.begin()
      setPreview(guessPreview(f))
      void settlePreview(f).then((p) => {
        if (reads.accept(pick, p)) setPreview(p)
      })
    },
    [reads],
  )

  // a file kept from before is read again (its earlier blob: URL was released)
  useEffect(() => {
    if (initial) show(initial)
  }, [initial, show])

  const choose = useCallback(
    (f: File) => {
      setFile(f)
      show(f)
    },
    [show],
  )

  const clear = useCallback(() => {
    reads.cancel()
    setFile(null)
    setPreview(NO_PREVIEW)
  }, [reads])

  const refused = uploadRefusal(file, preview, maxBytes)
  return { file, preview, refused, ready: file !== null && refused === null && !preview.pending, choose, clear }
}
