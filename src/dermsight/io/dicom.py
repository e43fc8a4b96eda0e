"""DICOM dermoscopy images (as the SIIM-ISIC 2020 challenge distributes them) -> ``LesionRecord``.

* Pixel data: JPEG baseline/extended (encapsulated; the frame is decoded by dermsight's own
  bounded decoder, ``decode.decode_image``, after its SOF size is checked against Rows/Columns),
  or uncompressed (explicit/implicit VR little endian, explicit big endian; by pydicom). Other
  transfer syntaxes (JPEG 2000, JPEG-LS, RLE, lossless JPEG) are refused.
  PALETTE COLOR indices go through the file's colour lookup tables (refused without them);
  an image that uses at most 256 colours of them is refused like a palette PNG
  (``decode.check_palette``: its colours were reduced, which moves the model's answer).
  A Part 10 file without its 128-byte preamble ("DICM" first) is read as if it had one.
  Monochrome images are repeated to three channels (MONOCHROME1 inverted); the gate then
  refuses them as black and white (``greyscale``): the network reads colour.
* One frame per file: a multi-frame file (NumberOfFrames over 1, or encapsulated pixel data
  holding more than one JPEG image) is refused like an animated PNG/WebP, with a reason that
  says to send each frame as its own still image (``MULTI_FRAME``). Scoring frame 1 of N would
  answer for one view while the clinician, the CLI user and a batch row believe the whole file
  was assessed; no per-image note reaches the API, ``dermsight predict`` and batch output alike
  for pixels (the ``compressed`` note rides on the file's compression), so the file is refused
  instead. Uncompressed pixel data shorter than NumberOfFrames frames is refused as truncated
  before that (it is never read).
* Deflated Explicit VR Little Endian: inflated here, at most the upload cap (``max_bytes``),
  before pydicom sees it (a 2 MB file can otherwise inflate to gigabytes).
* Sizes come from the header (Rows, Columns, SamplesPerPixel, BitsAllocated) and pass the same
  pixel / aspect / memory limits as any image *before* decoding.
* Nothing read from a file reaches a log or an error message: every pydicom failure becomes an
  ``ImageDecodeError`` with a generic reason (a tag is named, its value never), unreadable
  metadata tags count as absent, and pydicom's logger and warnings are silenced (they quote
  values, e.g. patient names).
* Metadata: ``PatientAge`` ("045Y"), ``PatientSex`` ("M"/"F"), the anatomic site from
  ``BodyPartExamined`` (SIIM-ISIC writes e.g. "TORSO", "LOWER EXTREMITY", "HEAD/NECK") or the
  ``AnatomicRegionSequence`` code meaning. The record's group is a pseudonym of ``PatientID``
  (``patient_pseudonym``), never the PatientID itself, which is typically a hospital record
  number; PatientName and PatientBirthDate are not read.

``write_dicom`` writes a SIIM-ISIC-like file; tests use it to make fixtures from real images.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import taxonomy
from dermsight.io.budget import decode_budget
from dermsight.io.decode import (
    EMPTY_FILE,
    DecodeLimits,
    check_dimensions,
    check_palette,
    decode_image,
    reduce_factor,
    sniff,
    to_rgb,
)
from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import read_regular_file
from dermsight.io.headers import jpeg_frame
from dermsight.io.quiet import silence_logger
from dermsight.io.sizes import size_pair, size_text, too_large_text
from dermsight.records import IGNORED, LesionRecord, Metadata

NO_PIXELS = "DICOM file has no image (pixel data)"
TRUNCATED = "truncated DICOM: the pixel data is incomplete"
#: the Pixel Data element's tag (7FE0,0010), little and big endian
_PIXEL_DATA_TAGS = re.compile(
    re.escape(b"\xe0\x7f\x10\x00") + b"|" + re.escape(b"\x7f\xe0\x00\x10"))

#: The reason a multi-frame file is refused (``{frames}``: how many it holds).
MULTI_FRAME = ("multi-frame DICOM files are not accepted (this one holds {frames} frames): "
               "send each frame as its own still image (a single-frame DICOM, JPEG or PNG)")

#: Spellings of the anatomic site met in DICOM tags (upper case, "_" and "/" kept) that
#: ``taxonomy.normalize_site`` does not know by itself.
DICOM_SITE_ALIASES: dict[str, str | None] = {
    "HEAD NECK": "head/neck",
    "HEADNECK": "head/neck",
    "HEAD": "head/neck",
    "NECK": "head/neck",
    "FACE": "head/neck",
    "SCALP": "head/neck",
    "EAR": "head/neck",
    "TRUNK": "torso",
    "CHEST": "anterior torso",
    "ABDOMEN": "anterior torso",
    "BACK": "posterior torso",
    "ARM": "upper extremity",
    "UPPER LIMB": "upper extremity",
    "UPPEREXTREMITY": "upper extremity",
    "HAND": "upper extremity",
    "LEG": "lower extremity",
    "LOWER LIMB": "lower extremity",
    "LOWEREXTREMITY": "lower extremity",
    "FOOT": "lower extremity",
    "EXTREMITY": None,  # which limb is not said
    "PALM": "palms/soles",
    "SOLE": "palms/soles",
    "PALMS SOLES": "palms/soles",
    "ACRAL": "palms/soles",
    "ORAL GENITAL": "oral/genital",
    "GENITAL": "oral/genital",
    "MOUTH": "oral/genital",
    "SKIN": None,
    "UNKNOWN": None,
}

#: dermsight site -> what ``write_dicom`` puts in BodyPartExamined (SIIM-ISIC style).
_SITE_TO_DICOM: dict[str, str] = {
    "anterior torso": "ANTERIOR TORSO",
    "posterior torso": "POSTERIOR TORSO",
    "lateral torso": "LATERAL TORSO",
    "torso": "TORSO",
    "head/neck": "HEAD/NECK",
    "upper extremity": "UPPER EXTREMITY",
    "lower extremity": "LOWER EXTREMITY",
    "palms/soles": "PALMS/SOLES",
    "oral/genital": "ORAL/GENITAL",
}


def dicom_site(value: object) -> str | None:
    """A DICOM body-part string -> dermsight site (None if absent); raises ``TaxonomyError``."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return taxonomy.normalize_site(text)
    except taxonomy.TaxonomyError:
        key = " ".join(text.upper().replace("_", " ").replace("/", " ").replace("-", " ").split())
        if key in DICOM_SITE_ALIASES:
            return DICOM_SITE_ALIASES[key]
        raise


