// Pure helpers (no DOM, no React) so they can be unit-tested with Vitest in Node.

/** Probability 0..1 -> "12.3%", with "<0.1%" / ">99.9%" at the ends. */
export function formatPercent(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) return '—'
  const pct = p * 100
  if (pct > 0 && pct < 0.1) return '<0.1%'
  if (pct < 100 && pct > 99.9) return '>99.9%'
  return `${pct.toFixed(1)}%`
}

/** A metric value: numbers are shown with 3 significant decimals, large counts as integers. */
export function formatNumber(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return v === null || v === undefined ? '—' : String(v)
  if (Number.isInteger(v)) return v.toLocaleString('en-US')
  if (Math.abs(v) >= 100) return v.toFixed(1)
  return v.toFixed(3)
}

export interface Interval {
  value: number
  lo?: number | null
  hi?: number | null
}

export function isInterval(v: unknown): v is Interval {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    typeof (v as { value?: unknown }).value === 'number'
  )
}

/** {value, lo, hi} -> "0.912 (0.894–0.930)". */
export function formatInterval(v: Interval): string {
  const main = formatNumber(v.value)
  if (typeof v.lo === 'number' && typeof v.hi === 'number') {
    return `${main} (${formatNumber(v.lo)}–${formatNumber(v.hi)})`
  }
  return main
}

const ACRONYMS: Record<string, string> = {
  auc: 'AUC',
  roc: 'ROC',
  ece: 'ECE',
  ood: 'OOD',
  mel: 'MEL',
  ppv: 'PPV',
  npv: 'NPV',
  f1: 'F1',
  id: 'ID',
  n: 'n',
}

const LABELS: Record<string, string> = {
  balanced_accuracy: 'Balanced accuracy',
  bacc: 'Balanced accuracy',
  accuracy: 'Accuracy',
  auc: 'ROC AUC',
  roc_auc: 'ROC AUC',
  mel_auc: 'Melanoma AUC',
  malignant_auc: 'Malignant-vs-benign AUC',
  sensitivity: 'Sensitivity',
  specificity: 'Specificity',
  ece: 'Expected calibration error',
  brier: 'Brier score',
  log_loss: 'Log loss',
  nll: 'Negative log-likelihood',
  macro_f1: 'Macro F1',
  n: 'Images (n)',
}

/** snake_case key -> human label ("balanced_accuracy" -> "Balanced accuracy"). */
export function humanize(key: string): string {
  if (LABELS[key]) return LABELS[key]
  const words = key.replace(/[_-]+/g, ' ').trim().split(/\s+/)
  const out = words.map((w, i) => {
    const lower = w.toLowerCase()
    if (ACRONYMS[lower]) return ACRONYMS[lower]
    return i === 0 ? lower.charAt(0).toUpperCase() + lower.slice(1) : lower
  })
  return out.join(' ')
}

interface ValidationItem {
  loc?: unknown[]
  msg?: string
}

/** Turn an API error body into one readable sentence. FastAPI sends {detail: string} or, for
 * validation errors, {detail: [{loc, msg}, ...]}. */
export function errorMessageFrom(status: number, body: unknown): string {
  const detail = (body as { detail?: unknown } | null)?.detail
  if (typeof detail === 'string' && detail.trim()) return detail.trim()
  if (Array.isArray(detail) && detail.length) {
    const parts = (detail as ValidationItem[]).map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc.filter((x) => x !== 'body' && x !== 'query') : []
      const field = loc.length ? String(loc[loc.length - 1]) : ''
      const msg = d.msg ?? 'invalid value'
      return field ? `${field}: ${msg}` : msg
    })
    return parts.join('; ')
  }
  switch (status) {
    case 401:
      return 'This server needs an API token.'
    case 403:
      return 'This API token is not allowed to do that.'
    case 413:
      return 'The image file is too large.'
    case 415:
      return 'This file type is not supported. Use a JPEG, PNG, WebP, BMP, TIFF or DICOM image.'
    case 422:
      return 'Some of the entered values are not valid.'
    case 429:
      return 'Too many requests. Please wait a moment and try again.'
    default:
      return status >= 500
        ? `The server had a problem (HTTP ${status}). Please try again later.`
        : `The request failed (HTTP ${status}).`
  }
}

