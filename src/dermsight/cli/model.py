"""``dermsight train | evaluate | export`` (need the [train] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dermsight.cli.errors import UserError


def _need_train_extra() -> None:
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "training needs the [train] extra: pip install 'dermsight[train]'"
        ) from exc


def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config")] = Path(
        "configs/default.yaml"),
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder")] = Path("runs/default"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a config key, e.g. --set train.epochs=2 (repeatable)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from out/last.pt")] = False,
    stage: Annotated[str, typer.Option(help="all | train | finalize")] = "all",
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="also copy the finished bundle here")] = None,
) -> None:
    """Train a model, then calibrate, evaluate on the held-out test split and export a bundle."""
    _need_train_extra()
    from dermsight.train.config import load_config
    from dermsight.train.network import ConfigError
    from dermsight.train.pipeline import run

    if stage not in ("all", "train", "finalize"):
        raise UserError("--stage must be all, train or finalize")
    try:
        cfg = load_config(config, set_ or [])
        if not (Path(cfg.data.root) / "metadata.csv").exists():
            raise UserError(f"data folder not found or has no metadata.csv: {cfg.data.root}")
        summary = run(cfg, out, resume=resume, stage=stage)
    except ConfigError as exc:
        raise UserError(str(exc)) from exc
    if bundle is not None and (out / "bundle").exists():
        import shutil

        shutil.copytree(out / "bundle", bundle, dirs_exist_ok=True)
        typer.echo(f"bundle copied to {bundle}")
    typer.echo(f"done: {summary}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
