"""A clinic's local update of the suggested class (``dermsight bundle adapt``,
``dermsight.local_update``, ``decision.LocalUpdate``): what it changes and what it never does,
its cross-fitted validation and refusal rule, the card, and the command on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_support import bundle_with_margins
from dermsight.bundle import BundleError, Card, default_bundle_path, load_bundle
from dermsight.decision import LOGIT_ADJUSTED, DecisionRule, LocalUpdate
from dermsight.evaluate.metrics import compute_metrics
from dermsight.local_update import (
    AdaptInputError,
    LocalCases,
    NoLabels,
    UpdateRefused,
    adapt_bundle,
    assess_update,
    cases_from_scores,
    fit_update,
    fitted_refer_sensitivity,
    refer_on_cases,
    render_refer,
)

CLASSES = ["MEL", "NV", "BCC", "BKL"]
MALIGNANT = ("MEL", "BCC")


def _update(**kw: object) -> LocalUpdate:
    base = {"classes": ("NV", "BKL"), "weights": ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)),
            "bias": (0.0, 5.0), "name": "Clinic A", "n_images": 120, "created": "2026-12-05"}
    return LocalUpdate(**{**base, **kw})  # type: ignore[arg-type]


def test_the_update_redecides_only_among_its_classes_and_only_their_suggestions() -> None:
    rule = DecisionRule(local=_update())  # plain arg-max, then "always BKL among NV / BKL"
    probs = np.array([[0.1, 0.7, 0.1, 0.1],    # NV -> BKL (one of the update's classes)
                      [0.1, 0.1, 0.7, 0.1],    # BCC stays: not one of them
                      [0.7, 0.1, 0.1, 0.1],    # MEL stays
                      [0.1, 0.1, 0.1, 0.7]])   # BKL stays BKL
    assert [CLASSES[i] for i in rule.choose(probs, CLASSES)] == ["BKL", "BCC", "MEL", "BKL"]
    assert [CLASSES[i] for i in DecisionRule().choose(probs, CLASSES)] == \
        ["NV", "BCC", "MEL", "BKL"]
    assert "local update fitted on 120 labelled cases of Clinic A" in rule.description
    with pytest.raises(ValueError, match="does not fit"):
        rule.choose(probs[:, :3], CLASSES[:3])
    with pytest.raises(ValueError, match="two distinct classes"):
        _update(classes=("NV",), weights=((0.0,) * 4,), bias=(0.0,))


def test_evaluation_scores_the_whole_rule_with_the_update() -> None:
    rule = DecisionRule(local=_update())
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]])
    y = np.array([3, 3, 0])  # BKL, BKL, MEL: the update gets the first one right
    with_update = compute_metrics(y, probs, CLASSES, offsets=rule.decider(CLASSES))
    without = compute_metrics(y, probs, CLASSES, offsets=DecisionRule().decider(CLASSES))
    assert with_update["balanced_accuracy"] == 1.0
    assert without["balanced_accuracy"] == 0.75
    assert with_update["mel_auc"] == without["mel_auc"]  # probabilities untouched


def _shifted_cases(n: int, seed: int, *, informative: bool = True) -> LocalCases:
    """A network that calls this clinic's keratoses nevi: true BKL gets NV 0.55 / BKL 0.35."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 1, 3], size=n, p=[0.2, 0.5, 0.3])
    centre = {0: [0.6, 0.2, 0.05, 0.15], 1: [0.05, 0.8, 0.05, 0.1], 3: [0.05, 0.55, 0.05, 0.35]}
    probs = np.array([rng.dirichlet(np.array(centre[int(k)]) * 40) for k in labels])
    if not informative:
        labels = rng.permutation(labels)
    groups = np.array([f"g{i // 2}" for i in range(n)])  # two images per lesion
    return LocalCases(probs=probs, labels=labels.astype(np.int64), groups=groups)