/** The ages the server accepts, in years (dermsight.taxonomy AGE_MIN / AGE_MAX). */
export const AGE_MIN = 0
export const AGE_MAX = 120

/** Age field text -> number of years (decimals allowed: 18 months = 1.5, as the API and DICOM
 * ages), or null when empty; throws a readable message when invalid. */
export function parseAge(text: string, badInput = false): number | null {
  const t = text.trim()
  if (!t && !badInput) return null
  const n = Number(t)
  if (badInput || !Number.isFinite(n) || n < AGE_MIN || n > AGE_MAX) {
    throw new Error(`Age must be a number of years from ${AGE_MIN} to ${AGE_MAX} (e.g. 45, or 1.5 for 18 months).`)
  }
  return n
}

/** An age in years as read: under 2 years in months (DICOM "007M" = 0.5833… -> "7 months"), else
 * at most one decimal ("45.5 years"); "not stated" without one. */
export function formatAge(age: number | null | undefined): string {
  if (typeof age !== 'number' || !Number.isFinite(age) || age < 0) return 'not stated'
  if (age < 2) {
    const months = Math.round(age * 12)
    return months === 1 ? '1 month' : `${months} months`
  }
  return `${Number(age.toFixed(1))} years`
}

/** An earlier age as the age field's starting text: at most 2 decimals (0.5833… -> "0.58"). */
export function ageFieldText(age: number | null | undefined): string {
  return typeof age === 'number' && Number.isFinite(age) ? String(Math.round(age * 100) / 100) : ''
}

/**
 * What an image form may submit: its chosen file and parsed age, or the message that stops it
 * (no file chosen: `noFile`; an invalid age: `parseAge`'s message).
 */
export function checkImageForm(
  file: File | null,
  age: string,
  badInput: boolean | undefined,
  noFile: string,
): { file: File; age: number | null } | { error: string } {
  if (!file) return { error: noFile }
  try {
    return { file, age: parseAge(age, badInput) }
  } catch (err) {
    return { error: (err as Error).message }
  }
}

/** Bytes a file must offer to `isDicom` (the 128-byte preamble and the "DICM" magic). */
export const DICOM_HEAD_BYTES = 132

/**
 * Whether an upload is DICOM, which no browser can display: by its first bytes when they are known
 * (the "DICM" magic at byte 128, as the server decides), else by its MIME type or file name.
 */
export function isDicom(name: string, type: string, head?: Uint8Array | null): boolean {
  if (head) {
    // the content decides when it is known: a JPEG named ".dcm" is shown, as the server reads it
    const dicm = (at: number) =>
      head.length >= at + 4 && head[at] === 0x44 && head[at + 1] === 0x49 && head[at + 2] === 0x43 && head[at + 3] === 0x4d
    // "DICM" after the 128-byte preamble, or first in a file written without it (then the file
    // meta group, 0x0002, follows: what the server's sniff checks)
    return dicm(128) || (dicm(0) && head.length >= 6 && head[4] === 0x02 && head[5] === 0x00)
  }
  if (type.toLowerCase() === 'application/dicom') return true
  return /\.(dcm|dicom)$/i.test(name.trim())
}

