"""Is the model naming the *source* instead of the lesion?

A class that comes from one source only (UNK: SIIM-ISIC 2020) invites a shortcut: "2020-looking
image -> UNK". This table shows, per test source and true class, how often each class-only-from-
one-source is suggested and its mean probability, so a reader sees whether e.g. 2020 melanomas
are called UNK, or HAM10000 nevi never are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dermsight.evaluate.metrics import Offsets, predicted_labels


def single_source_classes(labels: npt.ArrayLike, sources: Sequence[str],
                          classes: Sequence[str]) -> dict[str, str]:
    """Classes whose (training) examples all come from one source: ``{class: source}``."""
    y = np.asarray(labels, np.int64)
    src = np.asarray(sources, dtype=object)
    out = {}
    for j, c in enumerate(classes):
        s = set(src[y == j].tolist())
        if len(s) == 1:
            out[c] = str(next(iter(s)))
    return out


def source_check(
    labels: npt.ArrayLike, probs: npt.ArrayLike, sources: Sequence[str], classes: Sequence[str],
    watch: dict[str, str], *, offsets: Offsets = None, min_n: int = 10,
) -> dict[str, Any]:
    """Per (source, true class) with at least ``min_n`` images: how often each watched class is
    suggested (under the bundle's decision rule) and its mean probability."""
    y = np.asarray(labels, np.int64)
    p = np.asarray(probs, np.float64)
    src = np.asarray(sources, dtype=object)
    pred = predicted_labels(p, offsets)
    rows = []
    for s in sorted(set(src.tolist())):
        for j, c in enumerate(classes):
            idx = (src == s) & (y == j)
            n = int(idx.sum())
            if n < min_n:
                continue
            row: dict[str, Any] = {"source": s, "true_class": c, "n": n}
            for w in watch:
                k = list(classes).index(w)
                row[f"suggested_{w}"] = round(float(np.mean(pred[idx] == k)), 4)
                row[f"mean_p_{w}"] = round(float(p[idx, k].mean()), 4)
            rows.append(row)
    return {"watched": watch, "min_n": min_n, "rows": rows,
            "note": "classes whose training images all come from one source; a model that "
                    "learned the source would suggest them for that source's other classes "
                    "and never elsewhere"}
