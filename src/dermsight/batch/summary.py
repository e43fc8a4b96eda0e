"""The end of a batch job: the summary it prints and the optional evaluation report."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dermsight.batch.resume import listed_rows
from dermsight.batch.schema import RISK_TIERS, TTA_FALSE, TTA_TRUE, TTA_UNKNOWN
from dermsight.batch.store import (
    BUNDLE_UNKNOWN,
    Key,
    OutputFailure,
    count_tta,
    flag_counts,
    read_output,
    stored_columns,
    tta_dict,
)
from dermsight.io.errors import ReaderError

if TYPE_CHECKING:
    from dermsight.bundle import Card


class EvaluationUnavailable(Exception):
    """``--evaluate`` cannot run (no labels, or the evaluation module is missing)."""


@dataclass
class RunSummary:
    """What one batch run did (``this run``) and what the output folder now holds (``total``)."""

    input: str
    out: str
    engine: str
    model: dict[str, str]
    fmt: str = "parquet"
    tta: bool = False  # this run scores with test-time augmentation (--tta)
    skipped: int = 0  # listings of this input already in the output (resume: not scored again)
    # rows of the output that this input does not list (other inputs scored into the same
    # folder, or images an earlier run scored that the input no longer lists); None when
    # unknown (a --limit stopped the reading of the input early)
    not_listed: int | None = None
    retried: int = 0  # error rows of earlier runs removed to be scored again (resume)
    # rows written by this run (scored + errors), also readable as ``rows``; NOTE: this
    # attribute keeps its historical name, but ``_summary.json`` names it ``rows``, and its
    # ``scored`` is ``ok`` (the rows scored without an error), as the printed summary counts
    scored: int = 0
    errors: int = 0  # of which error rows
    risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RISK_TIERS, 0))
    flags: dict[str, int] = field(default_factory=dict)  # rows per flag code (a row counts once)
    elapsed_s: float = 0.0  # wall time of the run
    startup_s: float = 0.0  # Spark session start-up (0 for the local engine)
    total: dict[str, Any] = field(default_factory=dict)  # tally() of the whole output
    evaluation: dict[str, str] = field(default_factory=dict)  # report / json paths
    # labelled images of the evaluation that the gate refused (cannot assess), left out of its
    # figures: {"images": n, "malignant": k}; empty without --evaluate
    gate_refused: dict[str, int] = field(default_factory=dict)
    finished_at: str = ""
    duplicate_ids: int = 0  # input rows whose id an earlier row already had (all are scored)
    # rows this input lists that the output already held (skipped) whose age/sex/site differ
    # from the input's now: they keep the scores of the metadata they were scored with
    metadata_changed: int = 0
    interrupted: bool = False  # the run was stopped by Ctrl-C (this summary: what it kept)
    # what the evaluation warns of (labels changed since scoring, repeated ids left out, images
    # the bundle was trained on, labels that name no class): one line each, without "warning: "
    evaluation_warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows this run wrote, error rows included (``_summary.json``'s ``rows``)."""
        return self.scored

    @property
    def ok(self) -> int:
        """Rows this run scored without an error (error rows are written but not scored)."""
        return self.scored - self.errors

    @property
    def images_per_s(self) -> float:
        """Images scored (``ok``: error rows left out) per second of the run (Spark's start-up
        left out)."""
        busy = self.elapsed_s - self.startup_s
        return self.ok / busy if busy > 0 else 0.0

    def add(self, risk: Sequence[Any], error: Sequence[Any], flags: Sequence[Any]) -> None:
        """Count a written chunk (its ``risk``, ``error`` and ``flags`` columns)."""
        self.scored += len(risk)
        self.errors += sum(1 for e in error if e is not None and e == e)
        counts = Counter(str(r) for r in risk if r is not None and r == r)
        for tier in RISK_TIERS:
            self.risk[tier] += counts.get(tier, 0)
        for code, n in flag_counts(flags).items():
            self.flags[code] = self.flags.get(code, 0) + n

    def to_dict(self) -> dict[str, Any]:
        """``_summary.json``: the fields, with ``rows`` (written by this run), ``scored`` (of
        which scored: ``ok``) and ``errors`` (of which error rows), as the printed summary
        counts them, and ``images_per_s`` (over the scored images)."""
        d = asdict(self)
        d["rows"], d["scored"] = self.scored, self.ok
        d["images_per_s"] = round(self.images_per_s, 2)
        return d

    def render(self, *, warnings: bool = True) -> str:
        """The plain-text summary printed at the end of a run; with ``warnings`` (the default),
        ending with the lines of ``input_warnings`` (``warning: ...``: repeated ids, changed
        metadata, what the evaluation warns of, such as evaluated images the model was trained
        on). ``dermsight batch`` prints those on stderr instead (``warnings=False``)."""
        ok = self.ok
        lines = [
            f"dermsight batch ({self.engine}) -> {self.out}  [{self.fmt}]",
            f"model: {self.model.get('name')} {self.model.get('version')}, "
            + ("with test-time augmentation (--tta)" if self.tta else
               "without test-time augmentation"),
            f"this run: {self.scored} rows in {self.elapsed_s:.1f} s "
            f"({self.images_per_s:.1f} scored images/s"
            + (f", excluding {self.startup_s:.1f} s Spark start-up" if self.startup_s else "")
            + f"); {ok} scored, {self.errors} errors, {self.skipped} already done (skipped)",
        ]
        if self.not_listed:
            n = self.not_listed
            lines.append(f"the output also holds {n} row{'s' if n != 1 else ''} this input does "
                         "not list (another input's, or images no longer listed)"
                         + ("; they are not evaluated" if self.evaluation else ""))
        if self.retried:
            lines.append(f"retried: {self.retried} error rows of earlier runs (removed; their "
                         "inputs are scored again)")
        lines += [
            "",
            f"{'risk tier':<16}{'this run':>10}{'output total':>14}",
        ]
        total_risk = self.total.get("risk", {})
        for tier in RISK_TIERS:
            lines.append(f"{tier:<16}{self.risk.get(tier, 0):>10}{total_risk.get(tier, 0):>14}")
        lines.append(f"{'errors':<16}{self.errors:>10}{self.total.get('errors', 0):>14}")
        lines.append(f"{'rows':<16}{self.scored:>10}{self.total.get('rows', 0):>14}")
        if self.bundle_unknown:
            lines.append(f"bundle not recorded: {self.bundle_unknown} rows of the output "
                         "(written by an older dermsight)")
        lines += self._tta_lines()
        total_flags = self.total.get("flags", {})
        codes = sorted(set(self.flags) | set(total_flags))
        if codes:  # blocking ones explain "cannot_assess"; the others are notes beside a result
            lines += ["", f"{'rows flagged':<24}{'this run':>10}{'output total':>14}"]
            lines += [f"{c:<24}{self.flags.get(c, 0):>10}{total_flags.get(c, 0):>14}"
                      for c in codes]
        if self.gate_refused.get("images") and "unavailable" not in self.evaluation:
            lines.append("evaluation: " + refused_note(self.gate_refused))
        for name, path in self.evaluation.items():
            lines.append(f"evaluation {name}: {path}")
        if warnings and (said := self.input_warnings()):
            lines += ["", *(f"warning: {line}" for line in said)]
        return "\n".join(lines)

    def _tta_lines(self) -> list[str]:
        """Scored rows (not errors) with and without TTA: this run's (all one way) and the
        output's, with the rows that do not record it (written by an older dermsight)."""
        ok = self.ok
        this = {TTA_TRUE: ok if self.tta else 0, TTA_FALSE: 0 if self.tta else ok}
        total = self.total.get("tta", {})
        names = {TTA_TRUE: "with TTA", TTA_FALSE: "without TTA", TTA_UNKNOWN: "TTA not recorded"}
        shown = [k for k in names if k != TTA_UNKNOWN or total.get(k, 0)]
        return ["", f"{'rows scored':<24}{'this run':>10}{'output total':>14}",
                *(f"{names[k]:<24}{this.get(k, 0):>10}{total.get(k, 0):>14}" for k in shown)]

    def input_warnings(self) -> list[str]:
        """The lines (without ``warning: ``) that ``dermsight batch`` and ``evaluate`` print
        on the input: ids repeated, metadata changed since rows were scored, and what the
        evaluation warns of (``evaluation_warnings``)."""
        lines = []
        if self.duplicate_ids:
            lines.append(f"{self.duplicate_ids} input rows repeat an id of an earlier row "
                         "(all were scored, one output row each; the path column tells them "
                         "apart only where their paths differ)")
        if self.metadata_changed:
            n = self.metadata_changed
            lines.append(f"{n} row{'s' if n != 1 else ''} already scored differ from the "
                         "input's metadata now (age/sex/site): they keep their old scores; use "
                         "a new --out to re-score")
        return lines + list(self.evaluation_warnings)

    @property
    def tta_unknown(self) -> int:
        """Scored rows of the output that do not record whether TTA was used."""
        return int(self.total.get("tta", {}).get(TTA_UNKNOWN, 0))

    @property
    def bundle_unknown(self) -> int:
        """Rows of the output (error rows included) that do not record the bundle that scored
        them (``card_sha256``: written by an older dermsight)."""
        return int(self.total.get("card_sha256", {}).get(BUNDLE_UNKNOWN, 0))


