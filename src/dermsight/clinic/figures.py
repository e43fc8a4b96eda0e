"""The clinic's own figures: how each model version did on the clinic's confirmed lesions.

One item per (lesion with a confirmed diagnosis, model version): that model's latest assessable
visit of the lesion. Figures come from ``dermsight.evaluate.metrics`` with group-bootstrap CIs
(``evaluate.bootstrap``, groups = patients); a figure with too few cases behind it is withheld
(``None``) and the note says why.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight import taxonomy
from dermsight.clinic.models import Diagnosis, Lesion, Visit
from dermsight.evaluate.bootstrap import bootstrap
from dermsight.evaluate.metrics import binary_auc, confusion_counts, rates_at_threshold

#: fewest positives AND negatives behind a sensitivity/specificity or an AUC
MIN_EACH = 5
N_BOOT = 500


@dataclass(frozen=True)
class ConfirmedItem:
    patient_id: int
    lesion_id: int
    code: str
    referred: bool
    probabilities: dict[str, float]
    prediction: str


def confirmed_items(db: DbSession) -> dict[tuple[str, str], list[ConfirmedItem]]:
    """Per (model name, version): one item per confirmed lesion (its latest assessable visit)."""
    rows = db.execute(
        select(Visit.lesion_id, Visit.taken_at, Visit.id, Visit.model_name, Visit.model_version,
               Visit.risk, Visit.result_json, Diagnosis.code, Lesion.patient_id)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .join(Lesion, Lesion.id == Visit.lesion_id)
        .where(Visit.risk != "cannot_assess")
        .order_by(Visit.taken_at, Visit.id))
    latest: dict[tuple[str, str, int], Any] = {}
    for r in rows:
        latest[(r.model_name, r.model_version, r.lesion_id)] = r  # later rows win
    out: dict[tuple[str, str], list[ConfirmedItem]] = defaultdict(list)
    for (name, version, _), r in sorted(latest.items()):
        result = json.loads(r.result_json)
        out[(name, version)].append(ConfirmedItem(
            patient_id=r.patient_id, lesion_id=r.lesion_id, code=r.code,
            referred=r.risk == "high", probabilities=result["probabilities"],
            prediction=result["prediction"]))
    return out


def _ci(d: dict[str, float | int | None], k: int | None = None, n: int | None = None
        ) -> dict[str, Any]:
    out: dict[str, Any] = {"value": d["value"], "lo": d["lo"], "hi": d["hi"]}
    if k is not None:
        out["k"] = k
    out["n"] = n if n is not None else d["n"]
    return out


def model_figures(name: str, version: str, items: Sequence[ConfirmedItem]) -> dict[str, Any]:
    classes = list(items[0].probabilities) if items else list(taxonomy.CLASS_CODES)
    groups = np.array([it.patient_id for it in items])
    malignant = np.array([it.code in taxonomy.MALIGNANT for it in items], dtype=bool)
    referred = np.array([it.referred for it in items], dtype=np.float64)
    is_mel = np.array([it.code == "MEL" for it in items], dtype=bool)
    p_mel = np.array([it.probabilities.get("MEL", 0.0) for it in items], dtype=np.float64)
    n, n_mal, n_mel = len(items), int(malignant.sum()), int(is_mel.sum())
    notes = []

    def rates(w: npt.NDArray[np.float64] | None) -> dict[str, float | None]:
        sens, spec = rates_at_threshold(malignant, referred, 0.5, w)
        return {"sensitivity": sens, "specificity": spec}

    refer: dict[str, Any] = {"sensitivity": None, "specificity": None}
    if n_mal >= MIN_EACH and n - n_mal >= MIN_EACH:
        ci = bootstrap(rates, n, groups, n_boot=N_BOOT, seed=0)
        k_sens = int((malignant & (referred > 0)).sum())
        k_spec = int((~malignant & (referred == 0)).sum())
        refer = {"sensitivity": _ci(ci["sensitivity"], k_sens, n_mal),
                 "specificity": _ci(ci["specificity"], k_spec, n - n_mal)}
    else:
        notes.append(f"refer-tier sensitivity/specificity withheld: {n_mal} malignant and "
                     f"{n - n_mal} benign confirmed lesions (at least {MIN_EACH} of each needed)")
    mel_auc = None
    if n_mel >= MIN_EACH and n - n_mel >= MIN_EACH:
        ci = bootstrap(lambda w: {"auc": binary_auc(is_mel, p_mel, w)}, n, groups,
                       n_boot=N_BOOT, seed=0)
        mel_auc = _ci(ci["auc"], n=n)
    else:
        notes.append(f"melanoma AUC withheld: {n_mel} melanomas and {n - n_mel} other confirmed "
                     f"lesions (at least {MIN_EACH} of each needed)")
    in_model = [i for i, it in enumerate(items) if it.code in classes]
    if len(in_model) < n:
        notes.append(f"{n - len(in_model)} lesions with a diagnosis this model does not know "
                     "are left out of the confusion matrix")
    matrix: list[list[int]] = [[0] * len(classes) for _ in classes]
    if in_model:
        y = np.array([classes.index(items[i].code) for i in in_model])
        onehot = np.zeros((len(in_model), len(classes)))
        onehot[np.arange(len(in_model)), [classes.index(items[i].prediction) for i in in_model]] = 1
        cm = confusion_counts(y, onehot)[:, :-1]
        matrix = cm.astype(int).tolist()
    return {
        "name": name, "version": version, "n_lesions": n, "n_malignant": n_mal, "n_mel": n_mel,
        "refer": refer, "mel_auc": mel_auc,
        "confusion": {"labels": classes, "matrix": matrix},
        "note": "; ".join(notes) if notes else
        f"95 % bootstrap intervals over patients ({N_BOOT} resamples); one item per lesion "
        "(its latest visit assessed by this model version)",
    }


def dashboard(db: DbSession) -> dict[str, Any]:
    return {"models": [model_figures(name, version, items)
                       for (name, version), items in confirmed_items(db).items()]}
