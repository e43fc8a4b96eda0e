"""The facade: ``Dermsight.load()`` then ``.predict(image, age=, sex=, site=)``.

Runs on ONNX Runtime only (no torch). It holds the one path from an input to an answer; the web
API, ``dermsight predict`` and batch scoring all take it:

* ``decode``: bytes / a file path / an array -> RGB pixels + ``Metadata`` (a DICOM file's tags
  fill the fields the caller left empty; the caller's values win) + the file's compression
  (``DecodedImage``);
* ``prepare_image``: preprocessing, metadata encoding, the quality part of the gate and the
  ``compressed`` note, per image (``PreparedImage``; batch scoring runs this in worker threads);
* ``assess``: one ONNX Runtime call for a batch of prepared images, then temperature scaling, the
  malignant sum, the card's decision rule, the out-of-distribution gate, the metadata flags and
  the risk tier (or "cannot assess"), all for the whole batch at once (``Assessment``: arrays,
  one row per image).

``predict`` / ``predict_batch`` turn an ``Assessment`` into ``Prediction`` objects; batch scoring
(``dermsight.batch.scorer``) turns it into output rows, without re-computing any of it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from dermsight import camgrid, gate, heatmap, taxonomy
from dermsight.bundle import FEATURES_OUTPUT, Bundle, check_features, load_bundle
from dermsight.compression import Compression, compression_flags
from dermsight.compression import inspect as inspect_compression
from dermsight.io.decode import (
    OPAQUE_ALPHA,
    DecodeLimits,
    check_transparency,
    decode_image,
    pil_to_rgb,
    sniff,
)
from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import read_regular_file
from dermsight.malignancy import malignant_probability
from dermsight.metaflags import metadata_flags
from dermsight.onnxsession import ModelSession, threads_refusal
from dermsight.preprocess import encode_meta, preprocess
from dermsight.records import Metadata
from dermsight.similar import ReferenceSet, SimilarCase

if TYPE_CHECKING:  # pragma: no cover - pandas is imported only by a caller that has a frame
    import pandas as pd

#: What ``predict`` takes as an image: a file path, the file's bytes, an RGB array or a Pillow
#: image (read as its file would be: ``io.decode.pil_to_rgb``).
ImageInput = str | os.PathLike[str] | bytes | np.ndarray | Image.Image

DISCLAIMER = (
    "Decision support only, not a diagnosis. A dermatologist must examine any lesion that "
    "worries you or the patient."
)

UNRELIABLE_NOTE = (
    "The image could not be assessed (see flags), so these numbers are not a valid result: the "
    "model computed them on an image it is not built for. Do not use them."
)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


CANNOT_ASSESS = "cannot_assess"

#: A "cannot assess" ``Prediction``'s fields that are not a result (the API withholds them too)
_WITHHELD = ("probabilities", "prediction", "decision_rule", "malignant_probability")
CANNOT_ASSESS_REPR = (
    "the image could not be assessed (see flags); its probabilities, suggested class and "
    "malignant probability are not valid and are left out here (.to_dict()['unreliable'] "
    "holds them, with a note)"
)


@dataclass(frozen=True)
class DecodedImage:
    """One input as ``Dermsight.decode`` read it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    meta: Metadata  # as given, DICOM tags filling what was left empty
    compression: Compression | None = None  # what the file's header says (JPEG / WebP only)


@dataclass
class PreparedImage:
    """One decoded image made ready for the network (everything done per image before it)."""

    x: np.ndarray  # (3, S, S) float32: the network's image input
    m: np.ndarray  # (D,) float32: the encoded metadata
    meta: Metadata
    flags: list[gate.Flag]  # the quality part of the gate
    quality: np.ndarray  # the gate.QualityStats vector (gate v2 uses it)


@dataclass
class Assessment:
    """The answers for a batch of images as arrays, row ``i`` for image ``i``: everything after
    the network, computed once for the batch. ``Prediction`` objects and batch scoring's output
    rows are both read from it."""

    classes: list[str]
    probabilities: np.ndarray  # (N, C) calibrated (temperature-scaled)
    malignant: np.ndarray  # (N,) P(malignant): the sum over the card's malignant classes
    top: np.ndarray  # (N,) index of the suggested class (the card's decision rule)
    flags: list[list[gate.Flag]]  # quality, out-of-distribution, then metadata flags
    ood_scores: list[float | None]
    risks: list[str]  # the tier, or "cannot_assess" when a flag blocks
    cams: np.ndarray  # (N, C, h, w) raw class activation maps
    embeddings: np.ndarray | None = None  # (N, F) pooled features (similar cases)

    def __len__(self) -> int:
        return len(self.risks)

    def prediction(self, i: int) -> str:
        return self.classes[int(self.top[i])]

    def assessable(self, i: int) -> bool:
        """False when the gate refused image ``i``: no valid result, no heatmap."""
        return self.risks[i] != CANNOT_ASSESS

    def cam(self, i: int) -> np.ndarray:
        """The raw class activation map of image ``i``'s suggested class."""
        return self.cams[i, int(self.top[i])]