def tta_note(counts: Mapping[str, int]) -> str:
    """How rows were scored, in words, from their counts per ``tta`` value."""
    n_true, n_false = counts.get(TTA_TRUE, 0), counts.get(TTA_FALSE, 0)
    n_unknown = counts.get(TTA_UNKNOWN, 0)
    if n_true and not n_false and not n_unknown:
        return "used: the mean over 8 flips/rotations of each image (--tta)"
    if n_false and not n_true and not n_unknown:
        return "not used"
    parts = [f"{n} {what}" for n, what in ((n_true, "with TTA"), (n_false, "without TTA"),
                                            (n_unknown, "not recorded (an older dermsight)"))
             if n]
    return "rows " + ", ".join(parts) if parts else "no rows"


def refused_note(refused: Mapping[str, int]) -> str:
    """The evaluation's line on the labelled images the gate refused (``gate_refused``)."""
    n, k = refused.get("images", 0), refused.get("malignant", 0)
    return (f"{n} image{'s' if n != 1 else ''} the gate refused ({k} malignant) "
            f"{'are' if n != 1 else 'is'} not in these figures (\"cannot assess\" is not a "
            "result; in use, a refused lesion gets no risk tier and is not referred)")


def sidecar(out: str | os.PathLike[str], suffix: str) -> Path:
    """A file next to the output folder: ``OUT`` -> ``OUT.<suffix>``."""
    p = Path(out)
    return p.with_name(p.name.rstrip("/") + "." + suffix)


