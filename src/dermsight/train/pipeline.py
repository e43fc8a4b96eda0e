"""``dermsight train``: data -> fixed split -> training -> (finalize: calibration, evaluation,
baseline, gate, ONNX export, bundle). Everything lands in one run folder with logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dermsight.preprocess import MetaSpec
from dermsight.train.augment import Augment
from dermsight.train.config import Provenance, TrainConfig
from dermsight.train.data import LesionDataset, TrainingDraws, load_images
from dermsight.train.distill import load_soft_targets
from dermsight.train.loop import (
    DistInfo,
    check_distributed,
    distributed,
    source_balance_weights,
    train_model,
)
from dermsight.train.network import LesionNet
from dermsight.train.table import assign_split, load_table, row_meta


def build_net(cfg: TrainConfig, meta_spec: MetaSpec) -> LesionNet:
    m = cfg.model
    return LesionNet(m.backbone, len(cfg.data.classes), meta_spec.dim, meta_hidden=m.meta_hidden,
                     pretrained=m.pretrained, weights=m.weights, drop_rate=m.drop_rate,
                     drop_path_rate=m.drop_path_rate, unspecified_head=m.unspecified_head,
                     unspecified_detach=m.unspecified_detach)


def prepare_data(cfg: TrainConfig) -> pd.DataFrame:
    df = load_table(cfg.data)
    df["split"] = assign_split(df, cfg.data)
    if cfg.data.limit:
        limit = cfg.data.limit
        df = pd.concat([g.sample(min(len(g), limit), random_state=cfg.seed)
                        for _, g in df.groupby("split", sort=True)]).reset_index(drop=True)
    return df


def make_datasets(cfg: TrainConfig, df: pd.DataFrame, splits: tuple[str, ...]
                  ) -> dict[str, LesionDataset]:
    spec, meta_spec = cfg.input.spec(), MetaSpec()
    out = {}
    for s in splits:
        part = df[df["split"] == s]
        train = s == "train"
        tc = cfg.train
        soft = None  # read before the images load, so a wrong file fails at once
        if train and tc.distill_weight > 0:
            soft = load_soft_targets(str(tc.distill_targets), part["image_id"].tolist(),
                                     cfg.data.classes)
        images = load_images(part["path"].tolist(), desc=f"load {s}")
        metas = [row_meta(r) for _, r in part.iterrows()]
        labels, sources = part["label"].to_numpy(), part["source"].astype(str).to_numpy()
        draws = TrainingDraws(
            Augment(dermoscopy=tc.augment == "dermoscopy", randconv=tc.randconv_p,
                    wide_field=tc.wide_field_p, siim2020=tc.siim2020_augment,
                    resave=tc.resave_p, dermoscopy_strength=tc.dermoscopy_strength),
            seed=cfg.seed, meta_dropout=tc.meta_dropout, style_mix=tc.style_mix,
            style_beta=tc.style_mix_beta)
        out[s] = LesionDataset(
            images, metas, labels, spec, meta_spec, draws=draws if train else None,
            sources=sources,
            weights=source_balance_weights(labels, sources, tc.source_balance)
            if train else None)
        out[s].soft_targets = soft
    return out


def run(cfg: TrainConfig, out: Path, resume: bool = False, stage: str = "all",
        provenance: Provenance | None = None) -> dict[str, Any]:
    torch.set_num_threads(cfg.train.num_threads)
    out.mkdir(parents=True, exist_ok=True)
    with distributed() as info:
        check_distributed(cfg, info)
        t0 = time.perf_counter()
        df = prepare_data(cfg)
        if info.main:
            df[["image_id", "diagnosis", "source", cfg.data.group_col, "split"]].to_csv(
                out / "split.csv", index=False)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        summary: dict[str, Any] = {}
        if stage in ("all", "train"):
            # the new head's initial weights come from torch's global generator, which torch
            # seeds at random in every process: seed it, or one command gives two networks
            torch.manual_seed(cfg.seed)
            net = build_net(cfg, MetaSpec())  # first: a bad backbone fails before images load
            ds = make_datasets(cfg, df, ("train", "val"))
            summary = train_model(cfg, net, ds["train"], ds["val"], out, resume=resume,
                                  info=info)
            del net, ds  # finalize decodes the images it needs itself: free the training cache
            summary["train_seconds"] = time.perf_counter() - t0
            if info.main:
                (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
        if stage in ("all", "finalize") and info.main:
            from dermsight.train.finalize import finalize

            summary = finalize(cfg, df, out, info=DistInfo(),
                               provenance=provenance or Provenance.of(cfg.name, out))
        return summary
