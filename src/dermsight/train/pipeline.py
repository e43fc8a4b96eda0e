"""``dermsight train``: data -> fixed split -> training -> (finalize: calibration, evaluation,
baseline, gate, ONNX export, bundle). Everything lands in one run folder with logs."""

from __future__ import annotations

import json
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dermsight import taxonomy
from dermsight.io.files import IS_A_FILE, unwritable_reason
from dermsight.preprocess import MetaSpec
from dermsight.train.augment import Augment
from dermsight.train.config import (
    ConfigError,
    Provenance,
    TrainConfig,
    config_from_dict,
    flat_settings,
)
from dermsight.train.data import (
    LesionDataset,
    TrainingDraws,
    load_images,
    unreadable_error,
    unreadable_reasons,
)
from dermsight.train.distill import load_soft_targets
from dermsight.train.loop import (
    DistInfo,
    check_distributed,
    distributed,
    source_balance_weights,
    train_model,
)
from dermsight.train.network import LesionNet
from dermsight.train.table import SPLITS, assign_split, load_table, row_meta


def build_net(cfg: TrainConfig, meta_spec: MetaSpec) -> LesionNet:
    m = cfg.model
    return LesionNet(m.backbone, len(cfg.data.classes), meta_spec.dim, meta_hidden=m.meta_hidden,
                     pretrained=m.pretrained, weights=m.weights, drop_rate=m.drop_rate,
                     drop_path_rate=m.drop_path_rate, unspecified_head=m.unspecified_head,
                     unspecified_detach=m.unspecified_detach)


def prepare_data(cfg: TrainConfig, notes: list[str] | None = None) -> pd.DataFrame:
    """The labelled table with its ``split`` column (at most ``data.limit`` images per split).

    A configured class without a training image is refused (``ConfigError``): the model would
    name a class it never learnt. In a smoke run (``data.limit`` set) that is a warning only.
    ``notes`` (when given) receives a line for each kind of image left out and each warning
    (``note: ...`` / ``warning: ...``)."""
    left_out: list[str] = []
    df = load_table(cfg.data, notes=left_out)
    try:
        df["split"] = assign_split(df, cfg.data)
    except ConfigError as exc:  # too few images: say which rows were left out
        raise ConfigError("; ".join([str(exc), *left_out])) from exc
    present = set(df["diagnosis"])
    if cfg.data.limit:
        limit = cfg.data.limit
        df = pd.concat([g.sample(min(len(g), limit), random_state=cfg.seed)
                        for _, g in df.groupby("split", sort=True)]).reset_index(drop=True)
    warnings = _class_coverage(cfg, df, present)
    if notes is not None:
        notes.extend([*(f"note: {n}" for n in left_out), *(f"warning: {w}" for w in warnings)])
    return df


def _class_coverage(cfg: TrainConfig, df: pd.DataFrame, present: set[str]) -> list[str]:
    """Warnings for configured classes missing from the validation or test split; a class
    without training images is a ``ConfigError`` (a warning in a ``data.limit`` smoke run)."""
    classes = list(cfg.data.classes)
    absent = [c for c in classes if c not in present]
    in_split = {s: set(df.loc[df["split"] == s, "diagnosis"]) for s in SPLITS}
    untrained = [c for c in classes if c in present and c not in in_split["train"]]
    problems = []
    if absent:
        problems.append(f"{_have(absent)} no image in the data")
    if untrained:
        problems.append(f"{_have(untrained)} no training image after the split")
    warnings = []
    if problems:
        text = "; ".join(problems) + ": the model would name classes it never learnt"
        if not cfg.data.limit:
            raise ConfigError(f"{text}; train on the classes the data have: "
                              f"{_classes_hint(cfg, absent + untrained)}")
        warnings.append(f"{text} (allowed in this data.limit smoke run only)")
    for s, what in (("val", "validation"), ("test", "test")):
        lacking = [c for c in classes if c in in_split["train"] and c not in in_split[s]]
        if lacking and in_split[s]:
            them = "it" if len(lacking) == 1 else "them"
            warnings.append(f"no {what} image of {', '.join(lacking)}: "
                            + (f"calibration and model selection cannot check {them}"
                               if s == "val" else f"the test figures leave {them} out"))
    return warnings


