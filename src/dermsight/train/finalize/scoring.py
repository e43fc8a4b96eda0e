"""The data finalize works on and its scores through the serving path: each split's images,
metadata and labels (``load_parts``), the trained network exported to ONNX with a parity check
(``export_checked``), a provisional bundle run by the serving facade (``serving_model``; built in
finalize's partial folder, refused by loading anywhere else), and the
logits and pooled features of every split from it (``score``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from dermsight.bundle import PROVISIONAL, Card, Thresholds, load_bundle, save_bundle
from dermsight.parallel import default_workers
from dermsight.predict import Dermsight
from dermsight.preprocess import InputSpec, MetaSpec, encode_meta, preprocess
from dermsight.records import Metadata
from dermsight.train.config import TrainConfig
from dermsight.train.data import load_images
from dermsight.train.export import OUTPUTS, both_logits, export_onnx
from dermsight.train.network import LesionNet
from dermsight.train.table import EXTERNAL, row_meta

#: training images scored for the gate and the provisional checks when no linear probe needs
#: the whole training split
TRAIN_SAMPLE = 3000
#: |ONNX - PyTorch| logit difference accepted on real test images: PARITY_ATOL +
#: PARITY_RTOL x |logit|. ONNX Runtime's and PyTorch's float32 kernels round differently, by
#: about 1e-4 of a logit's size (measured: 1.3e-3 at a logit of -10.6, a seed-44 v2.4 run);
#: a wrong export differs by tenths.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3


def within_parity(onnx_logits: np.ndarray, torch_logits: np.ndarray) -> bool:
    """Every ONNX logit within ``PARITY_ATOL + PARITY_RTOL * |PyTorch logit|`` of PyTorch's."""
    return bool(np.allclose(onnx_logits, torch_logits, rtol=PARITY_RTOL, atol=PARITY_ATOL))


@dataclass
class Part:
    """One split: its table rows, decoded images, metadata, labels and (after ``score``) the
    serving path's logits and pooled features."""

    df: pd.DataFrame
    images: list[np.ndarray]
    metas: list[Metadata]
    labels: np.ndarray
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    embedding: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @property
    def sources(self) -> list[str]:
        return self.df["source"].astype(str).tolist()

    def groups(self, group_col: str) -> np.ndarray:
        return self.df[group_col].to_numpy()


def load_parts(cfg: TrainConfig, df: pd.DataFrame) -> dict[str, Part]:
    """val, test, train (a seeded sample of ``TRAIN_SAMPLE`` unless the linear probe needs all)
    and, with held-out sources, external."""
    parts: dict[str, Part] = {}
    rng = np.random.default_rng(cfg.seed)
    splits = ["val", "test", "train"] + ([EXTERNAL] if (df["split"] == EXTERNAL).any() else [])
    for s in splits:
        part = df[df["split"] == s]
        if s == "train" and len(part) > TRAIN_SAMPLE and not cfg.evaluation.linear_probe:
            part = part.iloc[np.sort(rng.choice(len(part), TRAIN_SAMPLE, replace=False))]
        parts[s] = Part(part, load_images(part["path"].tolist(), desc=f"load {s}"),
                        [row_meta(r) for _, r in part.iterrows()], part["label"].to_numpy())
    return parts


def load_network(cfg: TrainConfig, out: Path, meta_spec: MetaSpec) -> LesionNet:
    """The run's best checkpoint (``best.pt``), in eval mode."""
    ck = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    net = LesionNet(cfg.model.backbone, len(cfg.data.classes), meta_spec.dim,
                    meta_hidden=cfg.model.meta_hidden, pretrained=False,
                    drop_rate=cfg.model.drop_rate,
                    unspecified_head=cfg.model.unspecified_head)
    net.load_state_dict(ck["model"])
    return net.eval()


def export_checked(net: LesionNet, spec: InputSpec, meta_spec: MetaSpec, test: Part
                   ) -> tuple[bytes, float]:
    """ONNX bytes of ``net`` and the max |logit difference| to PyTorch on 16 real test images;
    raises when a logit is outside :func:`within_parity`."""
    onnx_bytes = export_onnx(net, spec.size)
    xs = np.stack([preprocess(im, spec) for im in test.images[:16]])
    ms = np.stack([encode_meta(mt, meta_spec) for mt in test.metas[:16]])
    onnx_logits, torch_logits = both_logits(net, onnx_bytes, xs, ms)
    max_diff = float(np.abs(onnx_logits - torch_logits).max())
    if not within_parity(onnx_logits, torch_logits):
        raise RuntimeError(f"ONNX parity failed: max |logit diff| = {max_diff:.2e}, more than "
                           f"{PARITY_ATOL:g} + {PARITY_RTOL:g} x |logit| allows")
    return onnx_bytes, max_diff


def serving_model(cfg: TrainConfig, bundle_dir: Path, onnx_bytes: bytes, spec: InputSpec,
                  meta_spec: MetaSpec) -> Dermsight:
    """A provisional bundle (temperature 1, placeholder thresholds, no gate) run by the serving
    facade, so that every later step scores exactly as serving will. Its card is marked
    ``status: "provisional"``, which loading refuses (``bundle.unfinished_reason``) everywhere
    but here; ``bundle_dir`` is finalize's partial folder (``bundle.staged_bundle``), never the
    run's bundle itself."""
    prov = Card(name=cfg.name, version=cfg.version, classes=list(cfg.data.classes),
                input_spec=spec, meta_spec=meta_spec, temperature=1.0,
                thresholds=Thresholds(1.0, 1.0), onnx_sha256="", outputs=OUTPUTS,
                extra={"status": PROVISIONAL}, malignant_excluded=cfg.malignant_excluded())
    save_bundle(bundle_dir, onnx_bytes, prov)
    return Dermsight(load_bundle(bundle_dir, provisional=True),
                     threads=cfg.evaluation.num_threads or default_workers())


def infer(model: Dermsight, images: list[np.ndarray], metas: list[Any], bs: int = 64,
          desc: str = "infer") -> dict[str, np.ndarray]:
    """Run the serving path (preprocess + ONNX Runtime) over images; logits and embeddings."""
    logits, emb = [], []
    for i in tqdm(range(0, len(images), bs), desc=desc, mininterval=5):
        x = np.stack([preprocess(im, model.card.input_spec) for im in images[i : i + bs]])
        m = np.stack([encode_meta(mt, model.card.meta_spec) for mt in metas[i : i + bs]])
        out = model.run_arrays(x, m)
        logits.append(out["logits"])
        emb.append(out["embedding"])
    return {"logits": np.concatenate(logits), "embedding": np.concatenate(emb)}


def score(model: Dermsight, parts: dict[str, Part]) -> None:
    """Fill in every part's logits and embeddings from the serving path."""
    for s, p in parts.items():
        res = infer(model, p.images, p.metas, desc=f"score {s}")
        p.logits, p.embedding = res["logits"], res["embedding"]
