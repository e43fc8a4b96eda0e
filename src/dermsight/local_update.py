"""A clinic's own labelled cases: fit, validate and write a local update of the suggested class
(``dermsight bundle adapt``).

A network trained on other cameras loses the held-out clinic's keratoses (docs/experiments,
"A clinic's own labelled cases"); a few hundred of the clinic's own labelled cases bring much
of it back. The update here is that section's "recalibrate": a multinomial logistic regression
(C = 1, balanced class weights) from the bundle's nine calibrated log-probabilities to the
classes the clinic's cases cover (``S``: at least ``MIN_CLASS_IMAGES`` usable cases each). It
changes only the suggested class, only when the bundle's own rule suggests a class of ``S``, and
never a suggestion of a malignant class (``kept``: the card's ``malignant``), so melanoma recall
cannot fall (``decision.LocalUpdate``; docs/experiments, "Does an accepted local update hold on
the clinic's other images?": a statistical melanoma bound on a few dozen melanomas did not hold);
probabilities, the malignant probability, the tiers and the gate stay.

Whenever the update is assessed, accepted or refused, the same cases also show how the
(unchanged) refer tier does on the clinic's camera: the share of its malignant cases served
"high" (sensitivity) and of its other cases not (specificity), with group-bootstrap intervals,
against the sensitivity the threshold was fitted for on the model's own validation images
(``refer_on_cases``). On a camera the model never saw that sensitivity can fall below the fitted
one (held-out ISIC 2017: 0.91 in two draws of the source-balanced recipe, docs/experiments
v2.31-v2.32); the command says so.

Before anything is written, the update is validated on the clinic's own cases: two
group-disjoint folds (stratified by class), each scored by an update fitted on the other, against
the unchanged rule on the same images — balanced accuracy over ``S`` (a suggestion outside ``S``
counts as wrong) with a paired group-bootstrap interval, and each class's recall. It is accepted
only if the difference's lower bound is above 0 and melanoma recall (when MEL is in ``S``) falls
by no more than ``MEL_RECALL_TOLERANCE``; otherwise ``UpdateRefused`` carries the figures.
Fitting needs scikit-learn (the ``train`` extra); serving an adapted bundle needs only numpy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from dermsight.batch.schema import TTA_TRUE
from dermsight.bundle import CARD_FILE, Bundle, BundleError, load_bundle, write_manifest
from dermsight.decision import DecisionRule, LocalUpdate, balanced_accuracy_of, log_probs
from dermsight.errors import DermsightError
from dermsight.evaluate.bootstrap import bootstrap, case_intervals
from dermsight.evaluate.metrics import rates_at_threshold
from dermsight.quiet_warnings import sklearn_notes

if TYPE_CHECKING:
    from dermsight.batch.summary import RunSummary

__all__ = ["MAX_NAME", "MIN_CLASS_IMAGES", "MIN_IMAGES", "AdaptInputError", "Adapted",
           "Assessment", "LocalCases", "NoLabels", "UpdateRefused", "adapt",
           "adapt_bundle", "assess_update", "cases_from_scores", "fit_update",
           "fitted_refer_sensitivity", "refer_on_cases", "render_refer", "write_adapted"]

#: fewer usable labelled cases than this: no update (v2.15: 25-50 cases made things worse)
MIN_IMAGES = 100
#: a class takes part in the update only with at least this many usable cases
MIN_CLASS_IMAGES = 10
#: the largest fall of melanoma recall (suggested class, cross-fitted) an update may bring
MEL_RECALL_TOLERANCE = 0.05
#: the logistic regression's inverse regularisation strength (v2.15's "recalibrate")
C_INVERSE = 1.0
FOLDS = 2
#: the scikit-learn notes the fold split has printed in this process (each said once)
_TOLD: set[str] = set()
N_BOOT = 1000
#: the longest clinic name the card takes
MAX_NAME = 200


class AdaptInputError(DermsightError, ValueError):
    """An input of ``adapt`` that cannot be used (a bad name, a used output folder)."""


class NoLabels(AdaptInputError):
    """The scored images carry no diagnosis: there is nothing to fit an update on."""


class UpdateRefused(DermsightError):
    """The clinic's cases do not support an update (too few, or it does not beat the unchanged
    rule on them); ``assessment`` holds the figures when it got that far."""

    def __init__(self, message: str, assessment: Assessment | None = None) -> None:
        super().__init__(message)
        self.assessment = assessment


@dataclass
class LocalCases:
    """The usable labelled cases: calibrated probabilities, class indices and bootstrap groups."""

    probs: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    groups: npt.NDArray[np.str_]
    #: rows left out, by reason
    left_out: dict[str, int] = field(default_factory=dict)
    #: whether each case was served the "high" (refer) tier; None when not known
    referred: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self, classes: Sequence[str]) -> dict[str, int]:
        n = np.bincount(self.labels, minlength=len(classes))
        return {c: int(k) for c, k in zip(classes, n, strict=True) if k}


@dataclass
class Assessment:
    """The cross-fitted comparison on the clinic's cases (``to_dict`` goes into the card)."""

    update_classes: list[str]
    counts: dict[str, int]
    balanced_accuracy: dict[str, dict[str, float | int | None]]
    recall: dict[str, dict[str, float]]
    accepted: bool
    reasons: list[str]
    left_out: dict[str, int]
    seed: int
    #: the unchanged refer tier on these cases (``refer_on_cases``); None when not measurable
    refer: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": (f"{FOLDS} group-disjoint folds stratified by class, each scored by an "
                       "update fitted on the other; against the unchanged rule on the same "
                       f"images; paired group bootstrap, {N_BOOT} resamples, 95 % intervals"),
            "rule": ("accepted when the balanced accuracy difference's lower bound is above 0 "
                     f"and melanoma recall falls by at most {MEL_RECALL_TOLERANCE:g}"),
            "update_classes": self.update_classes, "cases_per_class": self.counts,
            "balanced_accuracy": self.balanced_accuracy, "recall": self.recall,
            "accepted": self.accepted, "reasons": self.reasons, "left_out": self.left_out,
            "seed": self.seed, "refer_tier": self.refer,
        }

    def render(self) -> str:
        ba = self.balanced_accuracy
        lines = [f"cases: {sum(self.counts.values())} ("
                 + ", ".join(f"{c} {n}" for c, n in self.counts.items()) + ")",
                 f"update classes: {', '.join(self.update_classes)}",
                 "balanced accuracy over them (cross-fitted): unchanged "
                 f"{_fmt(ba['unchanged'])}, updated {_fmt(ba['updated'])}, difference "
                 f"{_fmt(ba['difference'], signed=True)}"]
        for c, r in self.recall.items():
            lines.append(f"  {c} recall {r['unchanged']:.3f} -> {r['updated']:.3f}")
        if self.refer is not None:
            lines.extend(render_refer(self.refer))
        if self.left_out:
            lines.append("left out: " + ", ".join(f"{n} {why}" for why, n in
                                                  self.left_out.items()))
        lines.append(("accepted: " if self.accepted else "refused: ") + "; ".join(self.reasons))
        return "\n".join(lines)


