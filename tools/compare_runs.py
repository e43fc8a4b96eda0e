"""Are two training runs the same? Checks what "one command and seed give one network" promises.

    .venv/bin/python tools/compare_runs.py RUN_A RUN_B [--out FILE]

RUN_A / RUN_B are `dermsight train --out` folders. Compared: split.csv (bytes), best.pt and last.pt
(every tensor, torch.equal; the largest difference when not equal), train_log.jsonl (every field
but times and speeds), and, when both runs have a bundle (``--stage train`` runs have none), its
model.onnx (sha256), gate.npz (every array) and card.json (every value but times, dates and
speeds; the run folder's name, the report's checksum and settings added since, at their off
defaults, made alike; the paths that differ are listed). Exit 0 when everything compared is
identical, 1 when something differs, 2 when a file is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: values allowed to differ between two identical runs: when and where they ran, how fast
VOLATILE_KEYS = {"created", "machine"}
VOLATILE_SUFFIXES = ("_seconds", "_img_per_s")


def _volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or key.endswith(VOLATILE_SUFFIXES)


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths (a/b/0/c) where two JSON values differ, ignoring volatile keys."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if _volatile(k):
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k} (only in {'B' if k not in a else 'A'})")
            else:
                out += json_differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in json_differences(x, y, f"{path}/{i}")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"[:200]]


def compare_checkpoints(a: Path, b: Path) -> str | None:
    import torch

    sa = torch.load(a, map_location="cpu", weights_only=False)["model"]
    sb = torch.load(b, map_location="cpu", weights_only=False)["model"]
    if sa.keys() != sb.keys():
        return "different tensor names"
    unequal = [k for k in sa if not torch.equal(sa[k], sb[k])]
    if not unequal:
        return None
    worst = max(float((sa[k].double() - sb[k].double()).abs().max()) for k in unequal)
    return f"{len(unequal)} of {len(sa)} tensors differ (largest |difference| {worst:.3g})"


def compare_gates(a: Path, b: Path) -> str | None:
    with np.load(a) as za, np.load(b) as zb:
        if set(za.files) != set(zb.files):
            return "different arrays"
        unequal = [k for k in za.files if not np.array_equal(za[k], zb[k])]
    return f"arrays differ: {unequal}" if unequal else None


def _log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _comparable_card(run: Path) -> Any:
    """The run's card with what names the run rather than describes it made alike: the run
    folder in commands (RUN), the report's checksum (the report prints the creation time), and
    the recorded config read through today's settings (a setting added since, at its off
    default, is not a difference)."""
    from dermsight.train.config import config_from_dict

    text = (run / "bundle" / "card.json").read_text(encoding="utf-8")
    card = json.loads(text.replace(json.dumps(str(run))[1:-1], "RUN"))
    card.get("files", {}).pop("report.html", None)
    training = card.get("training", {})
    if isinstance(training.get("config"), dict):
        training["config"] = config_from_dict(training["config"]).to_dict()
    return card


def compare(a: Path, b: Path) -> tuple[list[str], bool]:
    """(report lines, all identical)."""
    lines, same = [], True

    def say(name: str, diff: str | None) -> None:
        nonlocal same
        same &= diff is None
        lines.append(f"{name}: {'identical' if diff is None else 'DIFFERENT: ' + diff}")

    say("split.csv", None if (a / "split.csv").read_bytes() == (b / "split.csv").read_bytes()
        else "the splits differ")
    for ck in ("best.pt", "last.pt"):
        say(ck, compare_checkpoints(a / ck, b / ck))
    diffs = json_differences(_log(a / "train_log.jsonl"), _log(b / "train_log.jsonl"))
    say("train_log.jsonl (times and speeds left out)", "; ".join(diffs[:5]) or None)
    has = [(r / "bundle" / "card.json").exists() for r in (a, b)]
    if not any(has):
        lines.append("bundle: in neither run (trained with --stage train), not compared")
        return lines, same
    if not all(has):
        say("bundle", f"only run {'A' if has[0] else 'B'} has one")
        return lines, same
    from dermsight.bundle import sha256_file

    say("bundle/model.onnx (sha256)", None if sha256_file(a / "bundle" / "model.onnx")
        == sha256_file(b / "bundle" / "model.onnx") else "different bytes")
    say("bundle/gate.npz", compare_gates(a / "bundle" / "gate.npz", b / "bundle" / "gate.npz"))
    card = [_comparable_card(r) for r in (a, b)]
    diffs = json_differences(*card)
    say("bundle/card.json (times, dates and the run folder left out)",
        f"{len(diffs)} values: " + "; ".join(diffs[:8]) if diffs else None)
    return lines, same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--out", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    try:
        lines, same = compare(args.run_a, args.run_b)
    except FileNotFoundError as e:
        print(f"error: missing {e.filename}", file=sys.stderr)
        return 2
    text = "\n".join([f"A = {args.run_a}", f"B = {args.run_b}", *lines,
                      "=> the two runs are identical" if same else "=> the runs differ"]) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