_QUIET = False


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImageDecodeError("reading DICOM needs pydicom: pip install pydicom") from exc
    global _QUIET
    if not _QUIET:
        _quiet_pydicom(pydicom)
        _QUIET = True
    return pydicom


def _quiet_pydicom(pydicom: Any) -> None:
    """pydicom's log records and warnings quote tag values (names, IDs: PHI) when a file is
    odd: drop them all, and do not validate values while reading (we check what we use)."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    # "pydicom" and its children ("pydicom.pixels.utils", ...): nothing is emitted, nothing
    # reaches the application's handlers (a logger's filter alone would not stop children)
    silence_logger("pydicom")
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def _inflate_if_deflated(data: bytes, limits: DecodeLimits) -> bytes:
    """A Deflated Explicit VR Little Endian file -> the same file, inflated (at most
    ``limits.max_bytes``, the upload cap, so deflate never buys an attacker more than a plain
    upload) and re-labelled Explicit VR Little Endian; any other file unchanged."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    if len(data) < 132 or data[128:132] != b"DICM":
        return data
    fp = io.BytesIO(data)
    fp.seek(132)
    meta = _read_file_meta_info(fp)
    if str(meta.get("TransferSyntaxUID", "")) != DeflatedExplicitVRLittleEndian:
        return data
    start = fp.tell()
    cap = limits.max_bytes
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(data[start:], cap + 1)
    except zlib.error as exc:
        raise ImageDecodeError("corrupt DICOM file: the deflated data set cannot be read") \
            from exc
    if len(body) > cap or inflater.unconsumed_tail:
        raise ImageDecodeError(
            "DICOM deflated data set is too large once decompressed "
            f"(limit {size_text(cap)})"
        )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=False)
    return data[:132] + out.getvalue() + body