def _have(names: list[str]) -> str:
    return f"{', '.join(names)} {'has' if len(names) == 1 else 'have'}"


def _classes_hint(cfg: TrainConfig, dropped: list[str]) -> str:
    """The ``--set`` options that train on the classes left after ``dropped``."""
    keep = [c for c in cfg.data.classes if c not in dropped]
    sets = [f"--set 'data.classes=[{','.join(keep)}]'"]
    if cfg.model.unspecified_head and taxonomy.UNSPECIFIED in dropped:
        sets.append("--set model.unspecified_head=false")
    if cfg.train.mixup_spare_unk and taxonomy.UNSPECIFIED in dropped:
        sets.append("--set train.mixup_spare_unk=false")
    margins = [c for c in cfg.calibration.margin_classes if c in keep]
    if margins != cfg.calibration.margin_classes:
        sets.append(f"--set 'calibration.margin_classes=[{','.join(margins)}]'")
    return " ".join(sets)


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


#: what shows that a folder holds a training run
RUN_FILES = ("last.pt", "best.pt", "train_log.jsonl", "bundle")
#: settings a resumed or finalized run may change: how the work is done (threads, batch
#: processes, the validation batch), what only finalize uses (calibration, evaluation, the
#: model's name and version) and where the data are (the split itself is compared)
FREE_SETTINGS = ("name", "version", "calibration.", "evaluation.", "train.num_threads",
                 "train.num_workers", "train.eval_batch_size", "data.root")


def _saved_config(out: Path) -> TrainConfig | None:
    path = out / "config.json"
    if not path.is_file():
        return None
    try:
        return config_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:  # ConfigError and JSONDecodeError are ValueErrors
        raise ConfigError(f"cannot read the run's settings {path}: {exc}") from exc


def check_run_folder(cfg: TrainConfig, out: Path, *, resume: bool, stage: str) -> None:
    """Refuse a run folder that would mix two runs: ``out`` is a file; it holds a run and this
    is neither ``--resume`` nor ``--stage finalize``; ``--resume`` without a checkpoint or
    finalize without a trained network; or a resumed / finalized run whose settings differ from
    those it was trained with (``FREE_SETTINGS`` may)."""
    if (why := unwritable_reason(out, folder=True)) == IS_A_FILE:
        raise ConfigError(f"--out {out} is a file, not a run folder")
    if why is not None:
        verb = "make" if why.endswith(" is a file") else "write"  # a folder above is a file
        raise ConfigError(f"cannot {verb} the run folder --out {out}: {why}")
    held = [f for f in RUN_FILES if (out / f).exists()]
    if stage == "finalize":
        if not (out / "best.pt").is_file():
            raise ConfigError(f"{out} holds no trained network (best.pt): train it first "
                              f"(--stage all or train)")
    elif resume:
        if not (out / "last.pt").is_file():
            raise ConfigError(f"--resume: {out} holds no checkpoint to continue (last.pt); "
                              f"leave out --resume to start a new run")
    elif held:
        raise ConfigError(f"--out {out} already holds a training run ({', '.join(held)}): "
                          f"continue it with --resume, make its bundle again with --stage "
                          f"finalize, or train into another --out")
    saved = _saved_config(out) if resume or stage == "finalize" else None
    if saved is None:
        return
    was, now = flat_settings(saved.to_dict()), flat_settings(cfg.to_dict())
    differ = [k for k in sorted(set(was) | set(now))
              if was.get(k) != now.get(k) and not k.startswith(FREE_SETTINGS)]
    if differ:
        shown = "; ".join(f"{k}: {was.get(k)!r} in the run, {now.get(k)!r} now"
                          for k in differ[:3])
        raise ConfigError(f"{'--resume' if resume else '--stage finalize'}: the run in {out} "
                          f"was trained with other settings ({shown}"
                          f"{' ...' if len(differ) > 3 else ''}); use the run's settings "
                          f"({out / 'config.json'}) or train into another --out")


