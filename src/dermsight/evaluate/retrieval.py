"""How well the similar-cases lists match the query's diagnosis (numpy only).

For every query image (e.g. the TEST split) with a known class, its ``k`` nearest reference images
by the model's features (:func:`dermsight.similar.knn`) are compared with its label:

* precision@k per class: the mean, over the queries of that class, of the fraction of the ``k``
  neighbours that have the query's class;
* the k-NN vote (the class most of the ``k`` neighbours have; a tie goes to the class with the
  larger summed similarity): its accuracy and balanced accuracy, beside the classifier's own on
  the same images when its suggested classes are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dermsight.similar import knn


def knn_vote(neighbour_labels: np.ndarray, similarities: np.ndarray, n_classes: int
             ) -> np.ndarray:
    """(Q, k) class indices + similarities -> (Q,) voted class (majority, ties by summed
    similarity, then by the lower class index)."""
    q = neighbour_labels.shape[0]
    votes = np.zeros((q, n_classes))
    weight = np.zeros((q, n_classes))
    rows = np.repeat(np.arange(q), neighbour_labels.shape[1])
    np.add.at(votes, (rows, neighbour_labels.ravel()), 1.0)
    np.add.at(weight, (rows, neighbour_labels.ravel()), similarities.ravel())
    # votes are whole numbers and summed similarities of k <= 100 neighbours are < 100
    return np.argmax(votes * 1000.0 + weight, axis=1)


def accuracy_figures(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy and balanced accuracy (mean recall over the classes present) with counts."""
    correct = y_true == y_pred
    recalls = [float(correct[y_true == c].mean()) for c in range(n_classes)
               if (y_true == c).any()]
    return {
        "accuracy": float(correct.mean()) if correct.size else None,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "correct": int(correct.sum()),
        "n": int(correct.size),
    }


def retrieval_metrics(
    query_embedding: np.ndarray,
    query_labels: Sequence[str],
    bank: np.ndarray,
    bank_labels: Sequence[str],
    classes: Sequence[str],
    *,
    k: int = 5,
    classifier_labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Precision@k per class and the k-NN vote against the classifier, on labelled queries.

    ``bank`` rows must be L2-normalised (``similar.normalize``); labels are class codes from
    ``classes``. Returns JSON-ready numbers with the counts they rest on.
    """
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in query_labels], np.int64)
    bank_y = np.array([index[c] for c in bank_labels], np.int64)
    if y.size == 0:
        raise ValueError("no query images to measure retrieval on")
    idx, sims = knn(query_embedding, bank, k)
    k_eff = idx.shape[1]
    neighbours = bank_y[idx]
    hits = (neighbours == y[:, None]).mean(axis=1)
    per_class: dict[str, dict[str, Any]] = {}
    for c, code in enumerate(classes):
        mask = y == c
        per_class[code] = {
            "precision_at_k": float(hits[mask].mean()) if mask.any() else None,
            "n_queries": int(mask.sum()),
            "n_reference": int((bank_y == c).sum()),
        }
    present = [v["precision_at_k"] for v in per_class.values() if v["precision_at_k"] is not None]
    vote = knn_vote(neighbours, sims, len(classes))
    out: dict[str, Any] = {
        "k": k_eff,
        "n_queries": int(y.size),
        "n_reference": int(bank_y.size),
        "precision_at_k": {
            "per_class": per_class,
            "mean_over_queries": float(hits.mean()),
            "mean_over_classes": float(np.mean(present)),
        },
        "knn_vote": accuracy_figures(y, vote, len(classes)),
        "mean_top1_similarity": float(sims[:, 0].mean()),
    }
    if classifier_labels is not None:
        pred = np.array([index[c] for c in classifier_labels], np.int64)
        out["classifier"] = accuracy_figures(y, pred, len(classes))
    return out