/** "Age and body site are kept from the previous image." for the fields still filled in. */
export function keptSentence(age: boolean, sex: boolean, site: boolean): string {
  const names = [age && 'age', sex && 'sex', site && 'body site'].filter((n): n is string => Boolean(n))
  if (names.length === 0) return ''
  const list = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`
  const verb = names.length === 1 ? 'is' : 'are'
  return `${list.charAt(0).toUpperCase()}${list.slice(1)} ${verb} kept from the previous image.`
}

const COUNT_WORDS = ['no', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve']

/** A count in words up to twelve ("nine"), digits above. */
export function countWord(n: number): string {
  return Number.isInteger(n) && n >= 0 && n < COUNT_WORDS.length ? COUNT_WORDS[n] : String(n)
}

/** The catch-all class (taxonomy "Other / unknown"): neither a cancer nor called harmless. */
export const OTHER_CLASS = 'UNK'

/** "Three are cancers, one can turn into cancer, and four are harmless." for a model's classes
 * (the /classes flags, i.e. the card's malignant set), so the Learn page follows the model. */
export function classMixSentence(classes: { code?: string; malignant: boolean; premalignant?: boolean }[]): string {
  const cancers = classes.filter((c) => c.malignant).length
  const pre = classes.filter((c) => !c.malignant && c.premalignant).length
  const other = classes.filter((c) => !c.malignant && !c.premalignant && c.code === OTHER_CLASS).length
  const benign = classes.length - cancers - pre - other
  const parts = [
    cancers > 0 && `${countWord(cancers)} ${cancers === 1 ? 'is a cancer' : 'are cancers'}`,
    pre > 0 && `${countWord(pre)} can turn into cancer`,
    benign > 0 && `${countWord(benign)} ${benign === 1 ? 'is' : 'are'} harmless`,
    other > 0 && `${countWord(other)} ${other === 1 ? 'is' : 'are'} “other / unknown”: learned from images labelled “diagnosis unknown”, not a class for every other kind of lesion`,
  ].filter((t): t is string => Boolean(t))
  if (parts.length === 0) return ''
  const list = parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')}${parts.length > 2 ? ',' : ''} and ${parts[parts.length - 1]}`
  return `${list.charAt(0).toUpperCase()}${list.slice(1)}.`
}

/** The heatmap may arrive as bare base64 or as a data: URL. */
export function heatmapSrc(b64: string | null | undefined): string | null {
  if (!b64) return null
  return b64.startsWith('data:') ? b64 : `data:image/png;base64,${b64}`
}

/** Class codes sorted by probability, highest first (stable for ties). */
export function sortedByProbability(probs: Record<string, number>): [string, number][] {
  return Object.entries(probs)
    .filter(([, p]) => typeof p === 'number')
    .sort((a, b) => b[1] - a[1])
}

/**
 * The most probable class and its probability when the suggested class (`prediction`, chosen by
 * the model's decision rule, e.g. the balanced rule that adjusts for how common each class was in
 * training) is another one; null when they agree or nothing is known.
 */
export function mostProbableOther(prediction: string | undefined, probs: Record<string, number>): [string, number] | null {
  const top = sortedByProbability(probs)[0]
  return prediction && top && top[0] !== prediction && !(probs[prediction] >= top[1]) ? top : null
}

/** A metric with exactly 3 decimals ("0.901"), "—" when missing. */
export function format3(v: number | null | undefined): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(3) : '—'
}

/** A confidence interval "0.875–0.922", "—" when either end is missing. */
export function formatCI(lo: number | null | undefined, hi: number | null | undefined): string {
  if (typeof lo !== 'number' || typeof hi !== 'number' || !Number.isFinite(lo) || !Number.isFinite(hi)) return '—'
  return `${lo.toFixed(3)}–${hi.toFixed(3)}`
}

/** A signed difference "+0.157" / "−0.029". */
export function formatSigned(v: number | null | undefined): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—'
  const s = Math.abs(v).toFixed(3)
  if (Number(s) === 0) return s
  return v > 0 ? `+${s}` : `−${s}`
}