def _read_dataset(data: bytes, limits: DecodeLimits, *, header_only: bool = False) -> Any:
    """Parse DICOM bytes. Every failure becomes an ``ImageDecodeError`` with a generic reason:
    pydicom's own messages can quote tag values (PHI) and never reach a log or a client."""
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError

    if not data:
        raise ImageDecodeError(EMPTY_FILE)
    if data[:4] == b"DICM" and data[128:132] != b"DICM":
        # a Part 10 file written without its 128-byte preamble (some exporters do): the
        # preamble carries nothing, so give it one rather than refuse the file
        data = bytes(128) + data
    try:
        data = _inflate_if_deflated(data, limits)
        ds = pydicom.dcmread(io.BytesIO(data), force=False, stop_before_pixels=header_only)
    except ImageDecodeError:
        raise
    except InvalidDicomError as exc:
        raise ImageDecodeError("not a valid DICOM file (no DICM preamble)") from exc
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise ImageDecodeError("corrupt DICOM file: the header cannot be read") from exc
    if not header_only and "PixelData" not in ds and _PIXEL_DATA_TAGS.search(data, 132):
        # pydicom stops quietly at an element cut short: the file ends inside its pixel data
        raise ImageDecodeError(TRUNCATED)
    return ds


def _tag_str(ds: Any, keyword: str) -> str | None:
    """A tag as text; None when absent or unreadable (a value with the wrong VR or length)."""
    try:
        value = ds.get(keyword)
        if value is None:
            return None
        text = str(value).strip()
    except Exception:  # noqa: BLE001 - pydicom converts lazily and raises many types
        return None
    return text or None


#: hashed before each PatientID (``patient_pseudonym``): a fixed, public prefix, not a secret
_PSEUDONYM_PREFIX = "dermsight-dicom-group\0"


def patient_pseudonym(patient_id: str) -> str:
    """The group of a DICOM file whose PatientID is ``patient_id``: ``dcm-`` and the first 16 hex
    digits of the SHA-256 of ``"dermsight-dicom-group\\0" + patient_id``. Records, batch output
    rows and listings carry this, never the PatientID (typically a hospital record number).

    It is deterministic: the same PatientID gives the same group in every run and on every
    machine, so one patient's images stay in one group (group-aware splits and bootstrap
    intervals hold them together) and groups match across runs. It is a pseudonym, not
    anonymisation: there is no secret key, so whoever has a list of record numbers, or tries every
    number of a short format, can tell whose images a group holds; outputs that carry it are
    still personal data."""
    digest = hashlib.sha256((_PSEUDONYM_PREFIX + patient_id).encode("utf-8", "surrogatepass"))
    return "dcm-" + digest.hexdigest()[:16]


def _patient_group(ds: Any) -> str | None:
    """A dataset's group: the pseudonym of its PatientID (``patient_pseudonym``); None without
    a PatientID (absent, empty or unreadable)."""
    patient_id = _tag_str(ds, "PatientID")
    return None if patient_id is None else patient_pseudonym(patient_id)


def _tag_int(ds: Any, keyword: str, default: int) -> int:
    """An integer tag (US / IS); ``ImageDecodeError`` naming the tag (never its value)."""
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return default
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            raise ValueError("several values")
        number = int(str(value).strip())
    except Exception as exc:
        raise ImageDecodeError(f"invalid DICOM header: {keyword} is not a valid number") \
            from exc
    return number