def test_fit_update_recovers_the_clinics_keratoses_and_keeps_two_class_updates_right() -> None:
    cases = _shifted_cases(600, 0)
    base = DecisionRule().choose(cases.probs, CLASSES)
    bkl = cases.labels == 3
    assert np.mean(base[bkl] == 3) < 0.2
    update = fit_update(cases.probs, cases.labels, CLASSES, ["MEL", "NV", "BKL"], kept=(),
                        name="A", created="2026-12-05")
    after = DecisionRule(local=update).choose(cases.probs, CLASSES)
    assert np.mean(after[bkl] == 3) > 0.8
    assert update.n_images == 600
    assert update.classes == ("MEL", "NV", "BKL")
    # two classes: sklearn keeps one row of log-odds; the update must still rank both
    two = fit_update(cases.probs, cases.labels, CLASSES, ["NV", "BKL"], kept=(), name="A",
                     created="x")
    after2 = DecisionRule(local=two).choose(cases.probs, CLASSES)
    assert len(two.weights) == 2
    assert np.mean(after2[bkl] == 3) > 0.8
    assert np.mean(after2[cases.labels == 1] == 1) > 0.8


def test_assessment_accepts_a_real_gain_and_refuses_noise() -> None:
    good = assess_update(_shifted_cases(600, 1), DecisionRule(), CLASSES, kept=MALIGNANT,
                         n_boot=200)
    assert good.accepted, good.reasons
    assert good.balanced_accuracy["difference"]["lo"] > 0.1
    assert good.recall["BKL"]["updated"] > good.recall["BKL"]["unchanged"] + 0.5
    noise = assess_update(_shifted_cases(600, 1, informative=False), DecisionRule(), CLASSES,
                          kept=MALIGNANT, n_boot=200)
    assert not noise.accepted
    assert "not shown to be better" in noise.reasons[0]
    assert noise.to_dict()["accepted"] is False


def test_an_update_that_costs_melanoma_recall_is_refused() -> None:
    """The unchanged rule calls melanoma generously (a large margin against nevi): balancing the
    two raises balanced accuracy but names fewer melanomas, so the update is refused."""
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 1], size=800, p=[0.4, 0.6])
    score = rng.normal(np.where(labels == 0, 1.0, -1.0), 1.0)  # log-odds MEL vs NV, overlapping
    p_mel = 1 / (1 + np.exp(-score))
    probs = np.stack([p_mel * 0.98, (1 - p_mel) * 0.98, np.full(800, 0.01), np.full(800, 0.01)],
                     axis=1)
    cases = LocalCases(probs=probs, labels=labels.astype(np.int64),
                       groups=np.array([str(i) for i in range(800)]))
    generous = DecisionRule(LOGIT_ADJUSTED, 0.0, {c: 0.25 for c in CLASSES}, {"NV": 2.0})
    a = assess_update(cases, generous, CLASSES, kept=(), n_boot=200)  # the clause on its own
    assert a.balanced_accuracy["difference"]["lo"] > 0  # it does gain ...
    assert not a.accepted  # ... but not at melanoma's expense
    assert any("melanoma recall falls" in r for r in a.reasons)


def test_kept_malignant_suggestions_are_never_changed_so_melanoma_recall_cannot_fall() -> None:
    """A rule that handicaps nevi (their suggestions go to melanoma or keratosis): an update that
    keeps MEL / BCC suggestions can only add melanoma suggestions, on any images; it still wins
    back the nevi called keratoses, and the melanoma clause then passes."""
    rng = np.random.default_rng(4)
    labels = rng.choice([0, 1, 3], size=900, p=[0.3, 0.5, 0.2])
    probs = np.array([rng.dirichlet(np.array(c) * 8) for c in
                      ([0.5, 0.3, 0.02, 0.18] if k == 0 else [0.1, 0.5, 0.02, 0.38] if k == 1
                       else [0.1, 0.4, 0.02, 0.48] for k in labels)])
    generous = DecisionRule(LOGIT_ADJUSTED, 0.0, {c: 0.25 for c in CLASSES}, {"NV": 2.0})
    update = fit_update(probs, labels, CLASSES, ["MEL", "NV", "BKL"], kept=MALIGNANT, name="A",
                        created="x")
    assert update.kept == ("MEL", "BCC")
    before = generous.choose(probs, CLASSES)
    after = DecisionRule(generous.rule, generous.tau, generous.prior, generous.margins,
                         local=update).choose(probs, CLASSES)
    assert np.all(after[before == 0] == 0)  # a melanoma suggestion stands
    assert np.all(after[before == 2] == 2)  # so does BCC
    assert np.mean(after[labels == 0] == 0) >= np.mean(before[labels == 0] == 0)
    assert np.mean(after[labels == 1] == 1) > np.mean(before[labels == 1] == 1)
    assert "a suggestion of MEL, BCC is never changed by it" in update.description
    a = assess_update(LocalCases(probs=probs, labels=labels.astype(np.int64),
                                 groups=np.array([str(i) for i in range(900)])),
                      generous, CLASSES, kept=MALIGNANT, n_boot=200)
    assert a.recall["MEL"]["updated"] >= a.recall["MEL"]["unchanged"]
    assert not any("melanoma recall falls" in r for r in a.reasons)


