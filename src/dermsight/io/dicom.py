"""DICOM dermoscopy images (as the SIIM-ISIC 2020 challenge distributes them) -> ``LesionRecord``.

* Pixel data: JPEG baseline (encapsulated, decoded by pydicom's Pillow plugin) or uncompressed
  (explicit/implicit VR little endian). Photometric interpretation YBR_FULL(_422) is converted to
  RGB by pydicom; monochrome images are repeated to three channels.
* Metadata: ``PatientAge`` ("045Y"), ``PatientSex`` ("M"/"F"), the anatomic site from
  ``BodyPartExamined`` (SIIM-ISIC writes e.g. "TORSO", "LOWER EXTREMITY", "HEAD/NECK") or the
  ``AnatomicRegionSequence`` code meaning; ``PatientID`` becomes the record's group.
* The pixel count is checked from the header (Rows x Columns x frames) *before* decoding.

``write_dicom`` writes a SIIM-ISIC-like file; tests use it to make fixtures from real images.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import taxonomy
from dermsight.io.decode import DecodeLimits, to_rgb
from dermsight.io.errors import ImageDecodeError
from dermsight.records import LesionRecord, Metadata

NO_PIXELS = "DICOM file has no image (pixel data)"

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


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImageDecodeError("reading DICOM needs pydicom: pip install pydicom") from exc
    return pydicom


def _read_dataset(data: bytes) -> Any:
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError as exc:
        raise ImageDecodeError("not a valid DICOM file (no DICM preamble)") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on corrupt files
        raise ImageDecodeError(f"corrupt DICOM file: {exc}") from exc


def _tag_str(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _site_from(ds: Any) -> str | None:
    raw = _tag_str(ds, "BodyPartExamined")
    if raw:
        return dicom_site(raw)
    seq = ds.get("AnatomicRegionSequence")
    if seq:
        meaning = _tag_str(seq[0], "CodeMeaning")
        if meaning:
            return dicom_site(meaning)
    return None


def _metadata_from(ds: Any) -> tuple[Metadata, list[str]]:
    """Metadata from the tags; a value outside the vocabulary is dropped and reported."""
    problems: list[str] = []
    age: float | None = None
    sex: str | None = None
    site: str | None = None
    try:
        age = taxonomy.normalize_age(_tag_str(ds, "PatientAge"))
    except taxonomy.TaxonomyError as exc:
        problems.append(f"PatientAge: {exc}")
    raw_sex = _tag_str(ds, "PatientSex")
    try:
        # DICOM "O" (other) is not in the vocabulary: treat it as not given.
        sex = None if raw_sex in ("O", "U") else taxonomy.normalize_sex(raw_sex)
    except taxonomy.TaxonomyError as exc:
        problems.append(f"PatientSex: {exc}")
    try:
        site = _site_from(ds)
    except taxonomy.TaxonomyError as exc:
        problems.append(f"BodyPartExamined: {exc}")
    return Metadata(age=age, sex=sex, site=site), problems


def _pixels_from(ds: Any, limits: DecodeLimits) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageDecodeError(NO_PIXELS)
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise ImageDecodeError(f"invalid DICOM image: {cols}x{rows} pixels")
    if rows * cols > limits.max_pixels:
        raise ImageDecodeError(
            f"image too large: {cols}x{rows} ({rows * cols / 1e6:.0f} megapixels, "
            f"limit {limits.max_pixels / 1e6:.0f})"
        )
    if rows * cols * frames > 4 * limits.max_pixels:
        raise ImageDecodeError(f"DICOM has too many frames ({frames}) of {cols}x{rows} pixels")
    try:
        # Only the first frame: dermoscopy is a still image.
        arr = ds.pixel_array if frames == 1 else _first_frame(ds)
    except ImageDecodeError:
        raise
    except NotImplementedError as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        raise ImageDecodeError(
            f"DICOM pixel data in {name} cannot be decoded here (JPEG baseline and "
            "uncompressed are supported)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types
        text = str(exc).lower()
        if "truncat" in text or "end of" in text or "premature" in text:
            raise ImageDecodeError("truncated DICOM: the pixel data is incomplete") from exc
        raise ImageDecodeError(f"corrupt DICOM pixel data: {exc}") from exc
    return _array_to_rgb(np.asarray(arr), ds)


def _first_frame(ds: Any) -> np.ndarray:
    from pydicom.pixels import pixel_array

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return np.asarray(pixel_array(buf, index=0))


def _array_to_rgb(arr: np.ndarray, ds: Any) -> np.ndarray:
    from PIL import Image

    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if arr.ndim == 3 and arr.shape[-1] == 3:
        if arr.dtype != np.uint8:
            hi = float(arr.max()) if arr.size else 0.0
            scale = 255.0 / hi if hi > 255 else 1.0
            arr = np.clip(arr.astype(np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if arr.ndim == 2:
        if arr.dtype == np.uint8:
            img = Image.fromarray(arr, mode="L")
            rgb = to_rgb(img)
        else:
            a = arr.astype(np.float64)
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
            rgb = np.repeat(np.clip(a + 0.5, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
        if photometric == "MONOCHROME1":
            rgb = 255 - rgb
        return rgb
    raise ImageDecodeError(f"unsupported DICOM pixel layout {arr.shape} ({photometric})")


def read_dicom_dataset(
    data: bytes, limits: DecodeLimits | None = None, *, name: str | None = None
) -> LesionRecord:
    """Decode DICOM bytes into a record. Raises ``ImageDecodeError`` for an unusable file.

    Metadata values outside the vocabulary are dropped here (the pixels are still usable);
    :func:`read_dicom`, the dataset reader, reports them in ``record.error`` instead."""
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(
            f"file too large: {len(data) / 1e6:.1f} MB (limit {limits.max_bytes / 1e6:.0f} MB)"
        )
    ds = _read_dataset(data)
    image = _pixels_from(ds, limits)
    meta, _problems = _metadata_from(ds)
    rid = name or _tag_str(ds, "SOPInstanceUID") or _tag_str(ds, "PatientID") or "dicom"
    return LesionRecord(
        id=rid, image=image, meta=meta, source="dicom", group=_tag_str(ds, "PatientID")
    )


def decode_dicom_bytes(data: bytes, limits: DecodeLimits | None = None) -> LesionRecord:
    """What ``decode_image`` calls for DICOM content: a record whose ``.image`` is RGB uint8."""
    return read_dicom_dataset(data, limits)


def read_dicom(
    path: str | os.PathLike[str], limits: DecodeLimits | None = None, *, decode: bool = True
) -> LesionRecord:
    """One DICOM file -> record (never raises for a bad file: ``error`` says why).

    The id is the file name without extension (SIIM-ISIC names files by image id). With
    ``decode=False`` only the header is read (fast; the pixels stay on disk).
    """
    limits = limits or DecodeLimits()
    p = Path(path)
    rid = p.stem
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise ImageDecodeError(
                f"file too large: {size / 1e6:.1f} MB (limit {limits.max_bytes / 1e6:.0f} MB)"
            )
        if decode:
            data = p.read_bytes()
            ds = _read_dataset(data)
        else:
            pydicom = _import_pydicom()
            try:
                ds = pydicom.dcmread(str(p), stop_before_pixels=True)
            except Exception as exc:  # noqa: BLE001
                raise ImageDecodeError(f"not a readable DICOM file: {exc}") from exc
    except FileNotFoundError:
        return LesionRecord(id=rid, image=None, path=str(p), error=f"{p.name}: file not found")
    except ImageDecodeError as exc:
        return LesionRecord(id=rid, image=None, path=str(p), error=f"{p.name}: {exc.reason}")
    except OSError as exc:
        return LesionRecord(
            id=rid, image=None, path=str(p), error=f"{p.name}: cannot read ({exc.strerror})"
        )
    meta, problems = _metadata_from(ds)
    group = _tag_str(ds, "PatientID")
    error: str | None = None
    image: np.ndarray | None = None
    if problems:
        error = f"{p.name}: " + "; ".join(problems)
    elif decode:
        try:
            image = _pixels_from(ds, limits)
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


def write_dicom(
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
