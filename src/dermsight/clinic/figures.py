"""The clinic's own figures: how each model version did on the clinic's confirmed lesions.

One item per (lesion with a confirmed diagnosis, model version): that model's latest assessable
visit of the lesion whose body site is not in doubt. A confirmed lesion none of whose visits by a
model version could be assessed ("cannot assess": the gate refused the photo) is no item of that
version, and is counted (``n_left_out_cannot_assess``). A visit carrying a warning that its body
site contradicts the lesion's or another visit's (``sites.site_in_doubt``: the photo may be of
another lesion) is no item either, as in the confirmed-case export and similar cases; a lesion
whose assessable visits all carry one is counted apart (``n_left_out_site_in_doubt``). Figures
come from ``dermsight.evaluate.metrics`` with intervals over patients (groups) as ``dermsight
evaluate`` gives them (``evaluate.bootstrap``'s ``WILSON`` method): a proportion (sensitivity,
specificity) the Wilson score interval widened to the group bootstrap, so 7 of 7 is not "1.000 to
1.000"; the AUC the group bootstrap, through the same ``case_intervals`` as ``dermsight evaluate``:
it names its ``positives`` (melanomas) and ``negatives`` (the others), and where the middle 95 % of
the resamples all gave one value (a perfect AUC on few lesions) it shows no interval (``lo``/``hi``
``None``) and its ``note`` says so, rather than "1.000 to 1.000". A figure with too few cases
behind it is withheld (``None``) and the note says why. A lesion confirmed Other / unknown
(``taxonomy.UNSPECIFIED``, UNK) is neither benign nor malignant: it is left out of the
sensitivity, specificity and AUC (counted in the note) and kept in the confusion matrix, where
UNK is one of the model's classes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight import taxonomy
from dermsight.clinic.models import Diagnosis, Lesion, Visit
from dermsight.clinic.sites import site_in_doubt
from dermsight.evaluate.bootstrap import case_intervals
from dermsight.evaluate.metrics import binary_auc, confusion_counts, rates_at_threshold
from dermsight.predict import CANNOT_ASSESS

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


def _confirmed_visits(db: DbSession) -> Any:
    """Every visit of a lesion with a confirmed diagnosis, oldest first."""
    return db.execute(
        select(Visit.lesion_id, Visit.taken_at, Visit.id, Visit.model_name, Visit.model_version,
               Visit.risk, Visit.result_json, Diagnosis.code, Lesion.patient_id)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .join(Lesion, Lesion.id == Visit.lesion_id)
        .order_by(Visit.taken_at, Visit.id))


@dataclass(frozen=True)
class ConfirmedCases:
    """``items``: per (model name, version), one item per confirmed lesion (its latest
    assessable visit by that version whose body site is not in doubt); ``unassessable``: per
    version, the confirmed lesions it saw but could assess on no visit; ``n_unassessable``: the
    confirmed lesions with visits, none of which any version could assess (in no version's
    figures); ``site_in_doubt`` / ``n_site_in_doubt``: the same for the confirmed lesions with
    an assessable visit, every one of which carries a site warning (``sites.site_in_doubt``)."""

    items: dict[tuple[str, str], list[ConfirmedItem]]
    unassessable: dict[tuple[str, str], int]
    n_unassessable: int
    site_in_doubt: dict[tuple[str, str], int] = field(default_factory=dict)
    n_site_in_doubt: int = 0


def confirmed_cases(db: DbSession) -> ConfirmedCases:
    """The confirmed lesions per model version, and those left out: no visit of which could be
    assessed, or every assessable visit of which carries a site warning."""
    latest: dict[tuple[str, str, int], Any] = {}
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    # per version, the lesions with an assessable visit (site in doubt or not)
    assessable: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in _confirmed_visits(db):
        seen[(r.model_name, r.model_version)].add(r.lesion_id)
        if r.risk == CANNOT_ASSESS:
            continue
        assessable[(r.model_name, r.model_version)].add(r.lesion_id)
        if not site_in_doubt(r.result_json):
            latest[(r.model_name, r.model_version, r.lesion_id)] = r  # later rows win
    out: dict[tuple[str, str], list[ConfirmedItem]] = defaultdict(list)
    for (name, version, _), r in sorted(latest.items()):
        result = json.loads(r.result_json)
        out[(name, version)].append(ConfirmedItem(
            patient_id=r.patient_id, lesion_id=r.lesion_id, code=r.code,
            referred=r.risk == "high", probabilities=result["probabilities"],
            prediction=result["prediction"]))
    in_figures = {lesion for (_, _, lesion) in latest}
    any_assessable: set[int] = set().union(*assessable.values())
    unassessable = {key: len(lesions - assessable.get(key, set()))
                    for key, lesions in seen.items()}
    in_doubt = {key: len(assessable.get(key, set()) - {it.lesion_id for it in out.get(key, [])})
                for key in seen}
    n_unassessable = len(set().union(*seen.values()) - any_assessable) if seen else 0
    n_in_doubt = len(any_assessable - in_figures)
    return ConfirmedCases(dict(out), unassessable, n_unassessable, in_doubt, n_in_doubt)


def _proportion(entry: dict[str, Any], k: int, n: int) -> dict[str, Any]:
    """A ``case_intervals`` entry of ``k`` of ``n`` lesions as the dashboard sends it."""
    return {"value": entry["value"], "lo": entry["lo"], "hi": entry["hi"], "k": k, "n": n,
            "method": entry["method"]}


def model_figures(name: str, version: str, items: Sequence[ConfirmedItem], left_out: int = 0,
                  left_out_site: int = 0) -> dict[str, Any]:
    """The figures of one model version on its items; ``left_out``: the confirmed lesions it saw
    on no assessable visit; ``left_out_site``: those whose every assessable visit carries a site
    warning (both said in the note)."""
    classes = list(items[0].probabilities) if items else list(taxonomy.CLASS_CODES)
    # a lesion confirmed Other / unknown is neither benign nor malignant: in no rate or AUC
    rated = [it for it in items if it.code != taxonomy.UNSPECIFIED]
    n_unk = len(items) - len(rated)
    groups = np.array([it.patient_id for it in rated])
    malignant = np.array([it.code in taxonomy.MALIGNANT for it in rated], dtype=bool)
    referred = np.array([it.referred for it in rated], dtype=np.float64)
    is_mel = np.array([it.code == "MEL" for it in rated], dtype=bool)
    p_mel = np.array([it.probabilities.get("MEL", 0.0) for it in rated], dtype=np.float64)
    n, n_mal, n_mel = len(rated), int(malignant.sum()), int(is_mel.sum())
    notes = []
    if n_unk:
        notes.append(f"{n_unk} lesion{'s' if n_unk != 1 else ''} confirmed Other / unknown (UNK) "
                     "left out of sensitivity, specificity and AUC: "
                     f"{'they are' if n_unk != 1 else 'it is'} neither benign nor malignant")

    def rates(w: npt.NDArray[np.float64] | None) -> dict[str, float | int | None]:
        sens, spec = rates_at_threshold(malignant, referred, 0.5, w)
        # the counts let case_intervals find the cases behind each rate (``cases_behind``)
        return {"sensitivity": sens, "specificity": spec, "n": n, "n_malignant": n_mal}

    refer: dict[str, Any] = {"sensitivity": None, "specificity": None}
    if n_mal >= MIN_EACH and n - n_mal >= MIN_EACH:
        ci = case_intervals(rates, n, groups, n_boot=N_BOOT, seed=0)
        k_sens = int((malignant & (referred > 0)).sum())
        k_spec = int((~malignant & (referred == 0)).sum())
        refer = {"sensitivity": _proportion(ci["sensitivity"], k_sens, n_mal),
                 "specificity": _proportion(ci["specificity"], k_spec, n - n_mal)}
    else:
        notes.append(f"refer-tier sensitivity/specificity withheld: {n_mal} malignant and "
                     f"{n - n_mal} benign confirmed lesions (at least {MIN_EACH} of each needed)")
    mel_auc = None
    if n_mel >= MIN_EACH and n - n_mel >= MIN_EACH:
        # ``dermsight evaluate``'s AUC entry: positives and negatives, and no interval (a note)
        # where the bootstrap's resamples all gave one value
        auc = case_intervals(lambda w: {"mel_auc": binary_auc(is_mel, p_mel, w), "n": n,
                                        "n_mel": n_mel},
                             n, groups, n_boot=N_BOOT, seed=0, keys=["mel_auc"])["mel_auc"]
        mel_auc = {"value": auc["value"], "lo": auc["lo"], "hi": auc["hi"], "n": n,
                   "positives": n_mel, "negatives": n - n_mel, "method": auc["method"]}
        if auc.get("note"):
            mel_auc["note"] = auc["note"]
    else:
        notes.append(f"melanoma AUC withheld: {n_mel} melanomas and {n - n_mel} other confirmed "
                     f"lesions (at least {MIN_EACH} of each needed)")
    if left_out:
        notes.append(f"{left_out} confirmed lesion{'s' if left_out != 1 else ''} left out: no "
                     "photo of it could be assessed by this model version (cannot assess)")
    if left_out_site:
        notes.append(f"{left_out_site} confirmed lesion{'s' if left_out_site != 1 else ''} left "
                     "out: every photo of it this model version could assess carries a warning "
                     "that its body site contradicts the lesion's or another visit's (the photo "
                     "may be of another lesion)")
    in_model = [i for i, it in enumerate(items) if it.code in classes]
    if len(in_model) < len(items):
        notes.append(f"{len(items) - len(in_model)} lesions with a diagnosis this model does "
                     "not know are left out of the confusion matrix")
    matrix: list[list[int]] = [[0] * len(classes) for _ in classes]
    if in_model:
        y = np.array([classes.index(items[i].code) for i in in_model])
        onehot = np.zeros((len(in_model), len(classes)))
        onehot[np.arange(len(in_model)), [classes.index(items[i].prediction) for i in in_model]] = 1
        cm = confusion_counts(y, onehot)[:, :-1]
        matrix = cm.astype(int).tolist()
    return {
        "name": name, "version": version, "n_lesions": len(items), "n_malignant": n_mal,
        "n_mel": n_mel, "n_unk": n_unk,
        "n_left_out_cannot_assess": left_out, "n_left_out_site_in_doubt": left_out_site,
        "refer": refer, "mel_auc": mel_auc,
        "confusion": {"labels": classes, "matrix": matrix},
        "note": "; ".join(notes) if notes else
        f"95 % intervals over patients: sensitivity and specificity by the Wilson score "
        f"interval, widened to the bootstrap ({N_BOOT} resamples) where that is wider; the AUC "
        "by the bootstrap (no interval where its resamples all gave one value); one item per "
        "lesion (its latest visit assessed by this model version)",
    }


def dashboard(db: DbSession) -> dict[str, Any]:
    """Per model version its figures; ``n_left_out_cannot_assess``: the confirmed lesions in no
    version's figures because none of their visits could be assessed;
    ``n_left_out_site_in_doubt``: those in no version's figures because every assessable visit
    of them carries a site warning (the photo may be of another lesion)."""
    found = confirmed_cases(db)
    return {"models": [model_figures(*key, items, found.unassessable.get(key, 0),
                                     found.site_in_doubt.get(key, 0))
                       for key, items in found.items.items()],
            "n_left_out_cannot_assess": found.n_unassessable,
            "n_left_out_site_in_doubt": found.n_site_in_doubt}