def site_tag(ds: Any) -> tuple[str | None, str | None]:
    """A DICOM dataset's body site as ``(site, raw_text)``: ``raw_text`` is the file's own words
    (``BodyPartExamined``, else the first ``AnatomicRegionSequence`` item's ``CodeMeaning``;
    None: none), ``site`` what they read as (``dicom_site``; None when there are no words or
    they are outside the vocabulary). Never raises."""
    raw = _tag_str(ds, "BodyPartExamined")
    if not raw:
        try:
            seq = ds.get("AnatomicRegionSequence")
            first = seq[0] if seq else None
        except Exception:  # noqa: BLE001 - an unreadable sequence is no site
            first = None
        raw = None if first is None else _tag_str(first, "CodeMeaning")
    try:
        return dicom_site(raw), raw
    except taxonomy.TaxonomyError:
        return None, raw


def _metadata_from(ds: Any) -> tuple[Metadata, list[str]]:
    """Metadata from the tags; a value outside the vocabulary is dropped and reported (the
    ``Metadata.notes`` say which fields were dropped, without the values, and
    ``Metadata.invalid`` names them: counted as invalid, not as missing)."""
    problems: list[str] = []
    age: float | None = None
    sex: str | None = None
    site: str | None = None
    try:
        age = taxonomy.normalize_dicom_age(_tag_str(ds, "PatientAge"))
    except taxonomy.TaxonomyError as exc:
        problems.append(f"PatientAge: {exc}")
    raw_sex = _tag_str(ds, "PatientSex")
    try:
        # DICOM "O" (other) is not in the vocabulary: treat it as not given.
        sex = None if raw_sex in ("O", "U") else taxonomy.normalize_sex(raw_sex)
    except taxonomy.TaxonomyError as exc:
        problems.append(f"PatientSex: {exc}")
    try:
        site = dicom_site(site_tag(ds)[1])  # raises for words outside the vocabulary
    except taxonomy.TaxonomyError as exc:
        problems.append(f"BodyPartExamined: {exc}")
    fields = {"PatientAge": "age", "PatientSex": "sex", "BodyPartExamined": "site"}
    bad = tuple(fields[p.split(":")[0]] for p in problems)  # given, but not usable
    notes = tuple((name, IGNORED) for name in bad)
    return Metadata(age=age, sex=sex, site=site, notes=notes, invalid=bad), problems