def _fmt(ci: dict[str, float | int | None], signed: bool = False) -> str:
    def num(v: float | int | None) -> str:
        return "n/a" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")

    cases = f"; {ci['k']} of {ci['n']}" if ci.get("k") is not None else ""
    return f"{num(ci['value'])} ({num(ci['lo'])} to {num(ci['hi'])}{cases})"


def refer_on_cases(cases: LocalCases, classes: Sequence[str], malignant: Sequence[str],
                   fitted_for: float | None, *, seed: int = 0,
                   n_boot: int = N_BOOT) -> dict[str, Any] | None:
    """The refer tier as served on the clinic's cases: sensitivity over the cases labelled with a
    ``malignant`` class, specificity over the others (95 % Wilson intervals of k of n, widened to
    the group bootstrap where it reaches further), beside
    ``fitted_for`` (the sensitivity its threshold was fitted for on the model's validation
    images). None when the tiers are not known or the cases lack either kind."""
    if cases.referred is None:
        return None
    sick = np.isin(cases.labels, [i for i, c in enumerate(classes) if c in set(malignant)])
    if not sick.any() or sick.all():
        return None
    high = cases.referred

    counts = {"n": len(cases), "n_malignant": int(sick.sum())}  # the cases behind each figure

    def figures(w: npt.NDArray[np.float64] | None) -> dict[str, float | int | None]:
        sens, spec = rates_at_threshold(sick, high.astype(float), 1.0, w)  # referred: 1 >= 1
        return {"sensitivity": sens, "specificity": spec, **counts}

    # Wilson interval of k of n, widened to the group bootstrap (as `dermsight evaluate`): the
    # percentile bootstrap alone collapses to "1.000 (1.000 to 1.000)" on 60 of 60
    ci = case_intervals(figures, len(cases), cases.groups, n_boot=n_boot, seed=seed,
                        keys=("sensitivity", "specificity"))
    value = ci["sensitivity"]["value"]
    sens = float(value) if isinstance(value, (int, float)) else None
    below = fitted_for is not None and sens is not None and sens < fitted_for
    return {
        "malignant_classes": [c for c in classes if c in set(malignant)],
        "n_malignant": int(sick.sum()), "n_other": int((~sick).sum()),
        "malignant_referred": int((sick & high).sum()),
        "others_referred": int((~sick & high).sum()),
        "sensitivity": {k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in ci["sensitivity"].items()},
        "specificity": {k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in ci["specificity"].items()},
        "fitted_sensitivity": fitted_for, "below_fitted": bool(below),
        "note": ("the refer tier is the model's, unchanged by any local update; a case the gate "
                 "refused is not counted"),
    }


