"""What the similar cases add to one predict request, on this machine.

    .venv/bin/python benchmarks/bench_similar.py --data ../shared/data/isic-subset

Times, for real test-split images already predicted, ``Dermsight.similar(prediction, 5)`` (the
cosine kNN over the shipped reference set) and the API's ``similar_cases`` (the same plus the JSON
entries), with numpy BLAS limited to one thread as the web app does; also the one-off cost of
loading the reference set. Medians over many repetitions, beside the median of a whole
``predict`` for scale. Writes benchmarks/results/similar.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from dermsight import similar
from dermsight.parallel import limit_blas
from dermsight.predict import Dermsight
from dermsight.web.routes.reference import similar_cases

HERE = Path(__file__).resolve().parent


def median_ms(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isic-subset"))
    ap.add_argument("--split", type=Path, default=Path("configs/default-split.csv"))
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    limit_blas(1)
    model = Dermsight.load(threads=1)
    t0 = time.perf_counter()
    ref = similar.ReferenceSet.load(model.bundle.path)
    load_ms = (time.perf_counter() - t0) * 1000.0
    assert ref is not None
    _ = model.reference
    split = pd.read_csv(args.split, dtype=str, keep_default_na=False)
    ids = split.loc[split["split"] == "test", "image_id"].sort_values().head(args.images)
    paths = [args.data / "images" / f"{i}.jpg" for i in ids]
    preds = [p for p in (model.predict(path, heatmap=False) for path in paths) if p.assessable]
    knn_ms = statistics.median(median_ms(lambda p=p: model.similar(p, 5), args.reps)
                               for p in preds)
    api_ms = statistics.median(median_ms(lambda p=p: similar_cases(model, p), args.reps)
                               for p in preds)
    predict_ms = statistics.median(
        median_ms(lambda path=path: model.predict(path, heatmap=False), 10) for path in paths)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "reference_images": len(ref),
        "queries": len(preds),
        "repetitions_per_query": args.reps,
        "similar_knn_median_ms": round(knn_ms, 3),
        "similar_api_entries_median_ms": round(api_ms, 3),
        "predict_no_heatmap_median_ms": round(predict_ms, 2),
        "reference_load_ms": round(load_ms, 1),
    }
    out = HERE / "results" / "similar.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