def evaluate_output(
    out: str | os.PathLike[str],
    classes: Sequence[str],
    card: Card,
    model_info: Mapping[str, str],
    *,
    input_name: str = "",
    n_boot: int = 200,
    listed: Mapping[Key, int] | None = None,
) -> dict[str, str]:
    """Metrics over the labelled rows of an output folder, with ``dermsight.evaluate``; the
    images the gate refused ("cannot assess") are left out and counted (``gate_refused``).

    The metrics use the bundle's decision rule and refer/monitor thresholds. Besides the
    per-class and subgroup (sex, age, site) tables, ``subgroups`` holds rows by data source
    (``attribute`` ``source``, from the output's ``source`` column) when the evaluated rows name
    at least two sources (``subgroup_frame``): the report's "Per data source" table, with the
    figures, intervals and withholding of the other subgroups. ``by_ita`` holds the metrics by
    skin-tone band (:func:`dermsight.evaluate.skin_tone.ita_table` on the output's ``ita``
    column, with the card's settings and withholding: all seven bands with their counts,
    metrics withheld under 30 images), which the report shows as its "By skin tone" section.
    An output folder written before the ``ita`` column existed gets no ``by_ita``; rows
    written before the ``source`` column count as ``missing`` in the by-source rows. ``tta``
    counts the evaluated rows scored with (``true``) and without (``false``) test-time
    augmentation, and those that do not record it (``unknown``); the report says it beside the
    model (``tta_note``).

    ``listed``: the keys the input lists (``resume.listed_keys``): only the output rows it lists
    are evaluated (``resume.listed_rows``), and the report counts the others, rows of other
    inputs scored into the same folder, as left out; ``None``: every row of the output.

    Writes ``OUT.evaluation.json`` and ``OUT.report.html`` next to the output folder and returns
    their paths. Raises ``EvaluationUnavailable`` when there is nothing to evaluate.
    """
    return _evaluate(out, classes, card, model_info, input_name=input_name, n_boot=n_boot,
                     now=InputNow(listed=listed)).paths


@dataclass
class _Evaluated:
    """What ``_evaluate`` wrote (``paths``), the output rows it left out as not ``listed``
    (``n_other``) and the labelled images the gate refused, left out of the figures
    (``gate_refused``: ``{"images": n, "malignant": k}``)."""

    paths: dict[str, str]
    n_other: int
    gate_refused: dict[str, int]
    warnings: list[str] = field(default_factory=list)