def render_refer(refer: dict[str, Any]) -> list[str]:
    """``refer_on_cases``'s figures as the command prints them."""
    lines = [f"refer tier on these cases (the model's, unchanged): {refer['malignant_referred']} "
             f"of {refer['n_malignant']} malignant cases referred, sensitivity "
             f"{_fmt(refer['sensitivity'])}; {refer['others_referred']} of {refer['n_other']} "
             f"others referred, specificity {_fmt(refer['specificity'])}"]
    fitted = refer["fitted_sensitivity"]
    if refer["below_fitted"]:
        lines.append(f"  WARNING: below the sensitivity of {fitted:.2f} its threshold was fitted "
                     "for on the model's validation images: on these cases the refer tier "
                     "misses more malignant lesions than the model card says")
    elif fitted is not None:
        lines.append(f"  (its threshold was fitted for a sensitivity of {fitted:.2f} on the "
                     "model's validation images)")
    return lines


def fitted_refer_sensitivity(card_extra: dict[str, Any]) -> float | None:
    """The sensitivity a bundle's refer threshold was fitted for: its training config's
    ``calibration.refer_sensitivity``, else its measured validation figure, else None."""
    config = ((card_extra.get("training") or {}).get("config") or {}).get("calibration") or {}
    value = config.get("refer_sensitivity")
    if value is None:
        value = ((card_extra.get("metrics") or {}).get("validation") or {}).get(
            "refer_sensitivity")
    return None if value is None else float(value)


