"""What drawing the heatmap over the whole input photo costs (``heatmap.overlay``: what
``dermsight predict --overlay`` and ``Prediction.overlay_png()`` draw before the PNG encode), at
the sizes photos come in: the shared 256 px images, a 1024 x 768 crop, a 24-megapixel camera
frame (6000 x 4000; a real image enlarged).

    python benchmarks/bench_overlay.py
    python benchmarks/bench_overlay.py --baseline /tmp/pre/src/dermsight/heatmap.py

``--baseline`` times another version of ``heatmap.py`` (e.g. the previous commit's, from
``git archive <commit> src | tar -x -C /tmp/pre``) in the same run, the two interleaved, and
reports the ratio and the largest pixel difference between their outputs. Medians of ``--repeat``
runs; writes ``benchmarks/results/overlay.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

from dermsight import Dermsight, heatmap
from dermsight.io.decode import decode_image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DERMSIGHT_SHARED_DATA",
                          REPO.parent / "shared" / "data" / "isic-subset"))
RESULTS = REPO / "benchmarks" / "results" / "overlay.json"
SIZES = {"256x256": (256, 256), "1024x768": (1024, 768), "6000x4000": (6000, 4000)}


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("heatmap_baseline", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seconds(module: ModuleType, image: np.ndarray, cam: np.ndarray) -> float:
    t0 = time.perf_counter()
    module.overlay(image, cam)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="another heatmap.py to time beside this one")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    versions = {"current": heatmap}
    if args.baseline is not None:
        versions["baseline"] = load_module(args.baseline)
    photo = decode_image(sorted((DATA / "images").glob("*.jpg"))[0])
    cam = Dermsight.load(threads=1).predict(photo).cam
    assert cam is not None
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {}
    for name, size in SIZES.items():
        image = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BILINEAR))
        times: dict[str, list[float]] = {v: [] for v in versions}
        for _ in range(args.repeat):
            for v, module in versions.items():
                times[v].append(seconds(module, image, cam))
        row: dict[str, Any] = {f"{v}_median_ms": round(statistics.median(t) * 1000, 1)
                               for v, t in times.items()}
        if "baseline" in versions:
            row["ratio_baseline_over_current"] = round(
                statistics.median(times["baseline"]) / statistics.median(times["current"]), 2)
            diff = np.abs(versions["baseline"].overlay(image, cam).astype(np.int16)
                          - heatmap.overlay(image, cam).astype(np.int16))
            row["max_pixel_difference"] = int(diff.max())
        out[name] = row
        print(name, row, flush=True)
    result = {
        "command": "benchmarks/bench_overlay.py"
                   + (" --baseline <previous heatmap.py>" if args.baseline else ""),
        "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(),
                    "loadavg_1m_before": load_before},
        "sizes": out,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