def _evaluate(  # noqa: PLR0915
    out: str | os.PathLike[str],
    classes: Sequence[str],
    card: Card,
    model_info: Mapping[str, str],
    *,
    input_name: str,
    n_boot: int,
    now: InputNow,
) -> _Evaluated:
    """``evaluate_output``, the number of output rows left out as not listed (``now.listed``)
    and the labelled rows the gate refused. ``now.own``: every output row is known to be the
    input's (``now.listed`` is then ``None``): all are evaluated, and the report names them as
    the input's rows, none left out.

    Rows the gate refused (``risk`` ``cannot_assess``) are left out of every figure, as the
    API and UI leave them out: they are no valid result, and their probabilities (kept in the
    output for audit) must not be shown as one; the report and ``gate_refused`` in
    ``OUT.evaluation.json`` count them, with how many are malignant (``card.malignant``), as
    ``dermsight bundle adapt`` counts them ("refused by the gate").

    ``now`` (``InputNow``): the input as it is now. Its labels are used, not those stored
    with the scores (a label corrected after scoring counts as corrected; the changed ones are
    counted and warned of). Rows that share an id with another row of the input are left out
    of every figure (their labels may disagree; which row is right cannot be told), counted and
    warned of (``_input_rows``). Evaluated images of the bundle's training or validation split
    (``training_overlap``) are counted and warned of, and the metrics on the others given
    apart (``held_out``). Metrics that need two classes are withheld when the evaluated labels
    hold one."""
    from dermsight.evaluate import EvalSettings, evaluate_predictions, unknown_label_warnings
    from dermsight.evaluate.report import render_report
    from dermsight.evaluate.skin_tone import ita_table
    from dermsight.predict import CANNOT_ASSESS

    prob_cols = [f"p_{c}" for c in classes]
    stored = stored_columns(out) or []
    has_ita, has_tta = "ita" in stored, "tta" in stored
    df = read_output(out, ["id", "path", "label", "group", "error", "risk", "age", "sex", "site",
                           *prob_cols, *(["ita"] if has_ita else []),
                           *(["tta"] if has_tta else []),
                           *(["source"] if "source" in stored else [])])
    n_other = 0
    if now.listed is not None and len(df):
        mine = listed_rows(df["id"].tolist(), df["path"].tolist(), now.listed)
        n_other = int((~mine).sum())
        df = df[mine].reset_index(drop=True)
    per_input = now.own or now.listed is not None
    df, ok, counts, warnings = _input_rows(df, now)
    n_all, n_err = len(df), int(df["error"].notna().sum())
    labelled = df[ok & df["label"].notna().to_numpy(bool)] if n_all else df
    if labelled.empty:
        raise EvaluationUnavailable(
            "--evaluate: " + (f"no row left to evaluate once the {counts['repeated']} rows "
                              "with a repeated id are left out" if counts["repeated"] and
                              df["label"].notna().any() else
                              "the input has no labels, nothing to evaluate (labels come from "
                              + label_columns_text() + ")"))
    known = labelled["label"].isin(list(classes))
    n_unknown = int((~known).sum())
    labelled = labelled[known].reset_index(drop=True)
    if labelled.empty:
        raise EvaluationUnavailable(
            f"--evaluate: no labelled row has one of the model's classes ({', '.join(classes)})"
        )
    refused_rows = (labelled["risk"] == CANNOT_ASSESS).to_numpy(bool)
    refused = {"images": int(refused_rows.sum()),
               "malignant": int(labelled["label"][refused_rows].isin(card.malignant).sum())}
    labelled = labelled[~refused_rows].reset_index(drop=True)
    if labelled.empty:
        raise EvaluationUnavailable(
            f"--evaluate: the gate refused all {refused['images']} labelled images (cannot "
            "assess): nothing to evaluate")
    groups = labelled["group"].where(labelled["group"].notna(), labelled["id"]).astype(str)
    probs = labelled[prob_cols].to_numpy(np.float64)
    y = labelled["label"].astype(str).to_numpy()
    offsets = card.decision.decider(classes)  # with a clinic's local update: the whole rule
    settings = EvalSettings(refer_threshold=card.thresholds.refer,
                            monitor_threshold=card.thresholds.monitor, offsets=offsets,
                            malignant_excluded=tuple(card.malignant_excluded), n_boot=n_boot,
                            intervals="wilson")  # honest on few cases: evaluate/settings.py
    meta, sources = subgroup_frame(labelled)
    evaluation = evaluate_predictions(y, probs, list(classes), groups.to_numpy(), meta, settings)
    warnings += unknown_label_warnings(y, "a row without a label is left out of the metrics")
    one_class = _withhold_one_class(evaluation, y)
    overlap = _add_overlap(evaluation, labelled["id"].astype(str).tolist(), y, card, now,
                           warnings=warnings, held_out=lambda held: evaluate_predictions(
                               y[held], probs[held], list(classes), groups.to_numpy()[held],
                               None, settings, subgroup_n_boot=0))
    evaluation["input_labels"] = {**counts, "binary_target_only": now.binary_target}
    if has_ita:  # the card's table (evaluate.card_tables), with this evaluation's settings
        ita = [float(v) if np.isfinite(v) else None
               for v in labelled["ita"].to_numpy(np.float64)]
        evaluation["by_ita"] = ita_table(
            y, probs, list(classes), ita, groups=groups.to_numpy(),
            settings=settings, noun="evaluated images")
    evaluation.update(tta=tta_dict(count_tta(labelled if has_tta
                                             else labelled.assign(tta=None))),
                      gate_refused=refused)
    plots = evaluation_plots(y, probs, classes, card, offsets)
    results = {
        "title": "dermsight batch evaluation",
        "model": {**model_info, "test-time augmentation (TTA)": tta_note(evaluation["tta"])},
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z") + f", from {out}",
        "data": {
            "summary": {
                "input": input_name or str(out),
                "output rows of this input" if per_input else "output rows": n_all,
                **({} if not per_input else {
                    "output rows of other inputs (left out)": n_other}),
                "evaluated rows (labelled, scored)": len(labelled),
                "refused by the gate: cannot assess (left out)":
                    f"{refused['images']} ({refused['malignant']} malignant)",
                "error rows (left out)": n_err,
                "labels outside the model's classes (left out)": n_unknown,
                "rows without a usable label (left out)": counts["no_label"],
                "rows sharing an id with another row (left out)": counts["repeated"],
                **({} if now.current is None else {
                    "labels changed since the rows were scored (the input's now are used)":
                        counts["relabelled"]}),
                "evaluated images in the bundle's training / validation split":
                    overlap.summary_cell(),
                "bootstrap groups": evaluation.get("n_groups"),
            },
            "notes": [
                "Metrics on the rows of this batch output that carry a ground-truth label"
                + ("." if not per_input else
                   " and that this input lists (rows of other inputs scored into the same "
                   "output folder are left out)."),
                "Confidence intervals resample by group (lesion/patient id when the input has "
                "one, else by image).",
                *([refused_note(refused) + "."] if refused["images"] else []),
                *([source_note(sources)] if sources else []),
                *([w[0].upper() + w[1:] + "." for w in warnings]),
                *([one_class] if one_class else []),
                *([held_out_note(evaluation["held_out"])] if "held_out" in evaluation else []),
                *([overlap.note()] if overlap.note() else []),
                *([] if plots else [NO_PLOTS]),
            ],
        },
        "test": evaluation,
        "plots": plots,
        "limitations": [
            "Only as representative as the input: check how these images were selected.",
            "Rows the model could not score (errors) and images the gate refused (cannot "
            "assess) are not counted: the figures describe the images that got a result.",
            *([OPTIMISTIC] if overlap.used else []),
        ],
    }
    json_path = sidecar(out, "evaluation.json")
    html_path = sidecar(out, "report.html")
    _write_sidecar(json_path, json.dumps(evaluation, indent=2, default=_jsonable) + "\n")
    _write_sidecar(html_path, render_report(results))
    return _Evaluated({"json": str(json_path), "report": str(html_path)}, n_other, refused,
                      warnings)