def cases_from_scores(frame: pd.DataFrame, classes: Sequence[str]) -> LocalCases:
    """The usable rows of a ``dermsight batch`` output: scored, not refused by the gate, with a
    label among ``classes``. Groups: the reader's group, else the image id."""
    error = frame["error"].notna() if "error" in frame else pd.Series(False, index=frame.index)
    refused = ~error & (frame["risk"] == "cannot_assess")
    label = frame["label"] if "label" in frame else pd.Series(None, index=frame.index)
    if bool(error.all()):
        raise AdaptInputError(f"none of the {len(frame)} images could be read (see the error "
                              "column of the scores)")
    if not label[~error].notna().any():
        raise NoLabels("the images have no diagnosis labels: adapt needs each case's diagnosis "
                       "(a diagnosis column in the CSV, or the format's label field)")
    unlabelled = ~error & ~refused & label.isna()
    foreign = ~error & ~refused & label.notna() & ~label.isin(list(classes))
    usable = ~(error | refused | unlabelled | foreign)
    left_out = {"unreadable images": int(error.sum()), "refused by the gate": int(refused.sum()),
                "without a label": int(unlabelled.sum()),
                "labelled with a class the model does not have": int(foreign.sum())}
    rows = frame[usable]
    probs = rows[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(v)] for v in rows["label"]], np.int64)
    groups = rows["group"].where(rows["group"].notna(), rows["id"]).astype(str).to_numpy()
    return LocalCases(probs=probs, labels=labels, groups=groups,
                      left_out={k: v for k, v in left_out.items() if v},
                      referred=(rows["risk"] == "high").to_numpy(bool))


def update_classes(cases: LocalCases, classes: Sequence[str],
                   min_class_images: int = MIN_CLASS_IMAGES) -> list[str]:
    """The classes with at least ``min_class_images`` usable cases, in model order."""
    counts = np.bincount(cases.labels, minlength=len(classes))
    return [c for c, k in zip(classes, counts, strict=True) if k >= min_class_images]