def test_too_few_cases_one_class_or_an_adapted_bundle_are_refused() -> None:
    with pytest.raises(UpdateRefused, match="at least 100"):
        assess_update(_shifted_cases(80, 0), DecisionRule(), CLASSES, kept=MALIGNANT)
    one = _shifted_cases(300, 0)
    one.labels[:] = 1
    with pytest.raises(UpdateRefused, match="at least two classes"):
        assess_update(one, DecisionRule(), CLASSES, kept=MALIGNANT)
    malignant_only = _shifted_cases(300, 0)
    malignant_only.labels[:150], malignant_only.labels[150:] = 0, 2  # MEL and BCC cases only
    with pytest.raises(UpdateRefused, match="all malignant"):
        assess_update(malignant_only, DecisionRule(), CLASSES, kept=MALIGNANT)
    with pytest.raises(UpdateRefused, match="already carries a local update"):
        assess_update(_shifted_cases(300, 0), DecisionRule(local=_update()), CLASSES,
                      kept=MALIGNANT)


def test_scores_made_with_tta_are_refused(tmp_path: Path) -> None:
    """The update is fitted to the probabilities the served model gives, which never use TTA."""
    bundle = load_bundle(None)
    frame = pd.DataFrame({"model_version": [bundle.card.version] * 2, "tta": ["false", "true"]})
    with pytest.raises(BundleError, match="test-time augmentation"):
        adapt_bundle(bundle, frame, tmp_path / "out", "Clinic A")
    assert not (tmp_path / "out").exists()


def test_cases_from_scores_leave_out_errors_refusals_and_foreign_labels() -> None:
    frame = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"], "group": ["g1", None, "g3", "g4", "g5"],
        "label": ["NV", "BKL", "NV", None, "XYZ"],
        "risk": ["low", "low", "cannot_assess", "low", "low"],
        "error": [None, None, None, None, None],
        **{f"p_{c}": [0.25] * 5 for c in CLASSES}})
    frame.loc[len(frame)] = {"id": "f", "error": "cannot decode", "label": "NV"}
    cases = cases_from_scores(frame, CLASSES)
    with pytest.raises(AdaptInputError, match="none of the 2 images could be read"):
        cases_from_scores(frame.tail(2).assign(error="cannot decode"), CLASSES)
    with pytest.raises(NoLabels, match="no diagnosis labels"):
        cases_from_scores(frame.head(5).assign(label=None), CLASSES)
    assert list(cases.labels) == [1, 3]
    assert list(cases.groups) == ["g1", "b"]  # no group: the image is its own
    assert cases.referred is not None
    assert list(cases.referred) == [False, False]  # both served "low"
    assert cases.left_out == {"unreadable images": 1, "refused by the gate": 1,
                              "without a label": 1,
                              "labelled with a class the model does not have": 1}