#: Transfer syntaxes whose pixel data this reader decodes.
_JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _transfer_syntax(ds: Any) -> str:
    try:
        return str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001 - no file meta: pydicom guessed a native syntax
        return "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class _Layout:
    """What the header says of the pixel data (checked: ``_layout``)."""

    rows: int
    cols: int
    frames: int  # NumberOfFrames
    spp: int  # SamplesPerPixel
    bits: int  # BitsAllocated
    photometric: str  # PhotometricInterpretation, upper case ("" when absent)

    def native_bytes(self, frames: int = 1) -> int:
        """The bytes ``frames`` uncompressed frames take (1-bit samples are packed across frame
        boundaries; uncompressed 4:2:2 holds two chroma samples per two pixels)."""
        pixels = self.rows * self.cols
        if self.bits == 1:
            return -(-pixels * frames // 8)
        if self.spp == 3 and self.bits == 8 and self.photometric == "YBR_FULL_422":
            return pixels * 2 * frames
        return pixels * self.spp * (self.bits // 8) * frames


def _layout(ds: Any, limits: DecodeLimits) -> _Layout:
    """The pixel layout from the header, refused unless dermsight reads it within ``limits``."""
    layout = _Layout(rows=_tag_int(ds, "Rows", 0), cols=_tag_int(ds, "Columns", 0),
                     frames=_tag_int(ds, "NumberOfFrames", 1),
                     spp=_tag_int(ds, "SamplesPerPixel", 1), bits=_tag_int(ds, "BitsAllocated", 8),
                     photometric=(_tag_str(ds, "PhotometricInterpretation") or "").upper())
    if layout.frames < 1:
        raise ImageDecodeError("invalid DICOM header: NumberOfFrames is not a valid number")
    if layout.spp not in (1, 3) or layout.bits not in (1, 8, 16, 32):
        raise ImageDecodeError(f"unsupported DICOM pixel layout ({layout.spp} samples of "
                               f"{layout.bits} bits per pixel)")
    check_dimensions(layout.cols, layout.rows, limits, "DICOM image")
    return layout


def _pixels_from(ds: Any, limits: DecodeLimits) -> tuple[np.ndarray, bytes | None]:
    """The image as RGB uint8 (a multi-frame file is refused), every size checked from the
    header before decoding, and the encapsulated JPEG frame it was decoded from (``None`` for
    uncompressed pixel data)."""
    try:
        has_pixels = "PixelData" in ds
        other = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
    except Exception as exc:
        raise ImageDecodeError("corrupt DICOM file: the header cannot be read") from exc
    if not has_pixels:
        if other:
            raise ImageDecodeError("DICOM float pixel data is not supported: send 8/16-bit "
                                   "images")
        raise ImageDecodeError(NO_PIXELS)
    layout = _layout(ds, limits)
    syntax = _transfer_syntax(ds)
    try:
        raw = ds["PixelData"].value
        if not isinstance(raw, (bytes, bytearray)):
            raise TypeError("pixel data is not bytes")
    except Exception as exc:
        raise ImageDecodeError("corrupt DICOM pixel data: it cannot be read") from exc
    frame: bytes | None = None
    if syntax in _JPEG_SYNTAXES:
        rgb, frame = _jpeg_pixels(bytes(raw), layout, limits)
    elif syntax in _NATIVE_SYNTAXES:
        rgb = _native_pixels(ds, len(raw), layout, limits)
    else:
        name = _syntax_name(syntax)
        raise ImageDecodeError(
            f"DICOM pixel data in {name} cannot be decoded here (JPEG baseline and "
            "uncompressed are supported)"
        )
    return _shrink_array(rgb, limits), frame


def _jpeg_pixels(raw: bytes, layout: _Layout, limits: DecodeLimits) -> tuple[np.ndarray, bytes]:
    """Encapsulated JPEG pixel data -> RGB and the JPEG frame it was decoded from."""
    _check_one_frame(max(layout.frames, _encapsulated_images(raw)))
    frame = _only_jpeg_frame(raw, layout.rows, layout.cols)
    try:
        rgb = decode_image(frame, limits)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"DICOM pixel data: {exc.reason}") from exc
    if layout.photometric == "MONOCHROME1":
        rgb = 255 - rgb
    return rgb, frame


def _native_pixels(ds: Any, size: int, layout: _Layout, limits: DecodeLimits) -> np.ndarray:
    """Uncompressed pixel data of ``size`` bytes -> RGB, by pydicom, within the memory limits."""
    # every frame the header declares must be there: a short file is refused as truncated
    # (never read), whatever its frame count
    if size < layout.native_bytes(layout.frames):
        raise ImageDecodeError(TRUNCATED)
    _check_one_frame(layout.frames)
    need = layout.native_bytes()
    if need * 3 > limits.max_decode_bytes:
        cost, cap = size_pair(need * 3, limits.max_decode_bytes)
        raise ImageDecodeError(
            f"image too large: this {layout.cols}x{layout.rows} DICOM image needs about "
            f"{cost} to decode (limit {cap})")
    # a palette image expands to 3 samples of up to 16 bits per index
    palette = layout.photometric == "PALETTE COLOR"
    with decode_budget().reserve(layout.rows * layout.cols * 6 + need if palette else need * 3):
        return _array_to_rgb(_native_frame(ds), ds)


def _syntax_name(syntax: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(syntax).name
    except Exception:  # noqa: BLE001
        name = ""
    # a registered name, or the UID itself when it only holds digits and dots
    if name and name != syntax:
        return str(name)
    return syntax if all(c.isdigit() or c == "." for c in syntax[:64]) else "an unknown syntax"


def _check_one_frame(frames: int) -> None:
    """Refuse a multi-frame file (see the module's docstring for why it is not scored on its
    first frame)."""
    if frames > 1:
        raise ImageDecodeError(MULTI_FRAME.format(frames=frames))


def _encapsulated_images(raw: bytes) -> int:
    """How many JPEG images encapsulated pixel data holds, whatever NumberOfFrames says: the
    entries of its basic offset table, or else the fragments that start a JPEG image (SOI; a
    frame split into several fragments starts only one). 0 when it cannot be parsed (reading
    the frame then reports it)."""
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    try:
        buffer = io.BytesIO(raw)
        offsets = parse_basic_offsets(buffer)
        starts = sum(1 for fragment in generate_fragments(buffer)
                     if bytes(fragment[:2]) == b"\xff\xd8")
    except Exception:  # noqa: BLE001 - bad item tags and lengths: reported when read
        return 0
    return max(len(offsets), starts)


def _only_jpeg_frame(raw: bytes, rows: int, cols: int) -> bytes:
    """The (only) encapsulated JPEG frame, checked against Rows/Columns from its own frame
    header (it is then decoded by dermsight's bounded decoder, never by pydicom)."""
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(raw, number_of_frames=1))
    except Exception as exc:  # bad item tags, offsets, ...
        raise ImageDecodeError("corrupt DICOM pixel data: the encapsulated frame cannot be read") \
            from exc
    if sniff(frame) != "JPEG":
        raise ImageDecodeError("corrupt DICOM pixel data: the frame is not a JPEG image")
    head = jpeg_frame(frame)
    if head is None:
        raise ImageDecodeError("corrupt DICOM pixel data: the JPEG frame has no size")
    if (head.width, head.height) != (cols, rows):
        raise ImageDecodeError(
            f"corrupt DICOM: the JPEG frame is {head.width}x{head.height} pixels but the "
            f"header says {cols}x{rows}")
    return bytes(frame)


def _native_frame(ds: Any) -> np.ndarray:
    try:
        ds.pixel_array_options(index=0)
        return np.asarray(ds.pixel_array)
    except ImageDecodeError:
        raise
    except Exception as exc:  # decoder errors come in many types
        raise ImageDecodeError("corrupt DICOM pixel data: it cannot be decoded") from exc


def _shrink_array(rgb: np.ndarray, limits: DecodeLimits) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = reduce_factor(h * w, limits.work_pixels)
    if f <= 1:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").reduce(f))


def _array_to_rgb(arr: np.ndarray, ds: Any) -> np.ndarray:
    from PIL import Image

    photometric = (_tag_str(ds, "PhotometricInterpretation") or "").upper()
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        arr = _apply_palette(arr, ds)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            # the range BitsStored declares maps to 0-255 (as a 16-bit PNG's does): stretching
            # to the image's own maximum would silently brighten a dark photograph
            width = arr.dtype.itemsize * 8
            stored = min(max(_tag_int(ds, "BitsStored", width), 8), width)
            scale = 255.0 / float(2**stored - 1)
            arr = np.clip(arr.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if arr.ndim == 2:
        if arr.dtype == np.uint8:
            rgb = to_rgb(Image.fromarray(arr, mode="L"))
        else:
            a = arr.astype(np.float32)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            rgb = np.repeat(np.clip(a + 0.5, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
        if photometric == "MONOCHROME1":
            rgb = 255 - rgb
        return rgb
    raise ImageDecodeError(f"unsupported DICOM pixel layout {arr.shape} ({photometric[:16]})")


def _apply_palette(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Palette indices -> RGB uint8 through the file's colour lookup tables (the indices alone
    are no image: shown as grey levels they would be silently wrong)."""
    from pydicom.pixels import apply_color_lut

    try:
        rgb = np.asarray(apply_color_lut(arr, ds))
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    except Exception as exc:
        raise ImageDecodeError(
            "DICOM PALETTE COLOR image without usable colour lookup tables: send it as RGB"
        ) from exc
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageDecodeError(
            "DICOM PALETTE COLOR image without usable colour lookup tables: send it as RGB")
    if bits > 8:
        rgb = rgb >> (bits - 8)
    rgb = np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8))
    # at most 256 colours used, not all grey: reduced like a palette PNG, refused as one
    check_palette(np.unique(arr).size <= 256 and bool(np.any(rgb != rgb[..., :1])),
                  "DICOM image (PALETTE COLOR)")
    return rgb


def read_dicom_dataset(
    data: bytes, limits: DecodeLimits | None = None, *, name: str | None = None
) -> LesionRecord:
    """Decode DICOM bytes into a record. Raises ``ImageDecodeError`` for an unusable file.

    Metadata values outside the vocabulary are dropped and noted in ``record.meta.notes`` (the
    pixels are still usable), here and in :func:`read_dicom`, the dataset reader."""
    return decode_dicom_upload(data, limits, name=name)[0]


def decode_dicom_upload(
    data: bytes, limits: DecodeLimits | None = None, *, name: str | None = None
) -> tuple[LesionRecord, bytes | None]:
    """``read_dicom_dataset``'s record and the encapsulated JPEG frame its pixels were decoded
    from (``None`` for uncompressed pixel data): the frame's header says how much the image was
    compressed (``dermsight.compression.inspect``)."""
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(too_large_text(len(data), limits.max_bytes))
    try:
        ds = _read_dataset(data, limits)
        image, frame = _pixels_from(ds, limits)
        meta, _problems = _metadata_from(ds)
        group = _patient_group(ds)  # never the PatientID itself, nor is the id
        rid = name or _tag_str(ds, "SOPInstanceUID") or group or "dicom"
    except ImageDecodeError:
        raise
    except Exception as exc:  # last line: pydicom raises lazily, many types
        raise ImageDecodeError("corrupt DICOM file: it cannot be read") from exc
    return LesionRecord(id=rid, image=image, meta=meta, source="dicom", group=group), frame


def decode_dicom_bytes(data: bytes, limits: DecodeLimits | None = None) -> LesionRecord:
    """What ``decode_image`` calls for DICOM content: a record whose ``.image`` is RGB uint8."""
    return read_dicom_dataset(data, limits)


def read_dicom(
    path: str | os.PathLike[str], limits: DecodeLimits | None = None, *, decode: bool = True
) -> LesionRecord:
    """One DICOM file -> record (never raises for a bad file: ``error`` says why).

    The id is the file name without extension (SIIM-ISIC names files by image id). With
    ``decode=False`` only the header is read (fast; the pixels stay on disk; a multi-frame
    file already gets its ``error``).
    """
    limits = limits or DecodeLimits()
    p = Path(path)
    rid = p.stem
    why: str | None = None
    try:
        # regular files only (a FIFO named x.dcm must not block), at most max_bytes
        ds = _read_dataset(read_regular_file(p, limits.max_bytes), limits, header_only=not decode)
    except FileNotFoundError:
        why = "file not found"
    except ImageDecodeError as exc:
        why = exc.reason
    except OSError as exc:
        why = f"cannot read ({exc.strerror})"
    if why is not None:  # the DICOM reader's row, as every other row of a DICOM folder
        return LesionRecord(id=rid, image=None, source="dicom", path=str(p),
                            error=f"{p.name}: {why}")
    # tag values that cannot be used are dropped and noted (the metadata_ignored flag), as for
    # the same file sent to predict or the API: the image is still scored
    meta, _problems = _metadata_from(ds)
    group = _patient_group(ds)  # a pseudonym, never the PatientID itself
    error: str | None = None
    image: np.ndarray | None = None
    try:
        if decode:
            image = _pixels_from(ds, limits)[0]
        else:  # a listing says which files will be refused, as far as the header tells
            _check_one_frame(_tag_int(ds, "NumberOfFrames", 1))
    except ImageDecodeError as exc:
        error = f"{p.name}: {exc.reason}"
    return LesionRecord(
        id=rid, image=image, meta=meta, source="dicom", path=str(p), group=group, error=error
    )


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # 4:2:2 chroma subsampling matches PhotometricInterpretation YBR_FULL_422.
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", quality=quality, subsampling=1)
    return buf.getvalue()


# ruff noqa below: test-data writer: one tag after another.
def write_dicom(  # noqa: PLR0913, PLR0915
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    age: float | None = None,
    sex: str | None = None,
    site: str | None = None,
    *,
    jpeg: bool = True,
    quality: int = 95,
    patient_id: str | None = None,
    pixels: bool = True,
) -> Path:
    """Write a SIIM-ISIC-like dermoscopy DICOM (JPEG baseline encapsulated, or uncompressed).

    ``sex`` is 'male'/'female' (written M/F), ``site`` a dermsight site (written upper case in
    BodyPartExamined, e.g. "HEAD/NECK"), ``age`` in years (written "045Y"). ``pixels=False``
    writes a header-only file (a test fixture for "no pixel data").
    """
    pydicom = _import_pydicom()
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    rgb = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_dicom needs an (H, W, 3) uint8 array, got {rgb.shape}")
    p = Path(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if (jpeg and pixels) else ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID

    ds = FileDataset(str(p), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "XC"  # external-camera photography, as SIIM-ISIC files say
    ds.PatientName = p.stem
    ds.PatientID = patient_id or f"IP_{p.stem}"
    ds.StudyDescription = "ISIC dermoscopy"
    if age is not None:
        ds.PatientAge = f"{int(round(age)):03d}Y"
    if sex is not None:
        norm = taxonomy.normalize_sex(sex)
        ds.PatientSex = {"male": "M", "female": "F"}.get(norm or "", "O")
    if site is not None:
        norm_site = taxonomy.normalize_site(site)
        if norm_site:
            with warnings.catch_warnings():
                # "/" is outside the CS character set, but it is what SIIM-ISIC files carry.
                warnings.simplefilter("ignore")
                ds.BodyPartExamined = _SITE_TO_DICOM[norm_site]
    if pixels:
        h, w, _ = rgb.shape
        ds.Rows, ds.Columns = h, w
        ds.SamplesPerPixel = 3
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PlanarConfiguration = 0
        if jpeg:
            from pydicom.encaps import encapsulate

            ds.PhotometricInterpretation = "YBR_FULL_422"
            ds.LossyImageCompression = "01"
            ds.PixelData = encapsulate([_encode_jpeg(rgb, quality)])
            ds["PixelData"].VR = "OB"
        else:
            ds.PhotometricInterpretation = "RGB"
            ds.PixelData = rgb.tobytes()
    ds.save_as(str(p), enforce_file_format=True)
    return p


#: Deflated Explicit VR Little Endian, as a DICOM file's meta group writes it
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"


def dicom_group(file: str, limits: DecodeLimits) -> str | None:
    """The group of the DICOM file ``file``: the pseudonym of its PatientID (``read_dicom``'s
    group, ``patient_pseudonym``; never the PatientID itself), for the DICOM files a CSV lists
    (``csvfolder``), read from its header alone: the elements before it are stepped
    over, the pixels are not read, so that a listing reads a few kB of each file however large
    it is. None for a file that is not a regular file, is over ``limits.max_bytes`` or cannot
    be opened (decoding it says why); a file this does not read so (deflated, without its
    preamble, not DICOM) is read as the folder reader reads its header
    (``read_dicom(decode=False)``), whole."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:  # not blocking on a FIFO named x.dcm
        fd = os.open(file, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limits.max_bytes:
                return None
            os.set_blocking(fd, True)
            head = fh.read(144)  # preamble, DICM, the file meta group's length (0002,0000)
            if head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
                raise ValueError("no preamble or no file meta group length")
            meta = fh.read(min(int.from_bytes(head[140:144], "little"), 1 << 16))
            if _DEFLATED_UID in meta:  # read_dicom inflates it within limits; pydicom would not
                raise ValueError("deflated")
            fh.seek(0)
            pydicom = _import_pydicom()
            ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=["PatientID"])
        except Exception:  # noqa: BLE001 - read as the folder reader reads it, below
            ds = None
    if ds is None:
        return read_dicom(file, limits, decode=False).group
    return _patient_group(ds)