/** Seconds -> "42 s", "10.6 min", "1 h 12 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '—'
  if (seconds < 90) return `${Math.round(seconds)} s`
  const min = seconds / 60
  if (min < 60) return min < 10 ? `${min.toFixed(1)} min` : `${Math.round(min)} min`
  const h = Math.floor(min / 60)
  const m = Math.round(min - h * 60)
  return m === 60 ? `${h + 1} h` : m ? `${h} h ${m} min` : `${h} h`
}

/** ISO 8601 "2026-11-27T00:55:36Z" -> "2026-11-27 00:55 UTC" (no locale or time-zone shifts). */
export function formatTimestamp(iso: unknown): string {
  if (typeof iso !== 'string' || !iso.trim()) return '—'
  const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(iso.trim())
  if (!m) return iso
  const [, date, time, zone] = m
  if (!time) return date
  const tz = zone === 'Z' || zone === '+00:00' || zone === '+0000' ? ' UTC' : zone ? ` (UTC${zone})` : ''
  return `${date} ${time}${tz}`
}

/** The first letter upper-case (flag messages start lower-case, to read inside a sentence too). */
export function capitalize(s: string): string {
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s
}

/** A message as a sentence: first letter upper-case, ending with a full stop (the API's details
 * start lower-case and have no stop, to read inside a sentence too). */
export function asSentence(s: string): string {
  const t = s.trim()
  if (!t) return t
  const c = capitalize(t)
  return /[.!?…]$/.test(c) ? c : `${c}.`
}

/** A model's class probability 0..1 -> "12.3%". A softmax is never exactly 0 or 1 (the API rounds
 * to 6 decimals), so the ends read "<0.1%" / ">99.9%" rather than a certainty the model never has. */
export function formatProbability(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p) || p < 0 || p > 1) return '—'
  if (p === 0) return '<0.1%'
  if (p === 1) return '>99.9%'
  return formatPercent(p)
}

/** "9 KB", "25.8 MB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

const MIB = 1024 * 1024

/** An upload limit in words as the server's 413 says it: "20 MB", "0.05 MB" (3 significant digits). */
export function formatLimit(bytes: number): string {
  return `${Number((bytes / MIB).toPrecision(3))} MB`
}

/** What the user reads when an image file is over the server's limit (`limit` in words, e.g.
 * "20 MB"): said before the upload when the limit is known, or after the server's 413. */
export function tooLargeMessage(size: number, limit: string): string {
  return (
    `The image file is too large (${formatBytes(size)}): this server accepts files up to ${limit}. ` +
    'Send a smaller copy of the photo (for example a high-quality JPEG export).'
  )
}

/** The largest accepted file in bytes from GET /health's `max_upload_mb`; null when not known. */
export function uploadLimitBytes(maxUploadMb: unknown): number | null {
  if (typeof maxUploadMb !== 'number' || !Number.isFinite(maxUploadMb) || maxUploadMb <= 0) return null
  return Math.floor(maxUploadMb * MIB)
}

/** Why a file of `size` bytes will be refused for its size (null when it fits or the limit is not known). */
export function oversizeUpload(size: number, maxBytes: number | null): string | null {
  return maxBytes !== null && size > maxBytes ? tooLargeMessage(size, formatLimit(maxBytes)) : null
}

/** A 413 answer in words the user can act on: the limit as the server said it ("upload too large:
 * the limit is 20 MB"), with the file's own size; the server's words with the size otherwise. */
export function describeTooLarge(serverMessage: string, size: number): string {
  const limit = /limit is ([\d.]+\s*[KMG]B)/i.exec(serverMessage)?.[1]
  // older servers rounded a limit under 0.5 MB to "0 MB": not a size to tell anyone
  if (limit && Number.parseFloat(limit) > 0) return tooLargeMessage(size, limit)
  const text = asSentence(serverMessage) || 'The image file is too large.'
  return `${text} This file is ${formatBytes(size)}.`
}

/** The image formats the server reads, recognised by their first bytes exactly as the server's
 * `dermsight.io.decode.sniff` does (BMP by its DIB header size, DICOM by "DICM" at byte 128). */
export type ImageKind = 'JPEG' | 'PNG' | 'WEBP' | 'BMP' | 'TIFF' | 'DICOM'

