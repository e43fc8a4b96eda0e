"""WiSE-FT on a finished run: the backbone's weights (and BatchNorm statistics) moved back
towards the ImageNet weights it started from, the metadata branch and the classifier kept.

    theta(alpha) = alpha * theta_fine_tuned + (1 - alpha) * theta_imagenet   (backbone only)

For each alpha the script scores the validation split and the held-out source (split
``external``) with the plain softmax of the network's logits (``loop.quick_metrics``: the
figures training selects its epoch by), picks alpha* by the rule fixed in
docs/experiments/README.md ("WiSE-FT"), and, with ``--write``, writes a run folder whose best.pt
holds theta(alpha*), ready for ``dermsight train --stage finalize``.

    python docs/experiments/v2.23/wise_ft.py --run runs/loso-wise-s42-isic2017 \
        --out docs/experiments/v2.23/wise_ft_isic2017.json --write runs/loso-wise-s42-isic2017-a
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from dermsight.preprocess import MetaSpec
from dermsight.train.config import load_config
from dermsight.train.loop import predict_logits, quick_metrics
from dermsight.train.pipeline import build_net, make_datasets, prepare_data

ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
TOLERANCE = 0.01  # validation balanced accuracy alpha* may cost against alpha = 1
SMALL_FILES = ("split.csv", "config.json", "train_log.jsonl", "train_summary.json")


def interpolate(fine: dict[str, torch.Tensor], start: dict[str, torch.Tensor], alpha: float
                ) -> dict[str, torch.Tensor]:
    """The backbone's floating-point tensors (weights and BatchNorm running statistics) moved to
    alpha * fine + (1 - alpha) * start; every other tensor (counters, metadata branch,
    classifier) is the fine-tuned one."""
    out = {}
    for k, v in fine.items():
        if k.startswith("backbone.") and v.is_floating_point():
            out[k] = alpha * v + (1.0 - alpha) * start[k].to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def choose(rows: list[dict[str, float]]) -> float:
    """alpha*: the smallest alpha whose validation balanced accuracy is within TOLERANCE of
    alpha = 1's (1.0 when none is)."""
    ref = next(r for r in rows if r["alpha"] == 1.0)["val_balanced_accuracy"]
    ok = [r["alpha"] for r in rows if r["val_balanced_accuracy"] >= ref - TOLERANCE]
    return min(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--write", type=Path, default=None,
                    help="run folder to write with best.pt = theta(alpha*)")
    args = ap.parse_args()
    cfg = load_config(args.run / "config.json")
    torch.set_num_threads(cfg.train.num_threads)
    fine_ck = torch.load(args.run / "best.pt", map_location="cpu", weights_only=False)
    fine = fine_ck["model"]
    net = build_net(cfg, MetaSpec())  # pretrained: the ImageNet backbone the run started from
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    df = prepare_data(cfg)
    ds = make_datasets(cfg, df, ("val", "external"))
    classes, excluded = cfg.data.classes, cfg.malignant_excluded()
    rows = []
    for alpha in ALPHAS:
        net.load_state_dict(interpolate(fine, start, alpha))
        row: dict[str, float] = {"alpha": alpha}
        for split, ds_ in ds.items():
            m = quick_metrics(ds_.labels, predict_logits(net, ds_, cfg.train.eval_batch_size,
                                                         split), classes, excluded)
            row |= {f"{'val' if split == 'val' else 'heldout'}_{k}": v for k, v in m.items()}
        rows.append(row)
        print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    alpha_star = choose(rows)
    doc = {"run": str(args.run), "epoch": fine_ck["epoch"], "alphas": list(ALPHAS),
           "tolerance": TOLERANCE, "alpha_star": alpha_star, "rows": rows,
           "n_val": len(ds["val"]), "n_heldout": len(ds["external"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print("alpha* =", alpha_star)
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for name in SMALL_FILES:
            if (args.run / name).exists():
                shutil.copy(args.run / name, args.write / name)
        torch.save({"model": interpolate(fine, start, alpha_star), "epoch": fine_ck["epoch"],
                    "wise_ft_alpha": alpha_star}, args.write / "best.pt")


if __name__ == "__main__":
    main()
