"""The shipped gate on four photos of people it never saw ("The shipped gate on four more photos
of people" in docs/experiments/README.md). The pictures are the distinct test images of the
``face_recognition`` 1.3.0 source distribution on PyPI (portraits of two US presidents),
fetched by pip into ``--cache``:

    .venv/bin/python docs/experiments/gate-people/people.py --cache /tmp/face-recognition \
        --out docs/experiments/gate-people/people.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import beta

from dermsight import Dermsight
from dermsight.evaluate.negatives import _fit, _views
from dermsight.io.decode import to_rgb

SDIST = "face_recognition-1.3.0.tar.gz"
PICTURES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")  # the distinct ones
VIEWS = 8


def pictures(cache: Path) -> dict[str, np.ndarray]:
    """The four pictures as RGB arrays, downloading the source distribution once."""
    if not (cache / SDIST).exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", "face_recognition==1.3.0", "-d", str(cache), "-q"], check=True)
    out = {}
    with tarfile.open(cache / SDIST) as tar:
        for name in PICTURES:
            member = tar.extractfile(f"face_recognition-1.3.0/tests/test_images/{name}")
            if member is None:
                raise SystemExit(f"{name} missing from {SDIST}")
            with Image.open(member) as im:
                out[name] = to_rgb(im)
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model = Dermsight.load()
    rng = np.random.default_rng(0)
    rows = []
    for name, img in pictures(args.cache).items():
        for tag, view in _views(_fit(img), rng, VIEWS):
            r = model.predict(view)
            flagged = any(f.code == "not_dermoscopic" for f in r.flags)
            outcome = ("refused" if not r.assessable
                       else "flagged" if flagged else "silent")
            rows.append({"picture": name, "view": tag, "size": list(view.shape[:2]),
                         "outcome": outcome, "risk": r.risk, "prediction": r.prediction,
                         "flags": [f.code for f in r.flags]})
    n = len(rows)
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("refused", "flagged", "silent")}
    through = counts["flagged"] + counts["silent"]
    doc = {"bundle_version": model.card.version, "views": n, "counts": counts,
           "let_through": {"k": through, "share": through / n,
                           "ci95": clopper_pearson(through, n)},
           "silently": {"k": counts["silent"], "share": counts["silent"] / n,
                        "ci95": clopper_pearson(counts["silent"], n)},
           "rows": rows}
    print(json.dumps({k: v for k, v in doc.items() if k != "rows"}, indent=1))
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
