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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dermsight import camgrid, gate, heatmap, taxonomy
from dermsight.bundle import FEATURES_OUTPUT, Bundle, check_features, load_bundle
from dermsight.compression import Compression, compression_flags
from dermsight.compression import inspect as inspect_compression
from dermsight.io.decode import DecodeLimits, decode_image, pil_to_rgb, sniff
from dermsight.io.errors import ImageDecodeError
from dermsight.io.files import read_regular_file
from dermsight.malignancy import malignant_probability
from dermsight.metaflags import metadata_flags
from dermsight.onnxsession import ModelSession
from dermsight.preprocess import encode_meta, preprocess
from dermsight.records import Metadata
from dermsight.similar import ReferenceSet, SimilarCase

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
    probabilities: dict[str, float]
    prediction: str
    malignant_probability: float
    risk: str  # "high" | "moderate" | "low" | "cannot_assess"
    flags: list[gate.Flag]
    model: dict[str, str]
    meta: Metadata
    timing_ms: float
    cam: np.ndarray | None = None  # [0, 1] map for the predicted class over the whole image
    ood_score: float | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded RGB input
    #: how ``prediction`` was chosen from ``probabilities`` (the bundle's decision rule)
    decision_rule: str = "most probable class"
    #: the pooled features (``Dermsight.similar`` finds the reference images nearest to them)
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def assessable(self) -> bool:
        """False when the gate refused the image: its numbers must not be shown as valid."""
        return self.risk != CANNOT_ASSESS

    def to_dict(self, heatmap_png: bool = True) -> dict[str, Any]:
        """The JSON form (the API's response). For a "cannot assess" result the class
        probabilities, suggested class and malignant probability are NOT at the top level: they
        sit under ``unreliable`` with a note, and there is no heatmap."""
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
            "input": self.meta.as_dict(),
            "timing_ms": round(self.timing_ms, 2),
            "disclaimer": DISCLAIMER,
        }
        if not self.assessable:
            d["unreliable"] = {"note": UNRELIABLE_NOTE, **answer}
            return d
        d.update(answer)
        if heatmap_png and self.cam is not None:
            d["heatmap"] = heatmap.heatmap_base64(self.cam)
        return d

    def overlay_png(self, alpha: float = 0.45) -> bytes:
        """The input image with the heatmap blended on top, as PNG bytes."""
        if self.image is None or self.cam is None:
            raise ValueError("this prediction has no image/heatmap to overlay")
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


def _as_metadata(meta: object) -> Metadata | None:
    """One of ``predict_batch``'s ``metas`` as ``Metadata`` (a dict is parsed as ``predict``
    parses its keyword arguments; an unknown key is a ``TaxonomyError`` naming it)."""
    if meta is None or isinstance(meta, Metadata):
        return meta
    if isinstance(meta, Mapping):
        unknown = sorted(str(k) for k in meta if k not in ("age", "sex", "site"))
        if unknown:
            raise taxonomy.TaxonomyError(f"unknown metadata field {', '.join(unknown)}: "
                                         "give age, sex and site")
        return Metadata.parse(**meta)
    raise TypeError(f"predict_batch: each meta must be a dict of age/sex/site, a "
                    f"dermsight.records.Metadata or None, not {type(meta).__name__}")


class Dermsight:
    """A loaded model bundle, ready to predict: ``Dermsight()`` (the shipped default model),
    ``Dermsight("bundles/clinic-a")`` (a bundle folder) or ``Dermsight(load_bundle(...))``."""

    def __init__(self, bundle: Bundle | str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> None:
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

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int | None = None) -> Dermsight:
        """Load a bundle folder; with no path, the default model shipped in the package (the
        same as ``Dermsight(path)``)."""
        return cls(load_bundle(path), threads=threads)

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
        similar to the model, not a diagnosis); none for a "cannot assess" result."""
        if not prediction.assessable or prediction.embedding is None or self.reference is None:
            return []
        return self.reference.nearest(prediction.embedding, k)

    @property
    def info(self) -> dict[str, str]:
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
        return softmax(logits, self.card.temperature)

    def malignant(self, probs: np.ndarray) -> np.ndarray:
        """P(malignant) per row: the card's malignant classes, as a share of the classes not in
        its ``malignant_excluded`` (:mod:`dermsight.malignancy`)."""
        p = malignant_probability(probs, self.classes, self.card.malignant,
                                  self.card.malignant_excluded)
        return np.zeros(len(probs)) if p is None else p

    def prepare(self, image: np.ndarray, meta: Metadata | None) -> tuple[np.ndarray, np.ndarray]:
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
        path or an array; an array has no file, so no compression; a DICOM file's is its JPEG
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
        """The RGB pixels of one input (see ``decode``, which also returns its metadata)."""
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
            return np.ascontiguousarray(_pixels_0_255(image[:, :, :3]))
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
        meta: Metadata | None = None,
    ) -> Prediction:
        """Classify one lesion image. Raises ImageDecodeError / TaxonomyError for bad input.

        ``image``: a file path, the file's bytes, a Pillow image (read as its file would be: EXIF
        orientation, transparency refused, 16-bit scaled) or an array. An array must be uint8 in
        RGB channel order (OpenCV's ``cv2.imread`` gives BGR: convert it first): recoloured
        images are answered wrongly and the gate refuses only some of them.

        ``meta`` (or ``age`` / ``sex`` / ``site``) wins over a DICOM file's tags (see ``decode``).
        """
        t0 = time.perf_counter()
        meta = meta if meta is not None else Metadata.parse(age=age, sex=sex, site=site)
        d = self.decode(image, meta)
        item = self.prepare_image(d.rgb, d.meta, d.compression)
        return self._prediction(d.rgb, item, self.assess([item], tta=tta), 0, heatmap, t0)

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        metas: Sequence[Metadata | Mapping[str, object] | None] | None = None,
        heatmap: bool = False,
        tta: bool = False,
    ) -> list[Prediction]:
        """Classify many images in one ONNX call (all must decode; see batch/ for error rows).
        ``metas``: one per image, each a ``Metadata``, a dict of ``age`` / ``sex`` / ``site``
        (read as ``predict`` reads them) or None."""
        t0 = time.perf_counter()
        if not images:
            return []
        if metas is not None and len(metas) != len(images):
            raise ValueError(f"predict_batch: {len(images)} images but {len(metas)} metas "
                             "(one per image, None where there is none)")
        given = [_as_metadata(m) for m in metas] if metas is not None else [None] * len(images)
        decoded = [self.decode(im, mt) for im, mt in zip(images, given, strict=True)]
        items = [self.prepare_image(d.rgb, d.meta, d.compression) for d in decoded]
        result = self.assess(items, tta=tta)
        return [self._prediction(d.rgb, item, result, i, heatmap, t0)
                for i, (d, item) in enumerate(zip(decoded, items, strict=True))]

    def _prediction(
        self, rgb: np.ndarray, item: PreparedImage, result: Assessment, i: int,
        want_heatmap: bool, t0: float,
    ) -> Prediction:
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
            timing_ms=(time.perf_counter() - t0) * 1000.0,
            decision_rule=self.card.decision.description,
            cam=cam,
            ood_score=result.ood_scores[i],
            image=rgb,
            embedding=None if result.embeddings is None else result.embeddings[i],
        )