@dataclass
class InputNow:
    """What ``_evaluate`` knows of the input as it is now: ``listed``, the keys it lists
    (``None``: every output row is evaluated) and ``own``, whether every output row is known
    to be its own (see ``_evaluate``); ``current``, the labels it gives
    each key, in listing order (``input_labels``; None: the labels stored with the scores are
    used); ``binary_target``, its only label is a SIIM-ISIC ``target`` column (its target 0
    rows, benign of unknown diagnosis, name no class: ``binary_target_only``); ``bundle_dir``,
    the bundle's folder, where its split file is looked for (``training_overlap``)."""

    listed: Mapping[Key, int] | None = None
    own: bool = False
    current: Mapping[Key, Sequence[str | None]] | None = None
    binary_target: bool = False
    bundle_dir: Path | None = None


def _input_rows(df: pd.DataFrame, now: InputNow
                ) -> tuple[pd.DataFrame, np.ndarray, dict[str, int], list[str]]:
    """The input's output rows with its labels now (``now.current``), which of them can be
    evaluated (scored, no id shared with another row), counts (``relabelled``: labels that
    differ from the stored ones; ``repeated``: rows sharing an id; ``no_label``: scored rows
    without a usable label) and the warnings to give of them."""
    warnings: list[str] = []
    n_relabelled = 0
    if now.current is not None:
        df, changed = _current_labels(df, now.current)
        n_relabelled = len(changed)
        if n_relabelled:
            warnings.append(
                f"{n_relabelled} label{'s' if n_relabelled != 1 else ''} of the input "
                f"{'differ' if n_relabelled != 1 else 'differs'} "
                f"from those stored with the scores ({', '.join(changed[:3])}"
                f"{', ...' if n_relabelled > 3 else ''}; the input was changed after it was "
                "scored): the metrics use the input's labels now")
    ids = df["id"].astype(str)
    repeated = ids.duplicated(keep=False).to_numpy(bool)
    n_repeated = int(repeated.sum())
    if n_repeated:
        n_ids = int(ids[repeated].nunique())
        warnings.append(
            f"{n_repeated} input rows share {n_ids} id{'s' if n_ids != 1 else ''} with another "
            "row: they are left out of the metrics (one image would count more than once, "
            "perhaps with labels that disagree); give each image its own id to evaluate it")
    ok = df["error"].isna().to_numpy(bool) & ~repeated
    n_nolabel = int((ok & df["label"].isna().to_numpy(bool)).sum())
    if now.binary_target and n_nolabel:
        warnings.append(
            f"{n_nolabel} row{'s' if n_nolabel != 1 else ''} without a usable label: "
            f"{binary_note(n_nolabel)}")
    return df, ok, {"relabelled": n_relabelled, "repeated": n_repeated,
                    "no_label": n_nolabel}, warnings