def test_the_refer_tier_on_the_clinics_cases_counts_what_was_served_and_warns_below_fit(
) -> None:
    """20 malignant cases (MEL, BCC), 18 of them served "high"; 30 others, 6 of them "high"."""
    labels = np.array([0] * 12 + [2] * 8 + [1] * 20 + [3] * 10, np.int64)
    referred = np.zeros(50, bool)
    referred[:18] = True  # two BCC cases missed
    referred[20:26] = True  # six nevi referred
    cases = LocalCases(probs=np.full((50, 4), 0.25), labels=labels,
                       groups=np.array([f"g{i}" for i in range(50)]), referred=referred)
    r = refer_on_cases(cases, CLASSES, MALIGNANT, 0.95, n_boot=200)
    assert r is not None
    assert (r["n_malignant"], r["malignant_referred"], r["n_other"], r["others_referred"]) == (
        20, 18, 30, 6)
    assert r["sensitivity"]["value"] == 0.9
    assert r["specificity"]["value"] == 0.8
    assert r["sensitivity"]["lo"] < 0.9 < r["sensitivity"]["hi"] <= 1.0
    assert r["below_fitted"] is True
    assert "WARNING: below the sensitivity of 0.95" in "\n".join(render_refer(r))
    ok = refer_on_cases(cases, CLASSES, MALIGNANT, 0.85, n_boot=0)
    assert ok is not None
    assert ok["below_fitted"] is False
    assert "WARNING" not in "\n".join(render_refer(ok))
    # nothing to measure: tiers unknown, or no malignant (or no other) case
    assert refer_on_cases(LocalCases(cases.probs, labels, cases.groups), CLASSES, MALIGNANT,
                          0.95) is None
    only_benign = LocalCases(cases.probs[20:], labels[20:], cases.groups[20:],
                             referred=referred[20:])
    assert refer_on_cases(only_benign, CLASSES, MALIGNANT, 0.95) is None
    # every malignant case referred: an interval that does not collapse, with its k of n
    # (the percentile bootstrap printed "1.000 (1.000 to 1.000)" for 60 of 60)
    every = LocalCases(cases.probs, labels, cases.groups,
                       referred=np.r_[np.ones(20, bool), referred[20:]])
    all_in = refer_on_cases(every, CLASSES, MALIGNANT, 0.95, n_boot=200)
    assert all_in is not None
    assert all_in["sensitivity"]["value"] == 1.0
    assert (all_in["sensitivity"]["k"], all_in["sensitivity"]["n"]) == (20, 20)
    assert 0.8 < all_in["sensitivity"]["lo"] < 0.9  # Wilson 20 of 20: 0.839 to 1.000
    assert (all_in["specificity"]["k"], all_in["specificity"]["n"]) == (24, 30)
    assert "sensitivity 1.000 (0.839 to 1.000; 20 of 20)" in "\n".join(render_refer(all_in))
    # what the threshold was fitted for: the training config, else the validation figure
    assert fitted_refer_sensitivity(
        {"training": {"config": {"calibration": {"refer_sensitivity": 0.95}}}}) == 0.95
    assert fitted_refer_sensitivity({"metrics": {"validation": {"refer_sensitivity": 0.9}}}) == 0.9
    assert fitted_refer_sensitivity({}) is None


def test_the_card_carries_the_update_and_rejects_a_broken_one() -> None:
    card = load_bundle().card
    d = card.to_dict()
    n = len(card.classes)
    local = {"classes": ["NV", "BKL"], "weights": [[0.0] * n, [0.1] * n], "bias": [0.0, 1.0],
             "name": "Clinic A", "n_images": 150, "created": "2026-12-05T10:00:00Z",
             "evaluation": {"accepted": True}}
    d["decision"]["local_update"] = local
    back = Card.from_dict(d)
    assert back.decision.local is not None
    assert back.decision.local.classes == ("NV", "BKL")
    assert back.to_dict()["decision"]["local_update"]["evaluation"] == {"accepted": True}
    for broken, what in (({**local, "classes": ["NV", "XX"]}, "not among the classes"),
                         ({**local, "weights": [[0.0] * (n - 1)] * 2}, "one column per class"),
                         ({**local, "bias": [0.0]}, "one weight row and one bias")):
        d["decision"]["local_update"] = broken
        with pytest.raises(BundleError, match=what):
            Card.from_dict(d)


# --- the command on real images -------------------------------------------------------------


def _clinic(tmp: Path, data_dir: Path, metadata: pd.DataFrame, per_class: int,
            classes: tuple[str, ...] = ("NV", "BKL")) -> Path:
    """A clinic's folder: HAM10000 nevi and keratoses of the shipped bundle's validation split
    (images it never trained on)."""
    split = pd.read_csv(Path(__file__).resolve().parents[1] / "configs" / "default-split.csv")
    val = set(split.loc[split["split"] == "val", "image_id"])
    rows = metadata[(metadata["source"] == "ham10000") & metadata["diagnosis"].isin(classes)
                    & metadata["image_id"].isin(val)]
    rows = rows.sort_values("image_id").groupby("diagnosis").head(per_class)
    folder = tmp / "clinic"
    folder.mkdir()
    rows.to_csv(folder / "metadata.csv", index=False)
    (folder / "images").symlink_to(data_dir / "images")
    return folder


