"""What the heatmap costs per image: the old map (the classification's own 5 x 5 CAM of the centre
square) against the whole-image half-stride map (``dermsight.camgrid``), both drawn as the API's
112 px PNG.

    python benchmarks/bench_heatmap.py            # 50 real isic-subset images
    python benchmarks/bench_heatmap.py --n 100

One process, one ONNX Runtime thread (as the API runs it). Per image, in turn: the prediction
without a heatmap (decode excluded), then the old map + PNG, then the new map + PNG; for the
square 256 px images and for a 4:3 crop (256 x 192) of each. Medians are reported; writes
``benchmarks/results/heatmap.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import Dermsight, camgrid, heatmap
from dermsight.io.decode import decode_image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DERMSIGHT_SHARED_DATA",
                          REPO.parent / "shared" / "data" / "isic-subset"))
RESULTS = REPO / "benchmarks" / "results" / "heatmap.json"
API_PNG_PX = 112  # dermsight.web.app.HEATMAP_PX


def ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    model = Dermsight.load(threads=1)
    files = sorted((DATA / "images").glob("*.jpg"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    images = [decode_image(f) for f in files]
    model.predict(images[0])  # warm-up
    out: dict[str, Any] = {}
    for name, crop in (("square_256", slice(None)), ("crop_4x3_256x192", slice(32, 224))):
        times: dict[str, list[float]] = {"predict_no_heatmap": [], "old_map_png": [],
                                         "new_map_png": []}
        for rgb in images:
            img = np.ascontiguousarray(rgb[crop])
            x, m = model.prepare(img, None)
            res = model.run_arrays(x[None], m[None])
            top = int(np.argmax(res["logits"][0]))

            def plain(img: np.ndarray = img) -> None:
                model.predict(img, heatmap=False)

            def old(cam: np.ndarray = res["cam"][0, top]) -> None:
                heatmap.heatmap_base64(heatmap.normalize_cam(cam), API_PNG_PX)

            def new(img: np.ndarray = img, cam: np.ndarray = res["cam"][0, top],
                    top: int = top) -> None:
                heatmap.heatmap_base64(
                    camgrid.class_map(model.session, img, model.card, None, top, cam), API_PNG_PX)

            times["predict_no_heatmap"].append(ms(plain))
            times["old_map_png"].append(ms(old))
            times["new_map_png"].append(ms(new))
        med = {k: round(statistics.median(v), 2) for k, v in times.items()}
        med["added_ms_new_minus_old"] = round(med["new_map_png"] - med["old_map_png"], 2)
        out[name] = med
        print(name, med)
    doc = {
        "command": "benchmarks/bench_heatmap.py",
        "images": len(images),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_1m_before": os.getloadavg()[0]},
        "median_ms": out,
    }
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