def _add_overlap(evaluation: dict[str, Any], ids: Sequence[str], y: np.ndarray, card: Card,
                 now: InputNow, *, warnings: list[str],
                 held_out: Callable[[np.ndarray], dict[str, Any]]) -> TrainingOverlap:
    """``evaluation["training_overlap"]``: the evaluated ``ids`` in the bundle's split, with a
    warning when some were used to train it or when that cannot be checked, and
    ``evaluation["held_out"]``: ``held_out(mask)``'s metrics on the others."""
    overlap = training_overlap(card, now.bundle_dir, ids)
    evaluation["training_overlap"] = overlap.record()
    if overlap.used or not overlap.checked:
        warnings.append(overlap.warning())
    if overlap.used:
        held = overlap.held_out_mask(ids)
        if held.any():
            part = held_out(held)
            _withhold_one_class(part, y[held])
            evaluation["held_out"] = {"n": part["n"], "metrics": part["metrics"],
                                      "ci": part["ci"]}
    return overlap


def label_columns_text() -> str:
    """Where a labelled input's labels are read from (the CSV readers' columns), in words."""
    from dermsight.io.csvfolder import LABEL_COLS, ONEHOT_CORE

    return (f"a CSV column named {', '.join(LABEL_COLS[:-1])} or {LABEL_COLS[-1]}, ISIC 2019 "
            f"one-hot class columns ({', '.join(ONEHOT_CORE)}, AK), ISIC 2017 melanoma and "
            "seborrheic_keratosis columns, or a SIIM-ISIC target column (1: melanoma)")


def binary_note(n: int) -> str:
    """Why ``n`` rows of an input labelled by a binary ``target`` column only are left out."""
    return (f"the input's only label is a binary target column, and target 0 (benign, "
            f"diagnosis unknown) names none of the model's classes, so {n} such "
            f"row{'s are' if n != 1 else ' is'} not in the metrics: the figures cover the "
            "melanomas (target 1) only")


def binary_target_only(input: str) -> bool:
    """Whether ``input`` (a local CSV, or a folder with one) gives its labels by a SIIM-ISIC
    ``target`` column only (no diagnosis): its target 0 rows are unlabelled."""
    from dermsight.batch.references import is_remote
    from dermsight.io.csvfolder import classify_csvs, read_header

    if is_remote(input):
        return False
    try:
        p = Path(input)
        csv = classify_csvs(p)[0] if p.is_dir() else p if p.suffix.lower() == ".csv" else None
        if csv is None:
            return False
        layout = read_header(csv)
    except (ReaderError, OSError):
        return False
    return bool(layout.target_col) and not (layout.label_col or layout.onehot
                                             or layout.isic2017)


def input_labels(rows: Iterable[Mapping[str, Any]]
                 ) -> tuple[Counter[Key], dict[Key, list[str | None]]]:
    """How many times the input lists each key (``listed_keys``) and the labels it gives
    them now, in listing order."""
    from dermsight.batch.sources import row_key

    listed: Counter[Key] = Counter()
    labels: dict[Key, list[str | None]] = {}
    for row in rows:
        k = row_key(row.get("id"), row.get("path"))
        listed[k] += 1
        label = row.get("label")
        labels.setdefault(k, []).append(None if label is None or label == "" else str(label))
    return listed, labels


def _current_labels(df: pd.DataFrame, current: Mapping[Key, Sequence[str | None]]
                    ) -> tuple[pd.DataFrame, list[str]]:
    """``df`` (output rows) with the labels the input gives now (``current``: per key, in
    listing order; the n-th output row of a key is its n-th listing, as resume counts them),
    and those that differ from the labels stored with the scores (``id: old -> new``)."""
    from dermsight.batch.sources import row_key

    seen: Counter[Key] = Counter()
    now: list[str | None] = []
    for k in map(row_key, df["id"], df["path"]):
        labels = current.get(k, ())
        i = seen[k]
        seen[k] += 1
        now.append(labels[i] if i < len(labels) else None)
    stored = [None if pd.isna(v) or v == "" else str(v) for v in df["label"]]
    changed = [f"{rid}: {a or 'none'} -> {b or 'none'}"
               for rid, a, b in zip(df["id"], stored, now, strict=True) if a != b]
    return df.assign(label=pd.Series(now, index=df.index, dtype=object)), changed


#: metrics that say nothing over one class (each item's class is the only one): withheld
_TWO_CLASS_METRICS = ("balanced_accuracy", "accuracy", "auc_macro")


def _withhold_one_class(evaluation: dict[str, Any], y: np.ndarray) -> str | None:
    """Withhold (None) the metrics that need at least two classes when the labels ``y`` hold
    one; returns the report's note then, else None."""
    present = sorted(set(map(str, y)))
    if len(present) >= 2:
        return None
    for key in _TWO_CLASS_METRICS:
        if key in evaluation.get("metrics", {}):
            evaluation["metrics"][key] = None
        if key in evaluation.get("ci", {}):
            evaluation["ci"][key] = {"value": None, "lo": None, "hi": None, "n": 0}
    evaluation["withheld"] = {"metrics": list(_TWO_CLASS_METRICS),
                              "reason": f"one class only ({', '.join(present)})"}
    return (f"Every evaluated image has the same label ({', '.join(present)}): balanced and "
            "overall accuracy and the mean AUC are withheld (they need at least two classes); "
            "sensitivities are shown, specificities cannot be measured.")