@dataclass
class Prediction:
    """One image's answer (``Dermsight.predict``). Decision support only, not a diagnosis.

    CHECK ``assessable`` FIRST. When it is False (``risk`` is ``cannot_assess``: the gate
    refused the image, e.g. not a dermoscopic image, black and white, far too small) there is NO
    result: ``probabilities``, ``prediction``, ``decision_rule`` and ``malignant_probability``
    still hold the numbers the network computed on an image it is not built for, and they must
    not be shown or used as a diagnosis, a suggested class or a risk (the API and ``dermsight
    predict`` withhold them: ``to_dict()`` puts them under ``unreliable`` with a note, and this
    object's ``repr`` leaves them out). Show ``flags`` (why) instead.

    When ``assessable``: ``probabilities`` (calibrated, by class code), ``prediction`` (the
    suggested class, by the bundle's ``decision_rule``), ``malignant_probability``, ``risk``
    (``high`` / ``moderate`` / ``low``), ``flags`` (the non-blocking notes), ``cam`` (the
    heatmap's [0, 1] map, None without ``heatmap=True``; always None for a "cannot assess"
    result), ``meta`` (the metadata as used). ``to_dict()`` is the API's JSON answer;
    ``overlay_png()`` the heatmap on the image.

    ``image`` (the decoded RGB input, as the heatmap is drawn on it) is kept only when a heatmap
    was asked for (``heatmap=True``: predict's default, not predict_batch's), whether or not one
    could be drawn; otherwise it is None, so a list of results does not hold every image
    (``Dermsight.load_image`` gives an input's pixels).

    ``timing_ms``: the milliseconds this answer took, decoding to the finished result (the
    heatmap included). ``predict_batch`` runs its images together, so there it is each image's
    share: the batch's common time (decoding, preparing and the network run of all its images)
    divided by their number, plus the time of that image's own heatmap and result; the
    results' ``timing_ms`` add up to about the batch's time.

    ``==`` compares the answer: every field but ``timing_ms``, ``cam``, ``image`` and
    ``embedding`` (so the same image given as a path, its bytes or a Pillow image compares
    equal when the answers are equal, with or without a heatmap)."""

    probabilities: dict[str, float]
    prediction: str
    malignant_probability: float
    risk: str  # "high" | "moderate" | "low" | "cannot_assess"
    flags: list[gate.Flag]
    model: dict[str, str]
    meta: Metadata
    #: milliseconds this answer took (in ``predict_batch``: this image's share of the batch)
    timing_ms: float = field(compare=False)
    #: [0, 1] map for the predicted class over the whole image
    cam: np.ndarray | None = field(default=None, repr=False, compare=False)
    ood_score: float | None = None
    #: the decoded RGB input: only with ``heatmap=True`` (for ``overlay_png``), else None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: how ``prediction`` was chosen from ``probabilities`` (the bundle's decision rule)
    decision_rule: str = "most probable class"
    #: the pooled features (``Dermsight.similar`` finds the reference images nearest to them)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the sha256 of the ONNX network that computed them (``similar`` refuses another's)
    network_sha256: str | None = field(default=None, repr=False)
    #: the model card's ``status``: ``"trained"``, or ``"not validated"`` (``bundle.NOT_VALIDATED``:
    #: its own test figures do not show that it works; research use only); None when the card
    #: has none
    model_status: str | None = None

    @property
    def assessable(self) -> bool:
        """False when the gate refused the image: its numbers must not be shown as valid."""
        return self.risk != CANNOT_ASSESS

    def __repr__(self) -> str:
        """The dataclass's fields; for a "cannot assess" result without the numbers (the
        probabilities, suggested class, decision rule and malignant probability), which are
        not a result, and saying so."""
        hidden = () if self.assessable else _WITHHELD
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.repr and f.name not in hidden)
        if hidden:
            shown = f"NOT A RESULT: {CANNOT_ASSESS_REPR}, {shown}"
        return f"{type(self).__name__}({shown})"

    def to_dict(self, heatmap_png: bool = True) -> dict[str, Any]:
        """The JSON form (the API's response). For a "cannot assess" result the class
        probabilities, suggested class and malignant probability are NOT at the top level: they
        sit under ``unreliable`` with a note, and there is no heatmap. ``heatmap`` (with
        ``heatmap_png`` and a ``cam``) is the API's: a base64 PNG of the map with its aspect,
        ``heatmap.PNG_PX`` (112) px on the long side, to stretch over the whole image."""
        answer: dict[str, Any] = {
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "prediction": self.prediction,
            "prediction_name": taxonomy.BY_CODE[self.prediction].name,
            "decision_rule": self.decision_rule,
            "malignant_probability": round(self.malignant_probability, 6),
        }
        d: dict[str, Any] = {
            "risk": self.risk,
            "flags": [f.to_dict() for f in self.flags],
            "ood_score": None if self.ood_score is None else round(self.ood_score, 4),
            "model": self.model,
            "model_status": self.model_status,
            "input": self.meta.as_dict(),
            "timing_ms": round(self.timing_ms, 2),
            "disclaimer": DISCLAIMER,
        }
        if not self.assessable:
            d["unreliable"] = {"note": UNRELIABLE_NOTE, **answer}
            return d
        d.update(answer)
        if heatmap_png and self.cam is not None:
            d["heatmap"] = heatmap.heatmap_base64(self.cam, heatmap.PNG_PX)
        return d

    def overlay_png(self, alpha: float = 0.45) -> bytes:
        """The input image with the heatmap blended on top (``alpha``: its opacity where it is
        hottest, 0-1), as PNG bytes. A ``ValueError`` saying why when there is nothing to
        overlay: no heatmap (``heatmap=False``, or a "cannot assess" result) or no image."""
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or \
                not 0 <= alpha <= 1:
            raise ValueError(f"overlay_png: alpha must be a number from 0 to 1, not {alpha!r}")
        if not self.assessable:
            raise ValueError("no heatmap to overlay: the image could not be assessed (see flags)")
        if self.cam is None:
            raise ValueError(_NO_OVERLAY)
        if self.image is None:
            raise ValueError("no image to overlay the heatmap on: this result does not hold its "
                             "input (image is None)")
        return heatmap.png_bytes(heatmap.overlay(self.image, self.cam, alpha))