def _off_bundle(tmp: Path) -> Path:
    """The shipped bundle with a rule that is off for the clinic: every class but BKL named only
    when it leads by 8 log-odds, so keratoses are suggested far too often (what a clinic sees,
    less starkly, when the training mix does not fit its own)."""
    classes = json.loads((default_bundle_path() / "card.json").read_text())["classes"]
    return bundle_with_margins(tmp / "off-bundle", {c: 8.0 for c in classes if c != "BKL"})


def _run(argv: list[str]) -> int:
    from dermsight.cli import app
    from dermsight.cli.errors import run_guarded

    return run_guarded(app, argv)


def test_adapt_writes_a_validated_bundle_that_serves_the_update(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dermsight import Dermsight
    from dermsight.batch.summary import evaluate_output

    clinic = _clinic(tmp_path, data_dir, metadata, per_class=100)
    bundle, out = _off_bundle(tmp_path), tmp_path / "adapted"
    code = _run(["bundle", "adapt", str(clinic), "--bundle", str(bundle), "--out", str(out),
                 "--name", "Clinic A"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "accepted" in printed.out
    report = json.loads((tmp_path / "adapted.assessment.json").read_text())
    assert report["accepted"]
    assert report["update_classes"] == ["NV", "BKL"]
    assert report["recall"]["NV"]["updated"] > report["recall"]["NV"]["unchanged"]
    assert report["refer_tier"] is None  # nevi and keratoses only: no sensitivity to measure
    assert "refer tier" not in printed.out
    assert _run(["bundle", "verify", str(out)]) == 0
    model, original = Dermsight.load(out), Dermsight.load(bundle)
    card = model.card
    assert card.version == f"{original.card.version}+local.clinic-a"
    assert card.decision.local is not None
    assert card.decision.local.n_images == 199
    assert card.decision.local.kept == tuple(card.malignant)
    assert card.extra["limitations"][0].startswith("Locally updated on 199 labelled cases")
    # on the clinic's images: probabilities and risk identical, suggestions moved towards NV
    ids = pd.read_csv(clinic / "metadata.csv")["image_id"].head(40)
    images = [clinic / "images" / f"{i}.jpg" for i in ids]
    a = model.predict_batch(images, heatmap=False)
    b = original.predict_batch(images, heatmap=False)
    assert [r.probabilities for r in a] == [r.probabilities for r in b]
    assert [r.risk for r in a] == [r.risk for r in b]
    assert sum(r.prediction == "NV" for r in a) > sum(r.prediction == "NV" for r in b)
    served = model.predict(images[0], heatmap=False).to_dict()
    assert "local update fitted on 199 labelled cases of Clinic A" in served["decision_rule"]
    # `dermsight evaluate` / `batch --evaluate` score the whole rule, update included (same
    # network, so the same scores; here in-sample, so only the direction is asserted)
    figures = {}
    for which, m in (("adapted", model), ("original", original)):
        paths = evaluate_output(tmp_path / "adapted.scores", m.card.classes, m.card,
                                m.info, n_boot=0)
        figures[which] = json.loads(Path(paths["json"]).read_text())["metrics"]
    assert figures["adapted"]["balanced_accuracy"] > figures["original"]["balanced_accuracy"]
    for key in ("auc_macro", "nll", "refer_specificity"):  # probabilities and tiers: the same
        assert figures["adapted"][key] is not None
        assert figures["adapted"][key] == figures["original"][key]
    # the facade does the same in one call (a new folder; the same cases and seed, the same fit)
    again = original.adapt(clinic, tmp_path / "adapted-again", "Clinic A")
    assert again.card.decision.local is not None
    assert again.card.decision.local.weights == card.decision.local.weights
    # adapting an adapted bundle is refused (exit 4), as is writing over a bundle
    assert _run(["bundle", "adapt", str(clinic), "--bundle", str(out), "--out",
                 str(tmp_path / "twice"), "--name", "A"]) == 4
    assert "already carries a local update" in capsys.readouterr().err
    assert _run(["bundle", "adapt", str(clinic), "--bundle", str(bundle), "--out", str(out),
                 "--name", "A"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_adapt_reports_the_refer_tier_on_the_clinics_cases(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With melanomas among the cases, the check also counts how the unchanged refer tier did on
    them, from the tiers the scoring served — accepted or refused, it is in the figures."""
    from dermsight.batch.store import read_output

    clinic = _clinic(tmp_path, data_dir, metadata, per_class=40, classes=("MEL", "NV", "BKL"))
    out = tmp_path / "adapted"
    code = _run(["bundle", "adapt", str(clinic), "--out", str(out), "--name", "Clinic B"])
    printed = capsys.readouterr()
    assert code in (0, 4), printed.err
    refer = json.loads((tmp_path / "adapted.assessment.json").read_text())["refer_tier"]
    scores = read_output(tmp_path / "adapted.scores")
    served = scores[scores["risk"] != "cannot_assess"]
    mel = served[served["label"] == "MEL"]
    others = served[served["label"] != "MEL"]
    assert (refer["n_malignant"], refer["n_other"]) == (len(mel), len(others))
    assert len(mel) >= 30
    assert refer["malignant_referred"] == int((mel["risk"] == "high").sum())
    assert refer["others_referred"] == int((others["risk"] == "high").sum())
    assert refer["sensitivity"]["value"] == pytest.approx(
        (mel["risk"] == "high").mean(), abs=1e-4)
    assert refer["fitted_sensitivity"] == 0.95  # the shipped bundle's training config
    assert refer["below_fitted"] == (refer["sensitivity"]["value"] < 0.95)
    assert refer["malignant_classes"] == ["MEL", "BCC", "SCC"]
    assert f"{refer['malignant_referred']} of {refer['n_malignant']} malignant cases referred" \
        in printed.out
    if code == 0:  # an accepted update's card keeps the same figures
        from dermsight import Dermsight

        local = Dermsight.load(out).card.decision.local
        assert local is not None
        assert local.evaluation is not None
        assert local.evaluation["refer_tier"] == refer


def test_adapt_refuses_too_few_cases_and_unusable_inputs(
        tmp_path: Path, data_dir: Path, metadata: pd.DataFrame,
        capsys: pytest.CaptureFixture[str]) -> None:
    clinic = _clinic(tmp_path, data_dir, metadata, per_class=30)
    out = tmp_path / "adapted"
    code = _run(["bundle", "adapt", str(clinic), "--out", str(out), "--name", "Clinic B"])
    err = capsys.readouterr().err
    assert code == 4
    assert "an update needs at least 100" in err
    assert "Traceback" not in err
    assert not out.exists()
    # the scores stay: a second run resumes them instead of scoring again, but only with the
    # bundle that scored them (the batch store refuses another: tests/test_batch_bundle_identity)
    assert (tmp_path / "adapted.scores").is_dir()
    assert _run(["bundle", "adapt", str(clinic), "--out", str(out), "--name", "Clinic B"]) == 4
    assert "60 already done (skipped)" in capsys.readouterr().out  # nothing left to score
    # the same network with another decision rule is another bundle too (its suggestions in the
    # scores' prediction column differ)
    assert _run(["bundle", "adapt", str(clinic), "--bundle", str(_off_bundle(tmp_path)),
                 "--out", str(out), "--name", "Clinic B"]) == 2
    err = capsys.readouterr().err
    assert "holds 60 rows scored by another bundle" in err
    assert "Use another --scores" in err
    assert not (tmp_path / "adapted.scores.network").exists()
    code = _run(["bundle", "adapt", str(tmp_path / "nowhere"), "--out", str(out),
                 "--name", "B"])
    assert code == 2
    assert _run(["bundle", "adapt", str(clinic), "--out", str(out), "--name", " "]) == 2
    assert "--name must have" in capsys.readouterr().err
    assert _run(["bundle", "adapt", str(clinic), "--bundle", str(tmp_path / "no-bundle"),
                 "--out", str(tmp_path / "x"), "--name", "B"]) == 3
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for i in pd.read_csv(clinic / "metadata.csv")["image_id"].head(3):
        shutil.copy(clinic / "images" / f"{i}.jpg", unlabelled / f"{i}.jpg")
    capsys.readouterr()
    assert _run(["bundle", "adapt", str(unlabelled), "--out", str(tmp_path / "y"),
                 "--name", "B"]) == 2
    assert "no diagnosis" in capsys.readouterr().err
