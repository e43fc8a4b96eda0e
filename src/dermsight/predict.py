"""The facade: ``Dermsight.load()`` then ``.predict(image, age=, sex=, site=)``.

Runs on ONNX Runtime only (no torch). The web API and ``dermsight predict`` call ``predict``.
Batch scoring (``dermsight.batch.score``) does not: it calls ``prepare`` and ``run_arrays`` on
whole batches, then builds its output rows itself with the same pieces (``probabilities``,
``malignant``, the card's decision rule and tiers, ``dermsight.gate``); ``tests/test_batch.py``
checks that its rows give the facade's answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import camgrid, gate, heatmap, taxonomy
from dermsight.bundle import Bundle, load_bundle
from dermsight.io.decode import DecodeLimits, decode_image
from dermsight.metaflags import metadata_flags
from dermsight.preprocess import encode_meta, preprocess
from dermsight.records import Metadata

ImageInput = str | os.PathLike[str] | bytes | np.ndarray

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

    @property
    def assessable(self) -> bool:
        """False when the gate refused the image: its numbers must not be shown as valid."""
        return self.risk != "cannot_assess"

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
            d["heatmap"] = heatmap.to_base64_png(heatmap.heatmap_rgba(self.cam))
        return d

    def overlay_png(self, alpha: float = 0.45) -> bytes:
        """The input image with the heatmap blended on top, as PNG bytes."""
        if self.image is None or self.cam is None:
            raise ValueError("this prediction has no image/heatmap to overlay")
        return heatmap.png_bytes(heatmap.overlay(self.image, self.cam, alpha))


def ort_session(model: str | Path | bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session as dermsight runs one (``threads`` intra-op threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


class Dermsight:
    """A loaded model bundle, ready to predict."""

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        self.bundle = bundle
        self.card = bundle.card
        self.session = ort_session(bundle.onnx_path, threads)
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.classes: list[str] = list(self.card.classes)
        self.limits = DecodeLimits()

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int | None = None) -> Dermsight:
        """Load a bundle folder; with no path, the default model shipped in the package."""
        return cls(load_bundle(path), threads=threads)

    @property
    def info(self) -> dict[str, str]:
        return {"name": self.card.name, "version": self.card.version}

    # -- low level: arrays in, arrays out (used by batch scoring) -----------------------------

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
        res["embedding"] = out["features"].mean(axis=(2, 3))
        return res

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, self.card.temperature)

    def malignant(self, probs: np.ndarray) -> np.ndarray:
        idx = [i for i, c in enumerate(self.classes) if c in self.card.malignant]
        return probs[:, idx].sum(axis=1)

    def prepare(self, image: np.ndarray, meta: Metadata | None) -> tuple[np.ndarray, np.ndarray]:
        return preprocess(image, self.card.input_spec), encode_meta(meta, self.card.meta_spec)

    # -- high level ---------------------------------------------------------------------------

    def load_image(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, np.ndarray):
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
            return np.ascontiguousarray(image[:, :, :3].astype(np.uint8, copy=False))
        return decode_image(image, self.limits)

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
        """Classify one lesion image. Raises ImageDecodeError / TaxonomyError for bad input."""
        t0 = time.perf_counter()
        rgb = self.load_image(image)
        meta = meta if meta is not None else Metadata.parse(age=age, sex=sex, site=site)
        x, m = self.prepare(rgb, meta)
        out = self.run_arrays(x[None], m[None], tta=tta)
        return self._prediction(rgb, meta, out, 0, heatmap, t0)

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        metas: Sequence[Metadata | None] | None = None,
        heatmap: bool = False,
        tta: bool = False,
    ) -> list[Prediction]:
        """Classify many images in one ONNX call (all must decode; see batch/ for error rows)."""
        t0 = time.perf_counter()
        metas = list(metas) if metas is not None else [None] * len(images)
        rgbs = [self.load_image(im) for im in images]
        prepared = [self.prepare(im, mt) for im, mt in zip(rgbs, metas, strict=True)]
        x = np.stack([p[0] for p in prepared])
        m = np.stack([p[1] for p in prepared])
        out = self.run_arrays(x, m, tta=tta)
        return [
            self._prediction(rgb, mt or Metadata(), out, i, heatmap, t0)
            for i, (rgb, mt) in enumerate(zip(rgbs, metas, strict=True))
        ]

    def _prediction(
        self, rgb: np.ndarray, meta: Metadata, out: dict[str, np.ndarray], i: int,
        want_heatmap: bool, t0: float,
    ) -> Prediction:
        probs = self.probabilities(out["logits"][i : i + 1])[0]
        p_mal = float(self.malignant(probs[None])[0])
        top = int(self.card.decision.choose(probs[None], self.classes)[0])
        flags, score = gate.assess(rgb, out["embedding"][i : i + 1], self.card.gate,
                                   self.bundle.gate_arrays)
        flags = [*flags, *metadata_flags(meta)]  # non-blocking: metadata accepted but noted
        blocking = any(f.blocking for f in flags)
        risk = "cannot_assess" if blocking else self.card.thresholds.tier(p_mal)
        # no heatmap for an image the gate refused: it would look like a valid explanation
        cam = (camgrid.class_map(self.session, rgb, self.card, meta, top, out["cam"][i, top])
               if want_heatmap and not blocking else None)
        return Prediction(
            probabilities={c: float(p) for c, p in zip(self.classes, probs, strict=True)},
            prediction=self.classes[top],
            malignant_probability=p_mal,
            risk=risk,
            flags=flags,
            model=self.info,
            meta=meta,
            timing_ms=(time.perf_counter() - t0) * 1000.0,
            decision_rule=self.card.decision.description,
            cam=cam,
            ood_score=score,
            image=rgb,
        )