def _pixels_0_255(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as uint8: other dtypes only with values 0-255, never silently rescaled or wrapped
    (a float image scaled to 0-1, as scikit-image gives it, would become black; a 16-bit one
    would wrap around)."""
    if rgb.dtype == np.uint8:
        return rgb
    if rgb.dtype.kind not in "uif":
        raise ValueError(f"expected a uint8 RGB array, got dtype {rgb.dtype}")
    if rgb.size and not np.all(np.isfinite(rgb)):
        raise ValueError("the array holds NaN or infinite values: expected RGB pixels 0-255")
    lo, hi = (float(rgb.min()), float(rgb.max())) if rgb.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise ValueError(f"expected RGB pixel values 0-255 (uint8), got {lo:g} to {hi:g}: "
                         "convert the image to 8 bits first")
    if rgb.dtype.kind == "f" and 0 < hi <= 1:
        raise ValueError(f"the {rgb.dtype} array looks scaled to 0-1 (max {hi:g}): multiply by "
                         "255 (or use skimage.util.img_as_ubyte) to give uint8 pixels 0-255")
    return np.rint(rgb).astype(np.uint8)


def _check_alpha(alpha: np.ndarray) -> None:
    """An RGBA array's alpha channel, refused as a Pillow RGBA image's is (``io.decode``'s
    rule): more than ``MAX_TRANSPARENT_SHARE`` of the pixels below ``OPAQUE_ALPHA``. The alpha
    is read on its own scale, not the RGB's: 0-255, except a float alpha whose max is at most 1,
    which is 0-1 (``np.dstack([rgb, np.ones(...)])`` is opaque)."""
    if alpha.dtype.kind not in "uif":
        raise ValueError(f"expected a numeric alpha channel (the array's 4th), got dtype "
                         f"{alpha.dtype}")
    a = alpha.astype(np.float64, copy=False)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError("the alpha channel (the array's 4th) holds NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise ValueError(f"expected alpha values 0-255 (or 0-1 in a float array) in the "
                         f"array's 4th channel, got {lo:g} to {hi:g}")
    if alpha.dtype.kind == "f" and hi <= 1:
        a = a * 255
    transparent = np.count_nonzero(np.rint(a) < OPAQUE_ALPHA)
    check_transparency(float(transparent) / max(1, a.size))


_NO_OVERLAY = ("no heatmap to overlay: predict with heatmap=True (predict's default; "
               "predict_batch's is False); with heatmap=False a result keeps neither the "
               "heatmap nor the image")


def _check_switch(value: object, name: str, where: str) -> bool:
    """``predict``'s ``heatmap`` / ``tta``: True or False (a numpy bool too), never a truthy
    string such as "no"."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False, not {value!r}")


def _named(info: Mapping[str, str]) -> str:
    return f"{info.get('name')!r} version {info.get('version')!r}"