#: the report's limitation when evaluated images were used to train or calibrate the bundle
OPTIMISTIC = ("Some evaluated images were used to train or calibrate this model (its training "
              "or validation split): figures on them are optimistic, not an estimate of how it "
              "does on new patients; the held-out figures, where given, leave them out.")


#: how ``training_overlap`` matches evaluated images to the bundle's split, and what that misses
MATCHED_BY = "image id"
BY_ID_ONLY = ("the check against the bundle's training / validation split compares image ids "
              "only (the bundle records its split's ids, not the images' content): a renamed "
              "copy of a training or validation image is not detected, and figures on such "
              "copies would be optimistic")


@dataclass
class TrainingOverlap:
    """The evaluated images in the bundle's recorded split (``training_overlap``)."""

    checked: bool
    reason: str = ""
    split_file: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    seen: frozenset[str] = frozenset()  # ids of the train and val splits

    @property
    def used(self) -> int:
        """Evaluated images of the training or validation split."""
        return self.counts.get("train", 0) + self.counts.get("val", 0)

    def held_out_mask(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([i not in self.seen for i in ids], dtype=bool)

    def record(self) -> dict[str, Any]:
        if not self.checked:
            return {"checked": False, "reason": self.reason}
        return {"checked": True, "matched_by": MATCHED_BY, "renamed_copies_detected": False,
                "limit": BY_ID_ONLY, "split_file": self.split_file, **self.counts,
                "used_to_train_or_calibrate": self.used,
                **({"caveat": f"{self.used} images were used to train / calibrate this model: "
                              "figures on them are optimistic"} if self.used else {})}

    def summary_cell(self) -> str:
        if not self.checked:
            return f"not checked ({self.reason})"
        return (f"{self.counts.get('train', 0)} / {self.counts.get('val', 0)} (matched by "
                "image id only: renamed copies are not detected)")

    def note(self) -> str | None:
        """The report's line on what the check can and cannot see (``None`` when it was not
        made: the warning says so)."""
        return BY_ID_ONLY[0].upper() + BY_ID_ONLY[1:] + "." if self.checked else None

    def warning(self) -> str:
        if not self.checked:
            return (f"whether the evaluated images were used to train this model could not be "
                    f"checked ({self.reason})")
        return (f"{self.used} evaluated images were used to train / calibrate this model "
                f"({self.counts.get('train', 0)} in its training split, "
                f"{self.counts.get('val', 0)} in its validation split, {self.split_file}, "
                "matched by image id only): figures on them are optimistic; the report and "
                "evaluation JSON give the metrics on the other images apart (held_out)")


def _split_fallbacks() -> list[Path]:
    """Where the shipped bundle's split file may be (``configs/default-split.csv``): from the
    current folder as the other commands read it, and from the source checkout."""
    from dermsight.cli.labelled_data import DEFAULT_SPLIT

    return [DEFAULT_SPLIT, Path(__file__).resolve().parents[3] / DEFAULT_SPLIT]


def training_overlap(card: Card, bundle_dir: Path | None,
                     ids: Sequence[str]) -> TrainingOverlap:
    """How many of the evaluated ``ids`` are in the bundle's train / val / test split. The card
    records each split's fingerprint (``data.split_sha256``), not its ids: the split file is
    the one ``splits.recorded_split_file`` finds (beside the bundle, its run folder, then
    ``_split_fallbacks``) whose ids match every recorded fingerprint."""
    from dermsight.splits import read_split_file, recorded_fingerprints, recorded_split_file

    data = card.extra.get("data")
    if not recorded_fingerprints(data):
        return TrainingOverlap(False, "the bundle's card records no split")
    path = recorded_split_file(data, bundle_dir, _split_fallbacks())
    try:
        split = read_split_file(path) if path is not None else None
    except (OSError, ValueError, KeyError):  # changed since it matched: as if not found
        split = None
    if path is None or split is None:
        return TrainingOverlap(False, "the bundle's split file was not found: its card records "
                                      "only a fingerprint of each split")
    where = dict(zip(split["image_id"], split["split"], strict=True))
    counts = Counter(where.get(i, "not_in_split") for i in ids)
    return TrainingOverlap(
        True, split_file=str(path),
        counts={k: int(counts.get(k, 0)) for k in ("train", "val", "test", "not_in_split")},
        seen=frozenset(i for i, s in where.items() if s in ("train", "val")))


def held_out_note(held: Mapping[str, Any]) -> str:
    """The report's line on the metrics over the images outside the training/validation
    split."""
    metrics = held.get("metrics", {})
    shown = [f"{name} {metrics[key]:.3f}" for key, name in
             (("balanced_accuracy", "balanced accuracy"), ("malignant_auc", "malignant AUC"),
              ("mel_auc", "melanoma AUC")) if isinstance(metrics.get(key), float)
             and metrics[key] == metrics[key]]
    return (f"On the {held['n']} evaluated images outside the bundle's training and validation "
            "split (held_out in the evaluation JSON, with intervals): "
            + (", ".join(shown) if shown else "no headline metric can be computed") + ".")


def subgroup_frame(labelled: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The evaluated rows' subgroup attributes for ``subgroup_table`` (sex, age, site) and,
    when they name at least two data sources (the ``source`` column; a row that names none is
    ``missing``), their ``source`` too, with those sources; else no source column and ``[]``
    (one source's table would only repeat the pooled figures)."""
    from dermsight.evaluate.subgroups import MISSING, subgroup_labels

    meta = labelled[["age", "sex", "site"]].reset_index(drop=True)
    if "source" not in labelled.columns:
        return meta, []
    frame = labelled[["source"]].reset_index(drop=True)
    _, order = subgroup_labels(frame)["source"]
    sources = [s for s in order if s != MISSING]
    if len(sources) < 2:
        return meta, []
    return meta.assign(source=frame["source"]), sources


def source_note(sources: Sequence[str]) -> str:
    """The report's note on evaluated rows of several data sources."""
    return (f"The evaluated rows come from {len(sources)} data sources ({', '.join(sources)}; "
            "the input's source column): the Per data source table gives the metrics within "
            "each. Sources can differ in class mix, cameras and how images were selected, so "
            "pooled figures also reflect differences between sources, not only the model.")


#: the report's note when matplotlib (the ``[train]`` extra) is not installed
NO_PLOTS = ("No figures: they need matplotlib, which comes with the [train] extra "
            "(pip install 'dermsight[train]'); every number is in the tables.")


def evaluation_plots(y: np.ndarray, probs: np.ndarray, classes: Sequence[str], card: Card,
                     offsets: Any) -> dict[str, bytes]:
    """The model card's figures (ROC, confusion, reliability, risk tiers) for these rows, with
    the bundle's decision rule and thresholds; none without matplotlib (a core install)."""
    try:
        from dermsight.evaluate.plots import make_plots
    except ImportError:
        return {}
    return make_plots(y, probs, list(classes), decision_offsets=offsets,
                      thresholds={"refer": card.thresholds.refer,
                                  "monitor": card.thresholds.monitor},
                      malignant_excluded=tuple(card.malignant_excluded))


def run_evaluation(summary: RunSummary, card: Card,
                   rows: Callable[[], Iterable[Mapping[str, Any]]],
                   bundle_dir: Path | None = None) -> None:
    """``evaluate_output`` for a run, of the output rows its input lists: ``summary.evaluation``
    gets the file paths, or ``{"unavailable": reason}``, and ``summary.not_listed`` the output's
    rows that the input does not list.

    ``rows()`` (the input without pixels) is read once more: for the labels it gives now
    (the metrics use them, not those stored with rows scored earlier: ``_evaluate``'s
    ``current``) and, unless every output row is the input's (the run read its whole input
    and the output holds no row it does not list: ``summary.not_listed == 0``), to find its
    rows. If that read fails (the input moved, a network error), the evaluation is
    ``unavailable`` with the reason, and the run's rows and summary are kept. ``bundle_dir``:
    the bundle's folder, where its split file is looked for (``training_overlap``)."""
    listed: Mapping[Key, int] | None = None
    own = summary.not_listed == 0
    try:
        keys, current = input_labels(rows())
        if not own:
            listed = keys
    except (ReaderError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        summary.evaluation = {"unavailable": (
            f"--evaluate: the input could not be read again to find its rows in the output "
            f"({reason}); the scores are kept: run the same command again to evaluate them")}
        return
    try:
        done = _evaluate(
            summary.out, card.classes, card, {"name": card.name, "version": card.version},
            input_name=summary.input, n_boot=200,
            now=InputNow(listed, own, current, binary_target_only(summary.input), bundle_dir))
        summary.evaluation, summary.not_listed = done.paths, done.n_other
        summary.gate_refused = done.gate_refused
        summary.evaluation_warnings = done.warnings
    except EvaluationUnavailable as exc:
        summary.evaluation = {"unavailable": str(exc)}


def _write_sidecar(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8); ``OutputFailure`` naming it when it cannot be (a
    full disk: the partial file is removed)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        with suppress(OSError):
            path.unlink(missing_ok=True)
        raise OutputFailure(
            f"cannot write {path}: {exc.strerror or exc}. The scores are kept: once the cause "
            "is fixed, run the same command again to evaluate them") from exc


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