const BMP_DIB_SIZES = new Set([12, 16, 40, 52, 56, 64, 108, 124])

function startsWith(head: Uint8Array, bytes: number[] | string, at = 0): boolean {
  const b = typeof bytes === 'string' ? [...bytes].map((ch) => ch.charCodeAt(0)) : bytes
  if (head.length < at + b.length) return false
  return b.every((v, i) => head[at + i] === v)
}

/** The accepted image format of a file's first `DICOM_HEAD_BYTES` bytes, or null. */
export function imageKind(head: Uint8Array): ImageKind | null {
  if (startsWith(head, [0xff, 0xd8, 0xff])) return 'JPEG'
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'PNG'
  if (startsWith(head, 'RIFF') && startsWith(head, 'WEBP', 8)) return 'WEBP'
  if (startsWith(head, 'BM') && head.length >= 18) {
    const dib = head[14] | (head[15] << 8) | (head[16] << 16) | (head[17] << 24)
    if (BMP_DIB_SIZES.has(dib)) return 'BMP'
  }
  if (startsWith(head, 'II*\0') || startsWith(head, 'MM\0*') || startsWith(head, 'II+\0') || startsWith(head, 'MM\0+')) {
    return 'TIFF'
  }
  if (isDicom('', '', head)) return 'DICOM'
  return null
}

const ACCEPTED_TEXT = 'JPEG, PNG, WebP, BMP, TIFF or DICOM'

/**
 * Why the server will refuse a file, from its first bytes and size, before it is sent; null when
 * it is an accepted format (the server still decides whether the picture can be assessed). The
 * server reads only the formats `imageKind` knows, so anything else is refused there too; the
 * common ones (an iPhone's HEIC, a GIF, a PDF) are named with what to send instead.
 */
export function refusedUpload(head: Uint8Array, size: number): string | null {
  if (size === 0) return 'This file is empty (0 bytes): it holds no image.'
  if (imageKind(head)) return null
  const instead = `send a ${ACCEPTED_TEXT} image`
  if (startsWith(head, 'ftyp', 4)) {
    const brands = new TextDecoder('latin1').decode(head.slice(8, 32))
    if (/avi[fs]/.test(brands)) return `AVIF files are not accepted: ${instead} (convert it to JPEG or PNG).`
    return (
      `HEIC/HEIF files (the iPhone's own format) are not accepted: ${instead} (export it as JPEG; ` +
      'on an iPhone: Settings > Camera > Formats > Most Compatible).'
    )
  }
  if (startsWith(head, 'GIF8')) return `GIF files are not accepted: ${instead}.`
  if (startsWith(head, '%PDF')) return `PDF files are not accepted: ${instead} (not a document containing one).`
  return `This file is not a ${ACCEPTED_TEXT} image, so it cannot be assessed: ${instead}.`
}

const RISKS = new Set(['high', 'moderate', 'low', 'cannot_assess'])

/**
 * Why an answer of POST /predict cannot be shown as a result (null when it can): a result needs a
 * risk, and every risk but "cannot_assess" needs the class probabilities (numbers from 0 to 1).
 * A proxy's page or an incomplete answer must never look like an assessment.
 */
export function predictionProblem(res: unknown): string | null {
  const incomplete = 'The server’s answer was incomplete, so no result is shown. Try again; if it happens again, tell the person who runs the server.'
  if (typeof res !== 'object' || res === null || Array.isArray(res)) return incomplete
  const r = res as { risk?: unknown; probabilities?: unknown }
  if (typeof r.risk !== 'string' || !RISKS.has(r.risk)) return incomplete
  if (r.risk === 'cannot_assess') return null
  const probs = r.probabilities
  if (typeof probs !== 'object' || probs === null || Array.isArray(probs)) return incomplete
  const values = Object.values(probs as Record<string, unknown>)
  if (values.length === 0 || !values.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1)) {
    return incomplete
  }
  return null
}