def _as_metadata(meta: object, what: str = "each meta") -> Metadata | None:
    """One of ``predict_batch``'s ``metas`` (or ``predict``'s ``meta``) as ``Metadata``: a dict
    is parsed as ``predict`` parses its keyword arguments (an unknown key is a
    ``TaxonomyError`` naming it); a ``Metadata`` is checked and normalised the same way (one
    built by hand may hold anything: ``Metadata(sex="man")``, ``Metadata(age=np.int64(5))``),
    its notes kept."""
    if meta is None:
        return None
    if isinstance(meta, Metadata):
        return Metadata.parse_given(meta.age, meta.sex, meta.site).noted(*meta.notes)
    if isinstance(meta, Mapping):
        unknown = sorted(str(k) for k in meta if k not in ("age", "sex", "site"))
        if unknown:
            raise taxonomy.TaxonomyError(f"unknown metadata field {', '.join(unknown)}: "
                                         "give age, sex and site")
        return Metadata.parse_given(**meta)
    raise TypeError(f"{what} must be a dict of age/sex/site, a dermsight.records.Metadata or "
                    f"None, not {type(meta).__name__}")


def _one_input(image: object) -> bool:
    """True for what is one image, not a collection of them (``predict_batch`` would read a
    path's characters, a file's bytes or an array's rows as images)."""
    return isinstance(image, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)) or (
        isinstance(image, np.ndarray) and image.ndim != 4)


#: the columns a ``predict_batch`` metas DataFrame may have
_META_COLUMNS = ("age", "sex", "site")


def _frame_records(frame: Any) -> list[dict[str, object]] | None:
    """A pandas DataFrame of ``metas`` as one dict per row (its ``age`` / ``sex`` / ``site``
    columns; any other column is a ``TaxonomyError`` naming it); None for anything else.
    Iterating a frame would give its column names, not its rows. pandas is not imported here:
    a DataFrame exists only where the caller imported it."""
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(frame, pandas.DataFrame):
        return None
    unknown = [str(c) for c in frame.columns if c not in _META_COLUMNS]
    if unknown:
        raise taxonomy.TaxonomyError(
            f"predict_batch: metas is a DataFrame with the column(s) {', '.join(unknown)}: "
            "give it only the columns age, sex and site (one row per image), e.g. "
            "df[['age', 'sex', 'site']]")
    if not frame.columns.is_unique:
        raise taxonomy.TaxonomyError("predict_batch: metas is a DataFrame with a column "
                                     "twice: give age, sex and site once each")
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _batch_list(items: object, what: str) -> list[Any]:
    """``predict_batch``'s ``images`` or ``metas`` as a list: any iterable (a list, a tuple, a
    generator, a pandas Series, an (N, H, W, 3) array), but not one image or one meta; a
    DataFrame of metas gives one dict per row (``_frame_records``)."""
    if what == "metas" and (records := _frame_records(items)) is not None:
        return records
    one = _one_input(items) if what == "images" else isinstance(items, (Mapping, Metadata, str))
    if one or not isinstance(items, Iterable):
        kind = "image" if what == "images" else "meta"
        raise TypeError(f"predict_batch: {what} must be a list (or another iterable) with one "
                        f"{kind} per entry, not {type(items).__name__}"
                        + (" (for one image use predict)" if what == "images" else ""))
    return list(items)


