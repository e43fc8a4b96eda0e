"""Model speed on this machine, in one run: training images/s with and without tcmalloc,
inference latency / throughput of PyTorch eager vs ONNX Runtime for the shipped model, and the
ONNX Runtime cost of the same network at other input sizes (what a larger default would cost the
API and batch scoring).

    make bench-model        # = python benchmarks/bench_model.py

Writes benchmarks/results/model.json and prints a markdown table. Medians of repeated timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"

TRAIN_SNIPPET = r"""
import json, sys, time, torch
from dermsight.train.network import LesionNet, freeze_early, set_train_mode
torch.manual_seed(0); torch.set_num_threads(int(sys.argv[3]))
size, frac = int(sys.argv[1]), float(sys.argv[2])
net = LesionNet("tf_efficientnet_lite0", 8, 15, pretrained=False)
net = net.to(memory_format=torch.channels_last)
freeze_early(net, frac); set_train_mode(net)
opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
x = torch.randn(32, 3, size, size).contiguous(memory_format=torch.channels_last)
m = torch.randn(32, 15); y = torch.randint(0, 8, (32,))
rates = []
for i in range(8):
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(net(x, m), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i >= 2: rates.append(32 / (time.perf_counter() - t))
print(json.dumps(sorted(rates)[len(rates) // 2]))
"""


def train_rate(size: int, frac: float, tcmalloc: bool, threads: int) -> float:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if tcmalloc:
        env["LD_PRELOAD"] = TCMALLOC
    out = subprocess.run([sys.executable, "-c", TRAIN_SNIPPET, str(size), str(frac), str(threads)],
                         env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def inference(bundle: str | None, threads: int) -> dict[str, float]:
    import torch

    from dermsight.bundle import load_bundle
    from dermsight.predict import Dermsight
    from dermsight.train.network import LesionNet

    torch.set_num_threads(threads)
    b = load_bundle(bundle)
    model = Dermsight(b, threads=threads)
    s = b.card.input_spec.size
    d = b.card.meta_spec.dim
    net = LesionNet("tf_efficientnet_lite0", len(b.card.classes), d, pretrained=False).eval()
    # same weights as the ONNX file (read back from the run folder when present)
    ck = Path("runs/default/best.pt")
    if ck.exists():
        net.load_state_dict(torch.load(ck, map_location="cpu", weights_only=False)["model"])
    res: dict[str, float] = {}
    for bs in (1, 32):
        x = np.random.default_rng(0).standard_normal((bs, 3, s, s), dtype=np.float32)
        m = np.zeros((bs, d), np.float32)
        xt, mt = torch.from_numpy(x), torch.from_numpy(m)
        model.run_arrays(x, m)
        with torch.no_grad():
            net(xt, mt)
            eager = median_ms(lambda xt=xt, mt=mt: net(xt, mt), 30 if bs == 1 else 8)
        ort_ms = median_ms(lambda x=x, m=m: model.run_arrays(x, m), 30 if bs == 1 else 8)
        res[f"eager_ms_b{bs}"] = eager
        res[f"ort_ms_b{bs}"] = ort_ms
        res[f"eager_img_s_b{bs}"] = bs * 1000 / eager
        res[f"ort_img_s_b{bs}"] = bs * 1000 / ort_ms
    res["ort_speedup_b1"] = res["eager_ms_b1"] / res["ort_ms_b1"]
    res["ort_speedup_b32"] = res["eager_ms_b32"] / res["ort_ms_b32"]
    return res


def ort_by_size(threads: int, sizes: tuple[int, ...] = (160, 192, 224)) -> dict[str, float]:
    """ONNX Runtime batch-1 latency (1 thread, as the API runs it) and batch-32 throughput
    (``threads``) of Lite0 + metadata exported at each input size (random weights: cost only)."""
    import torch

    from dermsight.onnxsession import ort_session
    from dermsight.preprocess import MetaSpec
    from dermsight.train.export import export_onnx
    from dermsight.train.network import LesionNet

    torch.manual_seed(0)
    d = MetaSpec().dim
    net = LesionNet("tf_efficientnet_lite0", 8, d, pretrained=False).eval()
    res: dict[str, float] = {}
    for size in sizes:
        onnx = export_onnx(net, size)
        for bs, n_threads in ((1, 1), (32, threads)):
            sess = ort_session(onnx, n_threads)
            feed = {"image": np.random.default_rng(0).standard_normal((bs, 3, size, size),
                                                                      dtype=np.float32),
                    "meta": np.zeros((bs, d), np.float32)}
            sess.run(None, feed)
            ms = median_ms(lambda sess=sess, feed=feed: sess.run(None, feed), 30 if bs == 1 else 8)
            if bs == 1:
                res[f"ort_ms_b1_{size}px"] = ms
            else:
                res[f"ort_img_s_b32_{size}px"] = bs * 1000 / ms
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: shipped model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "model.json"))
    args = ap.parse_args()
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    train = {}
    for size, frac in ((160, 0.3), (160, 0.0), (224, 0.0)):
        for tc in (False, True):
            if tc and not Path(TCMALLOC).exists():
                continue
            key = f"train_img_s_{size}px_freeze{frac}_{'tcmalloc' if tc else 'glibc'}"
            train[key] = train_rate(size, frac, tc, args.threads)
    results["train"] = train
    results["inference"] = inference(args.bundle, args.threads)
    results["ort_by_input_size"] = ort_by_size(args.threads)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("| measurement | value |\n|---|---|")
    rows = {**train, **results["inference"], **results["ort_by_input_size"]}  # type: ignore[dict-item]
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