def check_same_split(df: pd.DataFrame, out: Path) -> None:
    """A resumed or finalized run must see the images and split it was trained on (its
    ``split.csv``): else finalize could test on images the network learnt from."""
    path = out / "split.csv"
    if not path.is_file():
        return
    saved = pd.read_csv(path, dtype=str, keep_default_na=False)
    was = dict(zip(saved["image_id"], saved["split"] + "/" + saved["diagnosis"], strict=True))
    now = dict(zip(df["image_id"].astype(str), df["split"] + "/" + df["diagnosis"],
                   strict=True))
    new = [i for i in now if i not in was]
    gone = [i for i in was if i not in now]
    moved = [i for i in now if i in was and was[i] != now[i]]
    if new or gone or moved:
        example = (new or gone or moved)[0]
        raise ConfigError(
            f"the data differ from the split this run was trained on ({path}): {len(new)} "
            f"images new, {len(gone)} gone, {len(moved)} in another split or with another "
            f"diagnosis (e.g. {example}); restore the data the run was trained on, or train a "
            f"new run into another --out"
            + ("" if new or gone else
               " (images in another split with the same data: since 2026-12-07 the groups of "
               "byte-identical image files are merged, so that copies stay in one split; if a "
               "warning above named such files, this run's split kept copies apart: train it "
               "again into another --out)"))


def _check_trainable(cfg: TrainConfig, df: pd.DataFrame, info: DistInfo, stage: str) -> None:
    """Every split the stage needs has images, and the training split a full batch per
    process (the loader drops an incomplete last batch: fewer images would train nothing)."""
    needed = ("train", "val") if stage == "train" else SPLITS
    counts = df["split"].value_counts()
    for s in needed:
        if not counts.get(s, 0):
            raise ConfigError(f"the {s} split has no image (data.holdout_sources "
                              f"{cfg.data.holdout_sources} left none?)")
    n_train = int(counts.get("train", 0))
    if stage != "finalize" and n_train // info.world < cfg.train.batch_size:
        per = f" ({info.world} processes)" if info.world > 1 else ""
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is larger than the "
                          f"{n_train} training images{per}: no full batch to train on; lower "
                          f"train.batch_size")


def interruption_note(cfg: TrainConfig, out: Path) -> str:
    """What a Ctrl-C left in the run folder ``out`` and how to go on from there."""
    epochs = 0
    with suppress(Exception):  # no checkpoint, or not a readable one: no epoch kept
        epochs = int(torch.load(out / "last.pt", map_location="cpu", weights_only=False)
                     ["epoch"]) + 1
    if not epochs:
        return f"no epoch was finished, no checkpoint in {out}"
    if epochs < cfg.train.epochs:
        return (f"{out / 'last.pt'} keeps epoch {epochs} of {cfg.train.epochs}: continue with "
                f"the same command and --resume")
    # finalize builds in a partial folder and swaps it in at the end (bundle.staged_bundle)
    kept = (f" ({out / 'bundle'} is still the bundle made before, left as it was)"
            if (out / "bundle" / "card.json").is_file() else "")
    return (f"training had finished ({out / 'best.pt'}), its bundle was not made{kept}: make "
            f"it with the same command and --stage finalize")


def run(cfg: TrainConfig, out: Path, resume: bool = False, stage: str = "all",
        provenance: Provenance | None = None) -> dict[str, Any]:
    check_run_folder(cfg, out, resume=resume, stage=stage)
    torch.set_num_threads(cfg.train.num_threads)
    with distributed() as info:
        check_distributed(cfg, info)
        t0 = time.perf_counter()
        notes: list[str] = []
        df = prepare_data(cfg, notes)
        if resume or stage == "finalize":
            check_same_split(df, out)
        _check_trainable(cfg, df, info, stage)
        if info.main:
            for line in notes:
                print(line, file=sys.stderr, flush=True)
        if stage == "all":  # the images training does not load, before it starts
            learnt = df["split"].isin(["train", "val"])
            reasons = unreadable_reasons(df.loc[~learnt, "path"].tolist(),
                                         desc="check test images")
            if reasons:  # the training images that cannot be read too, in the same message
                reasons += unreadable_reasons(df.loc[learnt, "path"].tolist(),
                                              desc="check training images")
                raise unreadable_error(reasons, len(df))
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot make the run folder --out {out}: "
                              f"{exc.strerror or exc}") from exc
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