def _describe(image: object) -> str:
    """How an error names a ``predict_batch`` input: its path, or what it is."""
    if isinstance(image, (str, os.PathLike)):
        return os.fsdecode(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"{memoryview(image).nbytes} bytes"
    if isinstance(image, np.ndarray):
        return f"array of shape {image.shape}"
    if isinstance(image, Image.Image):
        return f"Pillow image {image.width}x{image.height}"
    return type(image).__name__


def _which(exc: Exception, where: str) -> Exception:
    """``exc`` with ``where`` (which input of a batch) before its message, same type."""
    if isinstance(exc, ImageDecodeError):
        return ImageDecodeError(f"{where}: {exc.reason}")
    if type(exc) in (TypeError, ValueError, taxonomy.TaxonomyError):
        return type(exc)(f"{where}: {exc}")
    return exc


def _check_threads(threads: object) -> None:
    """``Dermsight``'s ``threads``: None or a count (0: ONNX Runtime's own choice)."""
    if threads is None:
        return
    message = (f"threads must be a whole number of threads (1 or more; 0 or None: ONNX "
               f"Runtime's own choice), not {threads!r}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(message)
    if threads < 0:
        raise ValueError(message)
    if (why := threads_refusal(int(threads))) is not None:  # before ONNX Runtime starts them
        raise ValueError(why)


class Dermsight:
    """A loaded model bundle, ready to predict: ``Dermsight()`` (the shipped default model),
    ``Dermsight("bundles/clinic-a")`` (a bundle folder) or ``Dermsight(load_bundle(...))``;
    ``threads``: ONNX Runtime threads per run (None or 0: ONNX Runtime's own choice; more than
    ``onnxsession.max_threads()``, 4 per CPU core and at least 64, is a ``ValueError``).

    ``predict`` (one image) and ``predict_batch`` (many, one network run) give ``Prediction``
    objects; ``similar`` the reference images nearest to one. One instance may be shared by
    threads (the answers are those of a sequential run); pickled (for a process pool) it is
    loaded again from its bundle folder in the other process."""

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> None:
        _check_threads(threads)  # before the bundle is loaded and checked
        if not isinstance(bundle, Bundle):
            if bundle is not None and not isinstance(bundle, (str, os.PathLike)):
                raise TypeError(f"expected a bundle folder (path), a loaded Bundle or None (the "
                                f"shipped default model), not {type(bundle).__name__}")
            bundle = load_bundle(None if bundle is None else Path(bundle))
        self.bundle = bundle
        self.card = bundle.card
        self.session = ModelSession(bundle.onnx_path, threads)
        # a gate or reference set of other features than the network's: every request would fail
        check_features(bundle, self.session.output_dim(FEATURES_OUTPUT, 1),
                       self.session.output_dim("logits", 1))
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.classes: list[str] = list(self.card.classes)
        self.limits = DecodeLimits()

    def __repr__(self) -> str:
        return f"Dermsight({_named(self.info)}, bundle={str(self.bundle.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # an ONNX Runtime session cannot be pickled: the other process loads the bundle again
        return type(self), (self.bundle.path, self.session.threads), {"limits": self.limits}

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None,
             threads: int | None = None) -> Dermsight:
        """Load a bundle folder; with no path, the default model shipped in the package (the
        same as ``Dermsight(path)``, with the same checks: anything else is a ``TypeError``
        saying what is accepted)."""
        return cls(path, threads=threads)

    def adapt(self, data: str | os.PathLike[str], out: str | os.PathLike[str], name: str, *,
              seed: int = 0) -> Dermsight:
        """This model with a clinic's local update of its suggested class, fitted on the
        clinic's labelled cases in ``data`` and checked on them first (``dermsight bundle
        adapt``, :mod:`dermsight.local_update`); the adapted bundle is written to ``out``.
        Raises ``local_update.UpdateRefused`` (with the figures) when the cases do not support
        an update. Needs scikit-learn (extra ``[train]``)."""
        from dermsight.local_update import adapt

        return Dermsight.load(adapt(data, out, name, bundle=self.bundle.path, seed=seed).bundle)

    @cached_property
    def reference(self) -> ReferenceSet | None:
        """The bundle's similar-cases reference set (None without one), loaded on first use."""
        return ReferenceSet.load(self.bundle.path)

    def similar(self, prediction: Prediction, k: int = 5) -> list[SimilarCase]:
        """The ``k`` reference images nearest to a result by the model's own features (visually
        similar to the model, not a diagnosis), most similar first; at most as many as the
        reference set holds; an empty list for a "cannot assess" result or a bundle without a
        reference set. ``k``: a whole number, at least 1. A result of another network (another
        ``model.onnx``; a bundle that only differs in its card is fine) is a ``ValueError``: its
        features are not this model's."""
        if not isinstance(prediction, Prediction):
            raise TypeError(f"similar: expected a Prediction (from this model's predict), not "
                            f"{type(prediction).__name__}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"similar: k must be a whole number, not {type(k).__name__}")
        if k < 1:
            raise ValueError(f"similar: k must be at least 1, got {k}")
        if prediction.network_sha256 not in (None, self.card.onnx_sha256):
            raise ValueError(f"similar: this result is from model {_named(prediction.model)}, "
                             f"whose network is not this model's ({_named(self.info)}): its "
                             "features cannot be compared; predict with this model first")
        if not prediction.assessable or prediction.embedding is None or self.reference is None:
            return []
        return self.reference.nearest(prediction.embedding, int(k))

    @property
    def info(self) -> dict[str, str]:
        """The bundle's name and version (a ``Prediction``'s ``model``)."""
        return {"name": self.card.name, "version": self.card.version}

    # -- arrays in, arrays out -----------------------------------------------------------------

    def run_arrays(
        self, x: np.ndarray, meta: np.ndarray, tta: bool = False
    ) -> dict[str, np.ndarray]:
        """(N,3,S,S) float32 + (N,D) float32 -> logits (N,C), cam (N,C,h,w), embedding (N,F).

        With ``tta`` the logits and maps are averaged over the 8 flips/rotations of the input.
        """
        x = np.ascontiguousarray(x, np.float32)
        meta = np.ascontiguousarray(meta, np.float32)
        if not tta:
            out = dict(zip(self._outputs, self.session.run(None, {"image": x, "meta": meta}),
                           strict=True))
            return self._finish(out)
        acc: dict[str, np.ndarray] = {}
        for k in range(8):
            xt = np.rot90(x, k % 4, axes=(2, 3))
            if k >= 4:
                xt = xt[:, :, :, ::-1]
            o = dict(zip(self._outputs, self.session.run(
                None, {"image": np.ascontiguousarray(xt), "meta": meta}), strict=True))
            cam = o["cam"]
            if k >= 4:
                cam = cam[:, :, :, ::-1]
            o["cam"] = np.rot90(cam, -(k % 4), axes=(2, 3))
            o = self._finish(o)
            for name, v in o.items():
                acc[name] = acc.get(name, 0) + v / 8.0
        return acc

    @staticmethod
    def _finish(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = {"logits": out["logits"], "cam": out["cam"]}
        res["embedding"] = out[FEATURES_OUTPUT].mean(axis=(2, 3))
        return res

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities from logits (the card's temperature)."""
        return softmax(logits, self.card.temperature)

    def malignant(self, probs: np.ndarray) -> np.ndarray:
        """P(malignant) per row: the card's malignant classes, as a share of the classes not in
        its ``malignant_excluded`` (:mod:`dermsight.malignancy`)."""
        p = malignant_probability(probs, self.classes, self.card.malignant,
                                  self.card.malignant_excluded)
        return np.zeros(len(probs)) if p is None else p

    def prepare(self, image: np.ndarray, meta: Metadata | None) -> tuple[np.ndarray, np.ndarray]:
        """The network's two inputs for one RGB image: (3, S, S) image, (D,) metadata."""
        return preprocess(image, self.card.input_spec), encode_meta(meta, self.card.meta_spec)

    def prepare_image(self, image: np.ndarray, meta: Metadata,
                      compression: Compression | None = None) -> PreparedImage:
        """Preprocess one RGB image and its metadata and run the quality checks on it (with the
        non-blocking ``compressed`` note when its file's ``compression`` calls for one)."""
        x, m = self.prepare(image, meta)
        flags, quality = gate.quality_gate(image, self.card.gate)
        flags += compression_flags(compression, self.card.gate)
        return PreparedImage(x=x, m=m, meta=meta, flags=flags, quality=quality)

    def assess(self, images: Sequence[PreparedImage], tta: bool = False) -> Assessment:
        """Run the network on prepared images (at least one) and everything after it: one
        ONNX Runtime call, then calibration, malignant sum, decision rule, gate and tier for the
        whole batch."""
        out = self.run_arrays(np.stack([p.x for p in images]), np.stack([p.m for p in images]),
                              tta=tta)
        probs = self.probabilities(out["logits"])
        p_mal = self.malignant(probs)
        ood = gate.ood_flags(out["embedding"], self.card.gate, self.bundle.gate_arrays,
                             np.stack([p.quality for p in images]))
        flags = [[*p.flags, *ood_flags, *metadata_flags(p.meta)]  # metadata: non-blocking notes
                 for p, (ood_flags, _) in zip(images, ood, strict=True)]
        tier = self.card.thresholds.tier
        risks = [CANNOT_ASSESS if any(f.blocking for f in fl) else tier(float(pm))
                 for fl, pm in zip(flags, p_mal, strict=True)]
        return Assessment(
            classes=self.classes, probabilities=probs, malignant=p_mal,
            top=np.asarray(self.card.decision.choose(probs, self.classes)),
            flags=flags, ood_scores=[score for _, score in ood], risks=risks, cams=out["cam"],
            embeddings=out["embedding"],
        )

    # -- high level ---------------------------------------------------------------------------

    def decode(self, image: ImageInput, meta: Metadata | None = None) -> DecodedImage:
        """The RGB pixels, the metadata and the file's compression of one input (bytes, a file
        path, an array or a Pillow image; an array or a Pillow image has no file, so no
        compression; a DICOM file's is its JPEG
        frame's, none for uncompressed pixel data).

        A DICOM file's tags (age, sex, site) fill the fields ``meta`` leaves empty; the values
        given win. Raises ``ImageDecodeError`` for an input that cannot be used.
        """
        meta = meta if meta is not None else Metadata()
        if isinstance(image, (np.ndarray, Image.Image)):
            return DecodedImage(self.load_image(image), meta)
        if isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            if not os.fspath(image):  # Path("") is the current folder
                raise ImageDecodeError("no file name: the path is an empty string")
            if isinstance(image, str) and "://" in image and not os.path.lexists(image):
                raise ImageDecodeError(f"{image} is a URL: predict reads local files only; "
                                       "download it first (dermsight batch reads URLs)")
            # regular files only (a FIFO named x.jpg must not block), at most the byte cap
            data = read_regular_file(image, self.limits.max_bytes)
        else:
            raise TypeError(f"expected an image as a file path, bytes, an (H, W, 3) uint8 RGB "
                            f"array or a Pillow image, not {type(image).__name__}")
        if sniff(data) != "DICOM":
            return DecodedImage(decode_image(data, self.limits), meta, inspect_compression(data))
        from dermsight.io.dicom import decode_dicom_upload

        record, frame = decode_dicom_upload(data, self.limits)
        if record.image is None:  # pragma: no cover - the reader raises instead
            raise ImageDecodeError("DICOM file has no image (pixel data)")
        compression = inspect_compression(frame) if frame is not None else None
        if compression is not None:
            compression = replace(compression, format="DICOM JPEG")
        return DecodedImage(record.image, meta.fill_from(record.meta), compression)

    def load_image(self, image: ImageInput) -> np.ndarray:
        """The RGB pixels of one input (see ``decode``, which also returns its metadata).

        An array is (H, W) or (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA, in that channel order
        (OpenCV's ``cv2.imread`` gives BGR / BGRA: convert it with ``cv2.cvtColor`` first),
        pixels 0-255. An RGBA array is held to a Pillow image's transparency rule: more than
        ``MAX_TRANSPARENT_SHARE`` of its pixels with alpha below ``OPAQUE_ALPHA`` raises
        ``ImageDecodeError``; otherwise its alpha is dropped. The alpha has its own scale:
        0-255, or 0-1 in a float array whose alpha is at most 1 (so an opaque alpha of 1.0
        beside float RGB 0-255 is accepted)."""
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = image[:, :, None]
            if image.ndim == 3 and image.shape[2] == 1:  # grey, as OpenCV / scikit-image give it
                image = np.repeat(image, 3, axis=2)
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"expected an (H, W, 3) RGB array (or (H, W) / (H, W, 1) grey, "
                                 f"(H, W, 4) RGBA), got shape {image.shape}")
            if not image.shape[0] or not image.shape[1]:
                raise ValueError(f"the array has no pixels (shape {image.shape})")
            rgb = _pixels_0_255(image[:, :, :3])
            if image.shape[2] == 4:
                _check_alpha(image[:, :, 3])
            return np.ascontiguousarray(rgb)
        if isinstance(image, Image.Image):
            return pil_to_rgb(image, self.limits)
        return self.decode(image).rgb

    # ruff noqa below: public API: positional order kept.
    def predict(  # noqa: PLR0917
        self,
        image: ImageInput,
        age: object = None,
        sex: object = None,
        site: object = None,
        heatmap: bool = True,
        tta: bool = False,
        meta: Metadata | Mapping[str, object] | None = None,
    ) -> Prediction:
        """Classify one lesion image. Bad input raises ``ImageDecodeError`` (a file, bytes, a
        Pillow image or an RGBA array that cannot be used, e.g. transparent), ``TaxonomyError``
        (age / sex / site), ``ValueError`` (an array that is not RGB pixels 0-255) or
        ``TypeError`` (not an image input).

        ``image``: a file path, the file's bytes, a Pillow image (read as its file would be: EXIF
        orientation, transparency refused, 16-bit scaled) or an array. An array must be uint8 in
        RGB (or RGBA) channel order (OpenCV's ``cv2.imread`` gives BGR / BGRA: convert it with
        ``cv2.cvtColor`` first): recoloured images are answered wrongly and the gate refuses
        only some of them. An RGBA array's transparency is refused as a Pillow image's is
        (``load_image``).

        ``age`` (years 0-120: a number or a numeric string), ``sex`` and ``site`` take the same
        vocabulary as the API and ``dermsight predict`` (``taxonomy.normalize_sex`` /
        ``normalize_site``: any case, "F", "back", "head_neck", "head and neck", "arm", ...;
        None, ``pd.NA``, a float NaN (an empty cell as ``pd.read_csv`` reads it, as
        ``dermsight batch`` reads one), "" or "unknown" = not given; a placeholder string,
        "NaN", "none", "null", "N/A", ..., is also read as not given, with the non-blocking
        ``metadata_ignored`` note the API and CLI give it); numpy scalars read as their
        values. ``meta`` (a ``Metadata`` or a dict of age / sex / site, checked the same way)
        gives them in one object instead: not both.
        Either wins over a DICOM file's tags (see ``decode``).

        ``heatmap``: compute ``cam`` (assessable results only) and keep the decoded ``image``
        for ``overlay_png`` (without it the result holds neither). ``tta``: average the answer
        over the 8 flips/rotations (8x the compute); the heatmap is still drawn from the image
        as given (for a square image with the averaged map mixed in: ``camgrid.class_map``).
        Both are True or False (anything else, e.g. the string "no", is a ``TypeError``).
        """
        t0 = time.perf_counter()
        heatmap = _check_switch(heatmap, "heatmap", "predict")
        tta = _check_switch(tta, "tta", "predict")
        if meta is not None and any(v is not None for v in (age, sex, site)):
            raise TypeError("predict: give meta or age/sex/site, not both (meta would win and "
                            "the others would be dropped)")
        meta = _as_metadata(meta, "predict: meta") or Metadata.parse_given(age, sex, site)
        d = self.decode(image, meta)
        item = self.prepare_image(d.rgb, d.meta, d.compression)
        result = self.assess([item], tta=tta)
        return self._prediction(d.rgb, item, result, 0, heatmap,
                                (time.perf_counter() - t0) * 1000.0)

    def predict_batch(
        self,
        images: Iterable[ImageInput],
        metas: Iterable[Metadata | Mapping[str, object] | None] | pd.DataFrame | None = None,
        heatmap: bool = False,
        tta: bool = False,
    ) -> list[Prediction]:
        """Classify many images in one ONNX call, one ``Prediction`` per image in input order.

        ``images``: a list (or any iterable: a generator, a tuple, an (N, H, W, 3) array) of
        what ``predict`` takes, kinds mixed as you like; an empty one gives ``[]``. ``metas``:
        one per image, each a ``Metadata``, a dict of ``age`` / ``sex`` / ``site`` (read as
        ``predict`` reads them) or None. ``heatmap`` is off by default here (so the results
        hold no ``image`` either). ``metas`` may also be a pandas DataFrame with columns
        ``age`` / ``sex`` / ``site`` (some of them), one row per image: each row is read as
        that dict (an empty cell, NaN, is not given).

        Each result's ``timing_ms`` is that image's share of the batch's time, not the time
        since the batch started: the common time (decoding, preparing and the network run)
        divided by the number of images, plus its own heatmap's; they add up to about the
        batch's time.

        Every image must decode: one that does not raises before the network runs, its
        ``ImageDecodeError`` / ``ValueError`` / ``TypeError`` naming it ("image 3 of 10
        (scans/x.jpg): not an image"); ``dermsight batch`` keeps going and writes an error row
        instead."""
        t0 = time.perf_counter()
        heatmap = _check_switch(heatmap, "heatmap", "predict_batch")
        tta = _check_switch(tta, "tta", "predict_batch")
        images = _batch_list(images, "images")
        if not images:
            return []
        metas = _batch_list(metas, "metas") if metas is not None else [None] * len(images)
        if len(metas) != len(images):
            raise ValueError(f"predict_batch: {len(images)} images but {len(metas)} metas "
                             "(one per image, None where there is none)")
        decoded = [self._decode_nth(i, len(images), im, mt)
                   for i, (im, mt) in enumerate(zip(images, metas, strict=True))]
        items = [self.prepare_image(d.rgb, d.meta, d.compression) for d in decoded]
        result = self.assess(items, tta=tta)
        # the time all images shared, split evenly; each adds its own heatmap and result
        share_ms = (time.perf_counter() - t0) * 1000.0 / len(items)
        return [self._prediction(d.rgb, item, result, i, heatmap, share_ms)
                for i, (d, item) in enumerate(zip(decoded, items, strict=True))]

    def _decode_nth(self, i: int, n: int, image: ImageInput, meta: object) -> DecodedImage:
        """``decode`` of a batch's image ``i`` (0-based, of ``n``) and its meta; an error names
        which, counting from 1 ("image 1 of 3" is the first)."""
        try:
            given = _as_metadata(meta)
        except (TypeError, taxonomy.TaxonomyError) as exc:
            raise _which(exc, f"predict_batch: meta {i + 1}") from exc
        try:
            return self.decode(image, given)
        except (ImageDecodeError, TypeError, ValueError) as exc:
            raise _which(exc, f"predict_batch: image {i + 1} of {n} ({_describe(image)})") from exc

    def _prediction(
        self, rgb: np.ndarray, item: PreparedImage, result: Assessment, i: int,
        want_heatmap: bool, shared_ms: float,
    ) -> Prediction:
        """Image ``i``'s ``Prediction``; its ``timing_ms`` is ``shared_ms`` (its share of the
        time before: decoding to the network run) plus the time taken here (its heatmap)."""
        t0 = time.perf_counter()
        # no heatmap for an image the gate refused: it would look like a valid explanation
        cam = (camgrid.class_map(self.session, rgb, self.card, item.meta, int(result.top[i]),
                                 result.cam(i))
               if want_heatmap and result.assessable(i) else None)
        return Prediction(
            probabilities={c: float(p)
                           for c, p in zip(self.classes, result.probabilities[i], strict=True)},
            prediction=result.prediction(i),
            malignant_probability=float(result.malignant[i]),
            risk=result.risks[i],
            flags=result.flags[i],
            model=self.info,
            meta=item.meta,
            timing_ms=shared_ms + (time.perf_counter() - t0) * 1000.0,
            decision_rule=self.card.decision.description,
            cam=cam,
            ood_score=result.ood_scores[i],
            image=rgb if want_heatmap else None,  # overlay_png's; not held without a heatmap
            embedding=None if result.embeddings is None else result.embeddings[i],
            network_sha256=self.card.onnx_sha256,
            model_status=status if isinstance(status := self.card.extra.get("status"), str)
            else None,
        )