def fit_update(probs: npt.ArrayLike, labels: npt.ArrayLike, classes: Sequence[str],
               subset: Sequence[str], *, kept: Sequence[str], name: str, created: str,
               evaluation: dict[str, Any] | None = None) -> LocalUpdate:
    """The logistic regression on the cases labelled with a class of ``subset``; suggestions of
    the ``kept`` classes are never changed by it."""
    from sklearn.linear_model import LogisticRegression

    idx = [list(classes).index(c) for c in subset]
    y = np.asarray(labels, np.int64)
    keep = np.isin(y, idx)
    x = log_probs(np.asarray(probs, np.float64)[keep])
    model = LogisticRegression(C=C_INVERSE, class_weight="balanced", max_iter=5000)
    model.fit(x, y[keep])
    fitted = [int(k) for k in model.classes_]
    if sorted(fitted) != sorted(idx):
        raise ValueError("every class of the update needs cases to fit on")
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row (the second class's log-odds)
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    return LocalUpdate(classes=tuple(classes[k] for k in fitted),
                       weights=tuple(tuple(float(v) for v in r) for r in coef),
                       bias=tuple(float(v) for v in intercept), name=name,
                       n_images=int(keep.sum()), created=created, evaluation=evaluation,
                       kept=tuple(c for c in classes if c in set(kept)))


def cross_fitted(cases: LocalCases, rule: DecisionRule, classes: Sequence[str],
                 subset: Sequence[str], seed: int, kept: Sequence[str]) -> npt.NDArray[np.int64]:
    """Each case's suggested class under an update fitted on the other fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    out = np.full(len(cases), -1, np.int64)
    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    named = [classes[int(i)] if 0 <= int(i) < len(classes) else str(int(i))
             for i in cases.labels]
    # a class with fewer cases than folds: one note naming it, not scikit-learn's warning
    with sklearn_notes(labels=named, told=_TOLD):
        for fit_idx, score_idx in folds.split(cases.probs, cases.labels, cases.groups):
            update = fit_update(cases.probs[fit_idx], cases.labels[fit_idx], classes, subset,
                                kept=kept, name="fold", created="")
            out[score_idx] = DecisionRule(rule.rule, rule.tau, rule.prior, rule.margins,
                                          local=update).choose(cases.probs[score_idx], classes)
    return out


def assess_update(cases: LocalCases, rule: DecisionRule, classes: Sequence[str], *,
                  kept: Sequence[str], seed: int = 0, n_boot: int = N_BOOT,
                  min_images: int = MIN_IMAGES,
                  min_class_images: int = MIN_CLASS_IMAGES) -> Assessment:
    """Cross-fit the update on the clinic's cases and apply the acceptance rule. Raises
    ``UpdateRefused`` when there are too few cases to try."""
    if rule.local is not None:
        raise UpdateRefused("this bundle already carries a local update "
                            f"({rule.local.name}); adapt the bundle it was made from")
    counts = cases.counts(classes)
    subset = update_classes(cases, classes, min_class_images)
    if len(cases) < min_images:
        raise UpdateRefused(f"{len(cases)} usable labelled cases; an update needs at least "
                            f"{min_images} (with 25 cases, updates made the suggested class "
                            "worse in most of our tests)")
    if len(subset) < 2:  # an update chooses between at least two classes
        raise UpdateRefused(f"an update needs at least two classes with {min_class_images} or "
                            f"more usable cases each; the cases hold {counts}")
    if not [c for c in subset if c not in set(kept)]:
        raise UpdateRefused(f"the cases' classes ({', '.join(subset)}) are all malignant, and an "
                            "update never changes a malignant suggestion: add benign cases")
    base = rule.choose(cases.probs, classes)
    try:
        updated = cross_fitted(cases, rule, classes, subset, seed, kept)
    except ValueError as exc:  # a class whose cases all come from one lesion / patient group
        raise UpdateRefused(f"the cases cannot be split into {FOLDS} group-disjoint folds that "
                            f"each hold every class of {', '.join(subset)} ({exc}); add cases "
                            "from more patients") from None
    members = [list(classes).index(c) for c in subset]
    inside = np.isin(cases.labels, members)
    y, b, u = cases.labels[inside], base[inside], updated[inside]

    def figures(w: npt.NDArray[np.float64] | None) -> dict[str, float | None]:
        if w is not None and any(w[y == k].sum() == 0 for k in members):
            return {"unchanged": None, "updated": None, "difference": None}  # a class not drawn
        before = balanced_accuracy_of(y, b, len(classes), w)
        after = balanced_accuracy_of(y, u, len(classes), w)
        return {"unchanged": before, "updated": after, "difference": after - before}

    ci = bootstrap(figures, int(y.shape[0]), cases.groups[inside], n_boot=n_boot, seed=seed)
    recall = {classes[k]: {"unchanged": round(float(np.mean(b[y == k] == k)), 4),
                           "updated": round(float(np.mean(u[y == k] == k)), 4)}
              for k in members}
    rounded = {k: {kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in v.items()}
               for k, v in ci.items()}
    reasons: list[str] = []
    lo = ci["difference"]["lo"]
    gains = lo is not None and lo > 0
    reasons.append(f"balanced accuracy difference {_fmt(rounded['difference'], signed=True)}: "
                   + ("its lower bound is above 0" if gains
                      else "not shown to be better than the unchanged rule"))
    keeps_mel = True
    if "MEL" in recall:
        fall = recall["MEL"]["unchanged"] - recall["MEL"]["updated"]
        keeps_mel = fall <= MEL_RECALL_TOLERANCE + 1e-12
        if not keeps_mel:
            reasons.append(f"melanoma recall falls by {fall:.3f} (more than "
                           f"{MEL_RECALL_TOLERANCE:g})")
    return Assessment(update_classes=list(subset), counts=counts, balanced_accuracy=rounded,
                      recall=recall, accepted=gains and keeps_mel, reasons=reasons,
                      left_out=dict(cases.left_out), seed=seed)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "clinic"


def write_adapted(bundle_dir: Path, out: Path, update: LocalUpdate) -> Path:
    """Copy the bundle to ``out`` with the update in its card's decision section."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    if out.exists():
        out.rmdir()
    shutil.copytree(bundle_dir, out)
    card_path = out / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8"))
    rule = DecisionRule.from_dict(card.get("decision"))
    rule = DecisionRule(rule.rule, rule.tau, rule.prior, rule.margins, local=update)
    card["decision"] = rule.to_dict()
    card["version"] = f"{card['version']}+local.{_slug(update.name)}"
    note = (f"Locally updated on {update.n_images} labelled cases of {update.name} "
            f"({update.created[:10]}): the suggested class is re-decided among "
            f"{', '.join(update.classes)} (never a suggestion of "
            f"{', '.join(update.kept) or 'no class'}); the test figures in this card and its "
            "report are the unchanged model's, the update's own cross-fitted figures are in "
            "decision.local_update.evaluation. Probabilities, risk tiers and the gate are "
            "unchanged.")
    card["limitations"] = [note, *(card.get("limitations") or [])]
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    try:
        write_manifest(out)
        load_bundle(out)  # the written bundle loads, or this raises
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-written bundle behind
        raise
    return out


def adapt_bundle(bundle: Bundle, frame: pd.DataFrame, out: Path, name: str, *,
                 seed: int = 0) -> tuple[Path, Assessment]:
    """Assess an update on scored cases (``frame``: a ``dermsight batch`` output of ``bundle``)
    and, when accepted, write the adapted bundle to ``out``."""
    _check_name(name)
    card = bundle.card
    versions = set(frame["model_version"].dropna().astype(str)) if "model_version" in frame \
        else set()
    if versions - {card.version}:
        raise BundleError(f"the scores were made by model version {sorted(versions)}, not "
                          f"{card.version}: remove the scores folder and run again")
    if "tta" in frame and (frame["tta"].astype(str) == TTA_TRUE).any():
        raise BundleError("the scores were made with test-time augmentation (--tta), which the "
                          "served model does not use: score the cases again without --tta")
    cases = cases_from_scores(frame, card.classes)
    assessment = assess_update(cases, card.decision, card.classes, kept=card.malignant,
                               seed=seed)
    assessment.refer = refer_on_cases(cases, card.classes, card.malignant,
                                      fitted_refer_sensitivity(card.extra), seed=seed)
    if not assessment.accepted:
        raise UpdateRefused("the update does not beat the unchanged model on these cases",
                            assessment)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    update = fit_update(cases.probs, cases.labels, card.classes, assessment.update_classes,
                        kept=card.malignant, name=name.strip(), created=created,
                        evaluation=assessment.to_dict())
    return write_adapted(bundle.path, out, update), assessment


@dataclass
class Adapted:
    """What ``adapt`` wrote: the adapted bundle, its check, and where the check's figures are."""

    bundle: Path
    assessment: Assessment
    report: Path


def scores_path(out: Path) -> Path:
    """Where ``adapt`` scores the cases by default: ``OUT.scores`` beside the bundle folder."""
    return out.with_name(f"{out.name}.scores")


def report_path(out: Path) -> Path:
    """Where ``adapt`` keeps the check's figures: ``OUT.assessment.json``."""
    return out.with_name(f"{out.name}.assessment.json")


def adapt(data: str | os.PathLike[str], out: str | os.PathLike[str], name: str, *,
          bundle: str | os.PathLike[str] | None = None,
          scores: str | os.PathLike[str] | None = None, seed: int = 0,
          on_scored: Callable[[RunSummary], None] | None = None,
          progress: bool = False) -> Adapted:
    """``dermsight bundle adapt``: score the clinic's labelled cases in ``data`` with ``bundle``
    (default: the shipped one; resumable in ``scores``, default ``OUT.scores``), check an update
    on them and, when accepted, write the adapted bundle to ``out``. The check's figures go to
    ``OUT.assessment.json`` either way. Raises ``UpdateRefused`` (with the figures when the check
    ran) or ``AdaptInputError`` (no labels, a bad name, a used ``out``, a ``scores`` folder that
    holds rows of another bundle: refused by the batch store before anything is written).
    A refused update keeps the scores folder on purpose (its message says where): a re-run, with
    more cases, scores only the new ones. ``progress``: the scoring's progress bar on stderr
    (``run_local``'s; off by default, as for the facade's other calls: the CLI turns it on
    unless ``-q``).
    """
    from dermsight.batch.local import run_local
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.resume import listed_keys, listed_rows
    from dermsight.batch.sources import open_source
    from dermsight.batch.store import OutputCommand, OutputError, read_output

    target = Path(out)
    _check_name(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AdaptInputError(f"{target} already exists; --out must be a new (or empty) folder")
    loaded = load_bundle(None if bundle is None else Path(bundle))  # None: the shipped one
    scores_dir = Path(scores) if scores is not None else scores_path(target)
    source = open_source(data)  # data it cannot read (no images, a broken metadata.csv)
    _check_unrecorded_scores(scores_dir, loaded.card.onnx_sha256)
    # scored as the served model scores: Parquet parts, no TTA, neither an option of this
    # command, so a --scores folder of another kind is refused with ways out it offers
    command = OutputCommand("--scores", format_option=False, tta_option=False,
                            tta_reason="as the served model does")
    try:  # scores of another bundle (or version, format, TTA): refused before the store writes
        summary = run_local(data, scores_dir, ScoreOptions(), bundle=loaded.path,
                            progress=progress, command=command)
    except OutputError as exc:
        raise AdaptInputError(str(exc)) from None
    if on_scored is not None:
        on_scored(summary)
    report = report_path(target)
    # only the cases ``data`` lists: a --scores folder may also hold rows of other data
    listed = listed_keys(source.rows(check_unlisted=False))  # run_local has warned of them
    frame = read_output(scores_dir)  # read by path: see batch.store._read_part
    frame = frame[listed_rows(frame["id"].tolist(), frame["path"].tolist(), listed)]
    try:
        written, assessment = adapt_bundle(loaded, frame, target, name, seed=seed)
    except UpdateRefused as exc:
        if exc.assessment is not None:
            _write_json(report, exc.assessment.to_dict())
        raise UpdateRefused(_refusal_with_files(str(exc), scores_dir, report, exc.assessment),
                            exc.assessment) from None
    _write_json(report, assessment.to_dict())
    return Adapted(bundle=written, assessment=assessment, report=report)


def _refusal_with_files(message: str, scores_dir: Path, report: Path,
                        assessment: Assessment | None) -> str:
    """A refusal's message with what the run left behind and why: the scores, kept so that a
    re-run resumes them, and the figures (when the check ran)."""
    figures = f"; the figures are in {report}" if assessment is not None else ""
    return (f"{message}{figures}; the cases' scores are kept in {scores_dir} so that a re-run "
            "(with more cases) scores only the new ones: remove that folder to start over (also "
            "after correcting a diagnosis or other metadata of cases already scored, which keep "
            "what they were scored with)")


def _check_name(name: str) -> None:
    if not 0 < len(name.strip()) <= MAX_NAME:
        raise AdaptInputError(f"--name must have 1 to {MAX_NAME} characters (whose cases these "
                              "are)")


def _check_unrecorded_scores(scores_dir: Path, onnx_sha256: str) -> None:
    """Rows of ``scores_dir`` that do not record their bundle (``card_sha256``: written by an
    older dermsight) are resumed only when that dermsight's marker, ``SCORES.network``, names this
    network; else (another network's marker, or none: a batch output of unknown origin) they are
    refused before anything is written, as they were then. Rows that record their bundle are
    checked by the batch store."""
    from dermsight.batch.store import bundle_dict, scan_output

    if not scores_dir.is_dir():
        return
    unknown = bundle_dict(scan_output(scores_dir, keys=False).bundles)["unknown"]
    if not unknown:
        return
    marker = scores_dir.with_name(f"{scores_dir.name}.network")
    held = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    if held == onnx_sha256:
        return
    whose = "another network's" if held else "an unknown network's"
    raise AdaptInputError(f"{scores_dir} holds {unknown} rows of {whose} scores, written before "
                          "dermsight recorded the bundle of each row; remove it"
                          + (f" (and {marker.name})" if held else "")
                          + " or give --scores another folder")


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
