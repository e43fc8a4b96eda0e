"""One self-contained HTML evaluation report (inline CSS, PNGs as base64 data URIs, no scripts,
no external resources), rendered from a plain ``results`` dict the training pipeline fills.

``results`` schema (every key optional unless marked; unknown keys are ignored)::

    {
      "title": "dermsight evaluation report",         # default shown
      "model": {"name": "dermsight-effnet", "version": "1.2.0", ...},
                                        # name/version in the header; every other key is listed
      "generated": "2025-01-31T12:00Z, commit abc123", # provenance line
      "intended_use": "Decision support for ...",     # paragraph
      "data": {
        "summary": {"test images": 1830, "test patients/groups": 1502, ...},  # key/value table
        "splits": {"train": {"MEL": 900, "NV": 5000, ...}, "val": {...}, "test": {...}},
                                        # class counts per split (a class x split table)
        "notes": ["Group-aware split on group_id ...", ...],
      },
      "test": <evaluation dict>,        # REQUIRED for the metric sections: the output of
                                        # dermsight.evaluate.evaluate_predictions(...)
      "baseline": {                     # comparison table (e.g. a linear probe)
        "name": "linear probe",
        "test": <evaluation dict>,      # same test set
        "difference": {metric: {"value", "lo", "hi", "n"}},
                                        # optional paired CIs: evaluate.compare_predictions(...)
      },
      "thresholds": [                   # default: the refer/monitor thresholds in "test"
        {"name": "refer", "value": 0.31,
         "rule": "highest threshold with >= 95 % malignant sensitivity on validation",
         "sensitivity": 0.95 | {"value", "lo", "hi", "n"},   # on test; if absent, taken from
         "specificity": 0.61 | {...}},                         # test ci "<name>_sensitivity" ...
         # or, instead of "rule": "target_sensitivity": 0.95, "fit_on": "validation"
      ],
      "threshold_fit": {                # the default thresholds' design (card_report_extras)
        "fit_on": "validation", "thresholds": {"refer": 0.117, "monitor": 0.046},
        "target_sensitivity": {"refer": 0.95, "monitor": 0.99},
        "reached_sensitivity": {"refer": 0.952},   # on the images they were fitted on
      },                                # used only for the thresholds it names; the report
                                        # says when the test sensitivity falls below a target
      "natural_frequencies": <card natural_frequencies>,  # per risk tier, with the test
                                        # images' counts beside them where "test" gives them
      "calibration": {"temperature": 1.43, "fit_on": "validation",
                      "ece_before": 0.081, "ece_after": 0.024,
                      "nll_before": 0.71, "nll_after": 0.64},   # any numeric keys are listed
      "plots": {"roc": <png>, "confusion": <png>, "reliability": <png>, "risk_tiers": <png>,
                "<other>": <png>},      # <png> = PNG bytes, base64 text, or a data:image/png URI
                                        # (see dermsight.evaluate.plots.make_plots)
      "limitations": ["Trained on HAM10000/ISIC 2016-2019 only ...", ...],
      "cross_source": <cross_source section>,   # dermsight.evaluate.cross_source: per-source
                                        # test rows and leave-one-source-out rows
    }

``test["by_ita"]`` (optional, :func:`dermsight.evaluate.skin_tone.ita_table`) adds the table by
skin-tone band with its plain statement of how few darker-skin images there are.

Anything given as text is HTML-escaped. A plot value that is not PNG data (for instance a URL) is
dropped with a visible note, so the file never loads anything from outside.

For a screen reader and for print (``tests/test_report_axe.py``: axe-core, WCAG 2.0/2.1 A and AA):
``lang`` and a title, a ``<header>`` and one ``<main>``, headings in order, every table with a
``<caption>`` and scoped header cells, every plot with a text alternative that says what it shows
and which table holds its numbers, text contrast of at least 4.5:1, a colour never the only sign
(model better / baseline better is also written), and a print style sheet (tables shrink to the
page, tables and plots kept whole where they fit, table headers repeated). Every metric is shown
with its count (n) beside its 95% interval where the evaluation has one. An evaluation whose
intervals name their cases (the ``"wilson"`` method,
:func:`dermsight.evaluate.bootstrap.case_intervals`) shows a proportion as
``1.000 (0.862 to 1.000; 24 of 24, small sample)``: its ``k of n``, "small sample" under 30
cases, and why a figure has no interval (its ``note``); the notes under the tables name that
method. A card's intervals (percentile bootstrap, ``n`` counting resamples) render as they always
have, except one that collapsed to a single value (``lo == hi``, as a sensitivity of 1.0 does):
a proportion whose case count is known shows ``22 of 22; the bootstrap gives no interval; Wilson
0.851 to 1.000``, any other figure ``no interval (every resample gave the same value)``.

A model-baseline difference is called better or worse (and coloured) only where its paired 95%
interval excludes 0 ("no clear difference" otherwise; lower is better for ECE, Brier and NLL); a
difference without an interval names neither. A per-source row whose intervals rest on fewer than
:data:`FEW_GROUPS` patients / lesion groups is marked "few patients: interval unreliable".
:func:`card_report_extras` gives what a bundle card adds to ``results`` (the thresholds' design
sensitivities and the natural frequencies).
"""

from __future__ import annotations

import base64
import binascii
import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np

from dermsight.evaluate.bootstrap import wilson_interval
from dermsight.evaluate.frequencies import (
    DEFAULT_MALIGNANT,
    from_public_collections,
    limits_text,
    malignant_means_text,
    or_list,
    too_few,
)
from dermsight.evaluate.metrics import HEADLINE_METRICS
from dermsight.evaluate.settings import MIN_CASES, MIN_N
from dermsight.taxonomy import MALIGNANT, UNSPECIFIED

__all__ = ["FEW_GROUPS", "METRIC_LABELS", "card_report_extras", "render_report"]

#: Display names for metric keys (others fall back to the key itself).
METRIC_LABELS: dict[str, str] = {
    "balanced_accuracy": "Balanced multiclass accuracy (the ISIC 2019 challenge's metric, "
                         "over all test items)",
    "accuracy": "Accuracy",
    "auc_macro": "Mean one-vs-rest AUC",
    "malignant_auc": "Malignant (MEL, BCC or SCC) vs other AUC, on the malignant share",
    "malignant_pauc80": "Malignant pAUC above 80% TPR (0-0.2)",
    "mel_auc": "Melanoma vs rest AUC",
    "mel_pauc80": "Melanoma pAUC above 80% TPR (0-0.2)",
    "malignant_spec_at_95sens": "Specificity at 95% malignant sensitivity (test-chosen cut-off)",
    "malignant_threshold_at_95sens": "Cut-off reaching 95% malignant sensitivity on test",
    "refer_sensitivity": "Malignant sensitivity at refer threshold",
    "refer_specificity": "Specificity at refer threshold",
    "monitor_sensitivity": "Malignant sensitivity at monitor threshold",
    "monitor_specificity": "Specificity at monitor threshold",
    "ece": "Expected calibration error (15 bins)",
    "brier": "Brier score (multiclass, 0-2)",
    "nll": "Negative log-likelihood",
}

#: How a figure on fewer than MIN_N cases is marked (subgroups that small are withheld).
SMALL_SAMPLE = "small sample"

#: A per-source row whose bootstrap resamples fewer patients / lesion groups than this is marked
#: :data:`FEW_GROUPS_NOTE`: a group bootstrap over a handful of groups says little.
FEW_GROUPS = 10
FEW_GROUPS_NOTE = "few patients: interval unreliable"

#: A percentile-bootstrap interval whose ends coincide (every resample gave one value, as for a
#: proportion of 0 or 1) and no case count to put a Wilson interval on.
NO_INTERVAL = "no interval (every resample gave the same value)"

#: HEADLINE_METRICS plus the monitor-threshold rows, right after the refer-threshold rows.
_HEADLINE = tuple(
    k for key in HEADLINE_METRICS
    for k in ((key, "monitor_sensitivity", "monitor_specificity")
              if key == "refer_specificity" else (key,))
)
_LOWER_IS_BETTER = frozenset({"ece", "brier", "nll"})

#: what the malignant figures score (dermsight.malignancy): not the three classes' plain sum when
#: the bundle leaves a class out of the denominator, as the nine-class bundles leave out UNK
#: (the shipped model's malignant classes: :func:`_malignant_share` names an evaluation's own)
_MALIGNANT_SHARE = ("The malignant share is P(MEL)+P(BCC)+P(SCC) over the probability on the "
                    "classes the bundle does not leave out of it (a bundle may leave out UNK); "
                    "the malignant AUC, pAUC and thresholds score it.")
#: how the texts above name the shipped model's malignant classes
_SHIPPED_MALIGNANT = or_list(DEFAULT_MALIGNANT)

_PLOT_CAPTIONS: dict[str, str] = {
    "roc": ("One-vs-rest ROC curves on the test set (dashed: malignant = MEL, BCC or SCC, "
            "scored by the malignant share)."),
    "confusion": ("Confusion matrix of the suggested class (the bundle's decision rule), "
                  "rows normalised to the true class."),
    "reliability": "Reliability diagram: 15 equal-width bins on the top-class probability.",
    "risk_tiers": "Test items per risk tier, by true malignancy.",
}

#: Text alternatives of the standard plots: what the picture shows and where its numbers are
#: in the report's tables (a screen reader, or a print without images, still gets them).
_PLOT_ALTS: dict[str, str] = {
    "roc": ("Line chart of one-vs-rest ROC curves, sensitivity against 1 - specificity, one "
            "curve per class with its AUC and n in the legend, plus a dashed malignant curve. "
            "The AUCs with their 95% intervals and counts are in the Test metrics and "
            "Per-class results tables."),
    "confusion": ("Heat map of the confusion matrix: true class in rows (with its n), suggested "
                  "class in columns, each cell the fraction of the true class and its count. "
                  "Per-class sensitivity and specificity are in the Per-class results table."),
    "reliability": ("Reliability diagram: accuracy against top-class confidence in 15 bins, "
                    "against the diagonal of perfect calibration, with the number of items per "
                    "bin below. The calibration errors are in the Calibration table."),
    "risk_tiers": ("Stacked bar chart: test items per risk tier (low, moderate, high), split "
                   "into benign and malignant, each bar labelled with its count and malignant "
                   "share. Sensitivity and specificity at the thresholds are in the Thresholds "
                   "table."),
}

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1d2733;
 max-width:1100px;margin:2em auto;padding:0 1.2em;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #d9e2ec;padding-bottom:.2em;
 margin-top:2em}h3{margin-top:1.4em}
.meta{color:#52606d}.note{color:#52606d;font-size:.9em}.warn{background:#fff4e5;
 border-left:4px solid #f0a020;padding:.5em .8em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
th,td{border:1px solid #d9e2ec;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums;
 white-space:nowrap}
caption{caption-side:top;text-align:left;font-weight:600;padding:.2em 0}
th[scope=row]{font-weight:normal}
tr.withheld td{color:#52606d;font-style:italic}
figure{margin:1em 0}figure img{max-width:100%;box-sizing:border-box;border:1px solid #d9e2ec}
figcaption{color:#52606d;font-size:.9em}
.better{color:#1e7b34}.worse{color:#b3261e}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:9pt;color:#000}
 table{width:100%;font-size:8pt;break-inside:avoid;page-break-inside:avoid}
 thead{display:table-header-group}tr{break-inside:avoid;page-break-inside:avoid}
 td.num{white-space:normal}th,td{padding:.15em .3em;overflow-wrap:anywhere}
 figure{break-inside:avoid;page-break-inside:avoid}figure img{max-height:90vh}
 h2,h3{break-after:avoid;page-break-after:avoid}
}
"""


# --- formatting helpers --------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _is_num(v: object) -> TypeGuard[numbers.Real]:
    """A finite real number, numpy scalars included (booleans are not numbers here)."""
    return (isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)
            and math.isfinite(float(v)))


def _num(v: object, digits: int = 3, signed: bool = False) -> str:
    if not _is_num(v):
        return "&mdash;" if v is None else _e(v)
    if isinstance(v, numbers.Integral):
        return f"{int(v):+,}" if signed else f"{int(v):,}"
    return f"{float(v):+.{digits}f}" if signed else f"{float(v):.{digits}f}"


def _ci(v: object, digits: int = 3, signed: bool = False, cases: object = None) -> str:
    """A value, or a CI dict ``{value, lo, hi}`` as ``0.912 (0.893-0.930)``; an entry that
    names its cases (``draws``: :func:`dermsight.evaluate.bootstrap.case_intervals`) also says
    ``k of n`` for a proportion, ``small sample`` under :data:`MIN_N` cases, and why it has no
    interval (``note``).

    A percentile-bootstrap interval that collapsed to one value (``lo == hi``: every resample
    gave the same figure, as a sensitivity of 1.0 does) is not shown as an interval: with
    ``cases`` (the count a proportion is taken over) it is replaced by the Wilson interval of
    its ``k of n``, named as such; without, the cell says there is no interval."""
    if isinstance(v, Mapping):
        value, lo, hi = v.get("value"), v.get("lo"), v.get("hi")
        if value is None and v.get("withheld") and v.get("note"):
            return f'withheld <span class="note">({_e(v["note"])})</span>'
        if value is None:
            return "&mdash;"
        named = _cases(v)
        if lo is None or hi is None:
            why = [f"no interval: {_e(v['note'])}"] if v.get("note") else []
            words = "; ".join([*why, *([named] if named else [])])
            shown = _num(value, digits, signed)
            return f'{shown} <span class="note">({words})</span>' if words else shown
        if "draws" not in v and _collapsed(v):
            return _collapsed_cell(value, digits, signed, cases)
        return (f"{_num(value, digits, signed)} <span class=\"note\">"
                f"({_num(lo, digits, signed)} to {_num(hi, digits, signed)}"
                f"{'; ' + named if named else ''})</span>")
    return _num(v, digits, signed)


def _collapsed(v: Mapping[str, Any]) -> bool:
    """Whether a CI entry's interval has collapsed to one value (``lo == hi``, up to floating
    point round-off: an AUC of 1 in every resample can come back as 0.9999999999999999)."""
    lo, hi = v.get("lo"), v.get("hi")
    return _is_num(lo) and _is_num(hi) and math.isclose(float(lo), float(hi), rel_tol=1e-9,
                                                        abs_tol=1e-12)


def _proportion_k(value: object, n: object) -> int | None:
    """``k`` when ``value`` is a proportion ``k / n`` of a whole number ``k`` (else ``None``)."""
    if not (_is_num(value) and _is_num(n)) or float(n) < 1 or not 0 <= float(value) <= 1:
        return None
    k = float(value) * float(n)
    return round(k) if abs(k - round(k)) < 1e-6 else None


def _collapsed_cell(value: object, digits: int, signed: bool, cases: object) -> str:
    """A figure whose bootstrap interval collapsed: the Wilson interval of its ``k of n`` where
    the count is known and it is a proportion of it, else :data:`NO_INTERVAL`."""
    shown = _num(value, digits, signed)
    k = None if signed or not _is_num(cases) else _proportion_k(value, cases)
    bounds = None if k is None or not _is_num(cases) else wilson_interval(k, float(cases))
    if k is None or bounds is None:
        return f'{shown} <span class="note">({NO_INTERVAL})</span>'
    return (f'{shown} <span class="note">({k:,} of {_count(cases)}; the bootstrap gives no '
            f"interval; Wilson {bounds[0]:.{digits}f} to {bounds[1]:.{digits}f})</span>")


def _cases_for(key: str, metrics: Mapping[str, Any]) -> object:
    """The count a headline proportion is taken over (``None`` for a figure that is not one)."""
    n, mal = metrics.get("n"), metrics.get("n_malignant")
    if key in ("refer_sensitivity", "monitor_sensitivity", "malignant_sens_at_95sens"):
        return mal
    if key in ("refer_specificity", "monitor_specificity", "malignant_spec_at_95sens"):
        return _benign(metrics)
    if key == "accuracy":
        return n
    for prefix in ("sensitivity_", "specificity_"):
        if key.startswith(prefix):
            k = metrics.get(f"n_{key[len(prefix):]}")
            if not (_is_num(k) and _is_num(n)):
                return None
            return k if prefix == "sensitivity_" else float(n) - float(k)
    return None


def _cases(v: Mapping[str, Any]) -> str:
    """``8 of 8, small sample`` for an entry that names its cases (``""`` for one that does
    not, such as a card's: its ``n`` counts resamples)."""
    n = v.get("n")
    if "draws" not in v or not _is_num(n):
        return ""
    parts = [f"{_num(v['k'])} of {_num(n)}"] if _is_num(v.get("k")) else []
    if _is_num(v.get("positives")) and _is_num(v.get("negatives")):  # an AUC: n = smaller side
        parts = [f"{_num(v['positives'])} positive, {_num(v['negatives'])} negative"]
    if float(n) < MIN_N:
        parts.append(SMALL_SAMPLE if parts else f"n = {_num(n)}, {SMALL_SAMPLE}")
    return ", ".join(parts)


def _withheld(v: object) -> bool:
    """Whether a CI entry was withheld for too few cases (``withhold_thin_aucs``)."""
    return isinstance(v, Mapping) and bool(v.get("withheld"))


def _thin_classes_note(metrics: Mapping[str, Any], classes: Sequence[str]) -> str:
    """The note on classes with fewer than :data:`MIN_CASES` items that enter the balanced
    accuracy (the mean recall of the classes present, each weighing the same), or ``""``."""
    counts = {c: metrics.get(f"n_{c}") for c in classes}
    present = [(c, float(n)) for c, n in counts.items() if _is_num(n) and float(n) > 0]
    thin = [(c, n) for c, n in present if n < MIN_CASES]
    if not thin:
        return ""
    listed = ", ".join(f"{_e(c)} ({_count(n)} item{'' if n == 1 else 's'})"
                       for c, n in thin)
    return (f'<p class="note">Balanced accuracy is the mean recall of the {len(present)} '
            f"classes present, each weighing 1/{len(present)} however few its items. "
            f"{len(thin)} of them {'has' if len(thin) == 1 else 'have'} fewer than {MIN_CASES} "
            f"items: {listed}; one image of a class with k items moves the balanced "
            f"accuracy by 1/({len(present)} &times; k), {1 / len(present):.3f} when k is 1. "
            "Check that their labels are meant"
            + (" (a label written &ldquo;unknown&rdquo; is read as UNK, Other / unknown)"
               if any(c == UNSPECIFIED for c, _ in thin) else "") + ".</p>")


def _names_cases(test: Mapping[str, Any]) -> bool:
    """Whether an evaluation's intervals name their cases (the ``wilson`` interval method)."""
    return any(isinstance(v, Mapping) and "draws" in v for v in (test.get("ci") or {}).values())


def _value(v: object) -> float | None:
    if isinstance(v, Mapping):
        v = v.get("value")
    return float(v) if _is_num(v) else None


def _table(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[str]],
    row_class: Sequence[str] = (),
    num_cols: Iterable[int] = (),
    caption: str = "",
) -> str:
    """``header`` and ``caption`` are escaped; row cells are HTML already (use :func:`_e` /
    :func:`_num`). Column headers are ``<th scope="col">``; ``caption`` names the table."""
    nums = set(num_cols)
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    if header is not None:
        out += ["<thead><tr>", *(f'<th scope="col">{_e(h)}</th>' for h in header),
                "</tr></thead>"]
    out.append("<tbody>")
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if i < len(row_class) and row_class[i] else ""
        out.append(f"<tr{cls}>")
        out += [f'<td class="num">{c}</td>' if j in nums else f"<td>{c}</td>"
                for j, c in enumerate(row)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv_table(d: Mapping[str, Any], caption: str) -> str:
    """A two-column table whose keys are row headers (``<th scope="row">``)."""
    rows = []
    for k, v in d.items():
        if isinstance(v, Mapping | list | tuple):
            cell = _e(", ".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, Mapping)
                      else ", ".join(str(x) for x in v))
        else:
            cell = _num(v) if _is_num(v) or v is None else _e(v)
        rows.append([_e(k), cell])
    if not rows:
        return ""
    body = "".join(f'<tr><th scope="row">{k}</th><td>{v}</td></tr>' for k, v in rows)
    return f"<table><caption>{_e(caption)}</caption><tbody>{body}</tbody></table>"


def _malignant_codes(test: Mapping[str, Any] | None) -> list[str]:
    """The classes an evaluation's malignant figures score: the malignant classes among its
    classes, as :func:`dermsight.evaluate.metrics.compute_metrics` takes them (the shipped
    model's when the evaluation names no classes)."""
    classes = [str(c) for c in (test or {}).get("classes") or []]
    return [c for c in classes if c in MALIGNANT] if classes else list(DEFAULT_MALIGNANT)


def _malignant_share(test: Mapping[str, Any] | None) -> str:
    """:data:`_MALIGNANT_SHARE` with the evaluation's own malignant classes summed."""
    codes = _malignant_codes(test)
    return _MALIGNANT_SHARE.replace("P(MEL)+P(BCC)+P(SCC)",
                                    "+".join(f"P({_e(c)})" for c in codes))


def _present(test: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The evaluation's classes with and without items in it (``n_<class>``); ``([], [])``
    when the metrics do not count them."""
    metrics = test.get("metrics") or {}
    classes = [str(c) for c in test.get("classes") or []]
    counts = {c: _value(metrics.get(f"n_{c}")) for c in classes}
    if not classes or any(n is None for n in counts.values()):
        return [], []
    present = [c for c in classes if (counts[c] or 0) > 0]
    return present, [c for c in classes if c not in present]


#: the headline figures that average over the classes present (absent ones have no recall or AUC)
_OVER_CLASSES = ("balanced_accuracy", "auc_macro")


def _label(key: str, test: Mapping[str, Any] | None = None) -> str:
    """A metric's display name; with ``test``, the malignant AUC names the evaluation's own
    malignant classes, and balanced accuracy / the mean AUC say over how many of the model's
    classes they average when some are absent from the evaluated items."""
    if key in METRIC_LABELS:
        text = METRIC_LABELS[key]
        if test is None:
            return text
        if key == "malignant_auc":
            text = text.replace(_SHIPPED_MALIGNANT, or_list(_malignant_codes(test)))
        present, absent = _present(test)
        if key in _OVER_CLASSES and present and absent:
            over = f"over the {len(present)} of {len(present) + len(absent)} classes present"
            text = (text.replace("over all test items", f"{over} in the test items")
                    if key == "balanced_accuracy" else f"{text}, {over}")
        return text
    for prefix, text in (("auc_", "AUC"), ("sensitivity_", "Sensitivity"),
                         ("specificity_", "Specificity")):
        if key.startswith(prefix):
            return f"{text} {key[len(prefix):]} (one-vs-rest)"
    return key


def _png_uri(value: object) -> str | None:
    """A ``data:image/png;base64,...`` URI for bytes / base64 text / a data URI; else ``None``."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("data:"):
            head, _, text = text.partition(",")
            if head != "data:image/png;base64":
                return None
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _figure(name: str, value: object, caption: str | None = None) -> str:
    uri = _png_uri(value)
    if uri is None:
        return f'<p class="warn">Plot {_e(name)} omitted: not PNG data.</p>'
    cap = caption or _PLOT_CAPTIONS.get(name, name)
    alt = _PLOT_ALTS.get(name) or f"Figure: {cap}"
    return (f'<figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(cap)}</figcaption>'
            "</figure>")


def _count(v: object) -> str:
    """A count as plain text (``1,830``), ``unknown`` when absent."""
    if not _is_num(v):
        return "unknown"
    x = float(v)
    return f"{int(x):,}" if x.is_integer() else f"{x:,.1f}"


def _benign(metrics: Mapping[str, Any]) -> int | float | None:
    """The non-malignant test items: the denominator of a specificity on P(malignant)."""
    n, mal = metrics.get("n"), metrics.get("n_malignant")
    if not (_is_num(n) and _is_num(mal)):
        return None
    rest = float(n) - float(mal)
    return int(rest) if rest.is_integer() else rest


def _metric_n(key: str, metrics: Mapping[str, Any]) -> str:
    """The test items a headline metric is computed on (its count, n), as HTML."""
    n, mal = _num(metrics.get("n")), _num(metrics.get("n_malignant"))
    if key.endswith("_sensitivity") or key == "malignant_sens_at_95sens":
        return f"{mal} malignant"
    if key.endswith("_specificity") or key == "malignant_spec_at_95sens":
        return f"{_num(_benign(metrics))} non-malignant"
    if key.startswith("malignant_"):
        return f"{n} ({mal} malignant)"
    if key.startswith("mel_"):
        return f"{n} ({_num(metrics.get('n_MEL'))} MEL)"
    return n


# --- sections ------------------------------------------------------------------------------------


def _header(results: Mapping[str, Any]) -> str:
    title = results.get("title") or "dermsight evaluation report"
    model = results.get("model") or {}
    name = model.get("name", "unnamed model")
    version = model.get("version", "unversioned")
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="meta">Model <strong>{_e(name)}</strong> version '
             f"<strong>{_e(version)}</strong>"]
    if results.get("generated"):
        parts.append(f" &middot; {_e(results['generated'])}")
    parts.append("</p>")
    parts.append('<p class="warn">Clinical decision support only. These figures describe '
                 "retrospective test data; they are not a diagnosis and do not replace "
                 "examination by a clinician.</p>")
    extra = {k: v for k, v in model.items() if k not in ("name", "version")}
    if extra:
        parts.append(_kv_table(extra, "Model details"))
    return "".join(parts)


def _intended_use(results: Mapping[str, Any]) -> str:
    if not results.get("intended_use"):
        return ""
    return f"<h2>Intended use</h2><p>{_e(results['intended_use'])}</p>"


def _data_section(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    data = results.get("data") or {}
    parts = ["<h2>Data</h2>"]
    summary = dict(data.get("summary") or {})
    if test:
        summary.setdefault("test items", test.get("n"))
        summary.setdefault("test groups (bootstrap unit)", test.get("n_groups"))
    if summary:
        parts.append(_kv_table(summary, "Data summary"))
    splits = data.get("splits") or {}
    if splits:
        names = list(splits)
        codes: list[str] = list(test.get("classes") or [])
        for counts in splits.values():
            codes += [c for c in counts if c not in codes]
        rows = [[_e(c), *(_num(splits[s].get(c, 0)) for s in names)] for c in codes]
        rows.append(["<strong>total</strong>",
                     *(_num(sum(int(v) for v in splits[s].values())) for s in names)])
        parts.append(_table(["class", *names], rows, num_cols=range(1, len(names) + 1),
                            caption="Images per class and split"))
    elif test and test.get("metrics"):
        m = test["metrics"]
        rows = [[_e(c), _num(m.get(f"n_{c}"))] for c in test.get("classes", [])]
        parts.append(_table(["class", "test items"], rows, num_cols=[1],
                            caption="Test items per class"))
    parts += [f'<p class="note">{_e(n)}</p>' for n in data.get("notes") or []]
    return "".join(parts)


def _ci_note(test: Mapping[str, Any]) -> str:
    if _names_cases(test):
        return (f'<p class="note">95% intervals: a proportion (accuracy, a sensitivity or a '
                "specificity: k of n cases) gets the Wilson score interval, widened to the "
                "group-bootstrap interval where that reaches further (items of one group are not "
                "independent); every other figure gets the percentile bootstrap over "
                f"{_e(test.get('n_boot'))} resamples of {_e(test.get('n_groups'))} groups (seed "
                f"{_e(test.get('seed'))}). A resample in which a metric is undefined is skipped "
                "for that metric; where the middle 95% of the resamples all gave one value, no "
                f"interval is shown and the cell says so. &ldquo;{SMALL_SAMPLE}&rdquo;: fewer "
                f"than {MIN_N} cases behind the figure (subgroups that small are withheld "
                "altogether); read its interval, not the point. An AUC (or pAUC) of one class "
                "against the rest rests on the smaller of its positives and negatives (its n), "
                f"and is withheld under {MIN_CASES}. pAUC follows the ISIC 2024 "
                "convention (raw area above 80% sensitivity, 0.02 random, 0.2 perfect).</p>")
    return (f'<p class="note">95% intervals: percentile bootstrap over {_e(test.get("n_boot"))} '
            f"resamples of {_e(test.get('n_groups'))} groups (seed {_e(test.get('seed'))}); a "
            "resample in which a metric is undefined is skipped for that metric. Where every "
            "resample gave the same value (a proportion of 0 or 1), the bootstrap gives no "
            "interval: a proportion then shows its k of n cases and the Wilson score interval, "
            "named as such, and any other figure says it has no interval. pAUC follows "
            "the ISIC 2024 convention (raw area above 80% sensitivity, 0.02 random, 0.2 "
            "perfect).</p>")


def _headline(test: Mapping[str, Any]) -> str:
    ci = test.get("ci") or {}
    metrics = test.get("metrics") or {}
    rows = []
    for key in _HEADLINE:
        if key in ci:
            rows.append([_e(_label(key, test)), _ci(ci[key], cases=_cases_for(key, metrics)),
                         _metric_n(key, metrics)])
        elif key in metrics:
            rows.append([_e(_label(key, test)), _num(metrics[key]), _metric_n(key, metrics)])
    table = _table(["metric", "value (95% CI)", "n (test items)"], rows, num_cols=[1, 2],
                   caption=f"Test metrics on {_count(metrics.get('n'))} items "
                           f"({_count(metrics.get('n_malignant'))} malignant)")
    return ("<h2>Test metrics</h2>" + table + _absent_classes_note(test) + _ci_note(test)
            + f'<p class="note">{_malignant_share(test)}</p>'
            + _thin_classes_note(metrics, list(test.get("classes") or [])))


def _absent_classes_note(test: Mapping[str, Any]) -> str:
    """Next to the headline: balanced accuracy and the mean AUC average only the classes
    present, so with some of the model's classes absent they are not its figures over all of
    them (``""`` when every class is present)."""
    present, absent = _present(test)
    metrics = test.get("metrics") or {}
    shown = [k for k in _OVER_CLASSES if k in (test.get("ci") or {}) or k in metrics]
    if not (present and absent and shown):
        return ""
    total, k = len(present) + len(absent), len(present)
    names = " and ".join("balanced accuracy" if key == "balanced_accuracy"
                         else "the mean one-vs-rest AUC" for key in shown)
    verb, they = ("average", "they are") if len(shown) > 1 else ("averages", "it is")
    text = (f"These test items hold {k} of the model's {total} classes ({', '.join(present)}); "
            f"none of {', '.join(absent)}. {names[0].upper() + names[1:]} {verb} over the {k} "
            f"classes present only, so {they} not comparable with a figure over all {total} "
            f"classes, such as the model card's (where its test split held all {total}).")
    return f'<p class="warn">{_e(text)}</p>'


def _difference_cell(key: str, entry: object, point: float | None) -> str:
    """The model-minus-baseline cell: a winner is named (and coloured) only where the paired 95%
    interval of the difference excludes zero; a difference without an interval names none."""
    lower_better = key in _LOWER_IS_BETTER
    if isinstance(entry, Mapping):
        d, lo, hi = _value(entry), entry.get("lo"), entry.get("hi")
        if d is None:
            return "&mdash;"
        if not (_is_num(lo) and _is_num(hi)) or _collapsed(entry):
            return f"{d:+.3f} (no interval: neither is shown better)"
        shown = _ci(entry, signed=True)
        if float(lo) <= 0.0 <= float(hi):
            return f"{shown} (no clear difference: the interval includes 0)"
        good = (float(hi) < 0) if lower_better else (float(lo) > 0)
        word = "model better" if good else "baseline better"
        return f'<span class="{"better" if good else "worse"}">{shown} ({word})</span>'
    if point is None:
        return "&mdash;"
    return f"{point:+.3f} (no interval: neither is shown better)"


def _comparison(baseline: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    btest = baseline.get("test") or {}
    name = baseline.get("name") or "baseline"
    diff = baseline.get("difference") or {}
    ci, bci = test.get("ci") or {}, btest.get("ci") or {}
    metrics, bmetrics = test.get("metrics") or {}, btest.get("metrics") or {}
    header = ["metric", "n (test items)", "model", str(name), "difference (model - baseline)"]
    rows = []
    for key in _HEADLINE:
        if key not in ci and key not in bci:
            continue
        a, b = _value(ci.get(key)), _value(bci.get(key))
        point = None if a is None or b is None else a - b
        d_cell = _difference_cell(key, diff.get(key), point)
        rows.append([_e(_label(key, test)), _metric_n(key, metrics),
                     _ci(ci.get(key), cases=_cases_for(key, metrics)),
                     _ci(bci.get(key), cases=_cases_for(key, bmetrics)), d_cell])
    note = ("Difference intervals come from a paired bootstrap (both models on the same "
            "resamples)." if diff else
            "Differences are point differences; overlapping intervals are not a test.")
    lower = ", ".join(_label(k) for k in _HEADLINE if k in _LOWER_IS_BETTER
                      and (k in ci or k in bci))
    caption = f"This model and {name} on the same {_count(metrics.get('n'))} test items"
    return (f"<h2>Comparison with {_e(name)}</h2>"
            + _table(header, rows, num_cols=[1, 2, 3, 4], caption=caption)
            + f'<p class="note">{note} Green: model better; red: baseline better &mdash; named '
            "only where the 95% interval of the difference excludes 0; where the interval "
            "includes 0 it reads &ldquo;no clear difference&rdquo; (not coloured), and a "
            "difference without an interval names neither."
            + (f" Lower is better for: {_e(lower)}." if lower else "") + "</p>")


def _per_class(test: Mapping[str, Any]) -> str:
    rows = []
    total = (test.get("metrics") or {}).get("n", test.get("n"))
    for pc in test.get("per_class") or []:
        k = pc.get("n")
        rest = float(total) - float(k) if _is_num(total) and _is_num(k) else None
        rows.append([_e(pc.get("code")), _e(pc.get("name", "")), _num(k),
                     _ci(pc.get("auc")), _ci(pc.get("sensitivity"), cases=k),
                     _ci(pc.get("specificity"), cases=rest)])
    if not rows:
        return ""
    return ("<h2>Per-class results</h2>"
            + _table(["class", "name", "n", "AUC (one-vs-rest)", "sensitivity (suggested class)",
                      "specificity (suggested class)"], rows, num_cols=[2, 3, 4, 5],
                     caption=f"Per-class results on {_count(test.get('n'))} test items, "
                             "95% CI (n: items of that class; its specificity is over all "
                             "the other items)")
            + '<p class="note">&mdash; = undefined (class absent from the test set).'
            + (f" Every class is shown however few its items, each proportion with its k of n "
               f"and, under {MIN_N} cases, marked &ldquo;{SMALL_SAMPLE}&rdquo; (the subgroup "
               f"tables withhold subgroups under {MIN_N} items)." if _names_cases(test) else "")
            + "</p>")


def _default_thresholds(results: Mapping[str, Any], test: Mapping[str, Any]
                        ) -> list[dict[str, Any]]:
    """The evaluation's refer / monitor thresholds, with their design (``threshold_fit``: the
    sensitivity each was chosen for and on which images) where the results carry it for these
    very thresholds."""
    fit = results.get("threshold_fit") or {}
    targets, fitted = fit.get("target_sensitivity") or {}, fit.get("thresholds") or {}
    reached = fit.get("reached_sensitivity") or {}
    out = []
    for name in ("refer", "monitor"):
        value = test.get(f"{name}_threshold")
        if value is None:
            continue
        entry: dict[str, Any] = {"name": name, "value": value}
        same = (_is_num(fitted.get(name)) and _is_num(value)
                and math.isclose(float(fitted[name]), float(value), abs_tol=1e-9))
        if same and _is_num(targets.get(name)):
            entry.update(target_sensitivity=targets[name], fit_on=fit.get("fit_on"),
                         fit_sensitivity=reached.get(name))
        out.append(entry)
    return out


def _pct(p: object) -> str:
    """A proportion as a percentage for prose (0.95 -> ``95 %``)."""
    return f"{100 * float(p):g} %" if _is_num(p) else "?"


def _rule_text(t: Mapping[str, Any]) -> str:
    """How a threshold was chosen: its ``rule``, else its design sensitivity and the images it
    was fitted on, else that the results do not say."""
    if t.get("rule"):
        return _e(t["rule"])
    target = t.get("target_sensitivity")
    if not _is_num(target):
        return "not recorded in these results"
    where = t.get("fit_on") or "fitting"
    text = (f"largest cut-off keeping &ge; {_pct(target)} malignant sensitivity on the "
            f"{_e(where)} images")
    if _is_num(t.get("fit_sensitivity")):
        text += f" (reached {_num(t['fit_sensitivity'])} there)"
    return text


def _target_check(name: str, t: Mapping[str, Any], sens: object) -> str | None:
    """The plain statement of a threshold's test sensitivity against its design target."""
    target, value = t.get("target_sensitivity"), _value(sens)
    if not _is_num(target) or value is None:
        return None
    where = t.get("fit_on") or "fitting"
    if value < float(target):
        return (f"{_e(name)}: chosen for &ge; {_pct(target)} malignant sensitivity on the "
                f"{_e(where)} images; on test it reached {_num(value)}, <strong>below that "
                "target</strong>.")
    return (f"{_e(name)}: chosen for &ge; {_pct(target)} malignant sensitivity on the "
            f"{_e(where)} images; on test it reached {_num(value)}, at or above that target.")


def _thresholds(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    entries = list(results.get("thresholds") or _default_thresholds(results, test))
    ci, metrics = test.get("ci") or {}, test.get("metrics") or {}
    mal_n, benign_n = metrics.get("n_malignant"), _benign(metrics)
    rows, checks = [], []
    for t in entries:
        name = str(t.get("name", ""))
        sens = t.get("sensitivity", ci.get(f"{name}_sensitivity"))
        spec = t.get("specificity", ci.get(f"{name}_specificity"))
        rows.append([_e(name), _num(t.get("value")), _rule_text(t), _ci(sens, cases=mal_n),
                     _ci(spec, cases=benign_n)])
        check = _target_check(name, t, sens)
        if check:
            checks.append(check)
    if metrics.get("malignant_threshold_at_95sens") is not None:
        rows.append([
            "95% sensitivity (reference)",
            _ci(ci.get("malignant_threshold_at_95sens", metrics["malignant_threshold_at_95sens"])),
            "highest cut-off reaching 95% sensitivity, chosen on the test set itself "
            "(optimistic; not a deployed threshold)",
            _ci(ci.get("malignant_sens_at_95sens", metrics.get("malignant_sens_at_95sens")),
                cases=mal_n),
            _ci(ci.get("malignant_spec_at_95sens", metrics.get("malignant_spec_at_95sens")),
                cases=benign_n),
        ])
    if not rows:
        return ""
    plots = results.get("plots") or {}
    mal, benign = _count(mal_n), _count(benign_n)
    header = ["threshold", "value", "how chosen", f"test sensitivity (95% CI), n = {mal} malignant",
              f"test specificity (95% CI), n = {benign} non-malignant"]
    missed = any("below that target" in c for c in checks)
    design = ""
    if checks:
        design = (f'<p class="{"warn" if missed else "note"}">Design sensitivity against the '
                  "test images: " + " ".join(checks)
                  + (" A sensitivity fitted on one set of images is not guaranteed on "
                     "another." if missed else "") + "</p>")
    return ("<h2>Thresholds on P(malignant)</h2>"
            + _table(header, rows, num_cols=[1, 3, 4],
                     caption=f"Thresholds on {_count(metrics.get('n'))} test items")
            + design
            + '<p class="note">A case is positive when its malignant share &ge; the '
            f"threshold. {_malignant_share(test)}</p>"
            + (_figure("risk_tiers", plots["risk_tiers"]) if "risk_tiers" in plots else ""))


def _few_groups(n_groups: object) -> bool:
    """Whether a row's bootstrap rests on fewer than :data:`FEW_GROUPS` groups."""
    return _is_num(n_groups) and float(n_groups) < FEW_GROUPS


def _few_groups_text(n_groups: object) -> str:
    return f"{FEW_GROUPS_NOTE} ({_count(n_groups)} patient/lesion groups)"


def _subgroup_rows(rows: Sequence[Mapping[str, Any]],
                   groups: Mapping[str, object] | None = None
                   ) -> tuple[list[list[str]], list[str]]:
    """Table rows of subgroup entries; ``groups`` (subgroup -> (images, patient / lesion groups),
    for the per-source rows; used only for as many images) puts the group count beside the
    image count and marks a row whose intervals rest on fewer than :data:`FEW_GROUPS` groups."""
    out, classes = [], []
    for r in rows:
        def cell(k: str, r: Mapping[str, Any] = r, cases: object = None) -> str:
            return _ci({"value": r.get(k), "lo": r.get(f"{k}_lo"), "hi": r.get(f"{k}_hi")},
                       cases=cases)

        n, mal = r.get("n"), r.get("n_malignant")
        benign = float(n) - float(mal) if _is_num(n) and _is_num(mal) else None
        # a source's groups from the cross-source rows, only for the same images (same count)
        found = (groups or {}).get(str(r.get("subgroup")))
        same = isinstance(found, tuple) and _is_num(n) and found[0] == n
        n_groups = r.get("n_groups", found[1] if same and isinstance(found, tuple) else None)
        n_cell = _num(n) + (f' <span class="note">({_count(n_groups)} groups)</span>'
                            if _is_num(n_groups) else "")
        notes = [str(r["note"])] if r.get("note") else []
        if _few_groups(n_groups):
            notes.append(_few_groups_text(n_groups))
        out.append([_e(r.get("attribute")), _e(r.get("subgroup")), n_cell,
                    _num(mal), cell("malignant_auc"), cell("mel_auc"),
                    cell("balanced_accuracy"), cell("sensitivity", cases=mal),
                    cell("specificity", cases=benign), _e("; ".join(notes))])
        classes.append("withheld" if r.get("note") else "")
    return out, classes


def _source_groups(results: Mapping[str, Any]) -> dict[str, object]:
    """Patient / lesion groups per source on the test split, from the cross-source section's
    ``test_split_by_source`` rows (the per-source subgroup rows do not carry them)."""
    section = results.get("cross_source") or {}
    out: dict[str, object] = {}
    for r in section.get("rows") or []:
        if isinstance(r, Mapping) and r.get("protocol") == "test_split_by_source":
            out[str(r.get("source"))] = (r.get("n_images"), r.get("n_groups"))
    return out


_SUBGROUP_HEADER = ["attribute", "subgroup", "n", "malignant", "malignant AUC", "MEL AUC",
                    "balanced accuracy", "sensitivity @ refer", "specificity @ refer", "note"]
_SUBGROUP_NUM = range(2, 9)


def _subgroups(test: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> str:
    rows = list(test.get("subgroups") or [])
    if not rows:
        return ""
    demo = [r for r in rows if r.get("attribute") != "source"]
    source = [r for r in rows if r.get("attribute") == "source"]
    parts = []
    intervals = ("Wilson widened to the group bootstrap for a sensitivity or specificity, group "
                 "bootstrap for the rest, within the subgroup" if _names_cases(test)
                 else "group bootstrap within the subgroup")
    note = ('<p class="note">Metrics are withheld (&mdash;) for subgroups under 30 items, and '
            "an AUC, sensitivity or specificity is withheld with fewer than 5 cases on either "
            f"side. Intervals: {intervals}.</p>")
    if demo:
        body, cls = _subgroup_rows(demo)
        parts += ["<h2>Subgroups (sex, age, anatomic site)</h2>",
                  _table(_SUBGROUP_HEADER, body, cls, _SUBGROUP_NUM,
                         caption="Test metrics by sex, age and anatomic site, 95% CI"), note]
    if source:
        groups = _source_groups(results or {})
        body, cls = _subgroup_rows(source, groups)
        few = (f'<p class="note">n: test images (and, where known, the patient/lesion groups '
               f"the bootstrap resamples). &ldquo;{FEW_GROUPS_NOTE}&rdquo;: fewer than "
               f"{FEW_GROUPS} groups behind the row's intervals.</p>"
               if any(_is_num(g) for g in groups.values())
               or any("n_groups" in r for r in source) else "")
        parts += ["<h2>Per data source</h2>",
                  _table(_SUBGROUP_HEADER, body, cls, _SUBGROUP_NUM,
                         caption="Test metrics by data source, 95% CI"), note, few]
    return "".join(parts)


def _ita(test: Mapping[str, Any]) -> str:
    table = test.get("by_ita") or {}
    rows = list(table.get("bands") or [])
    if not rows:
        return ""
    body, cls = _subgroup_rows(rows)
    for cells, r in zip(body, rows, strict=True):
        cells[0] = _e(r.get("ita_range") or "")
    header = ["ITA range", "band", *_SUBGROUP_HEADER[2:]]
    parts = ["<h2>By skin tone (ITA, estimated from the image)</h2>"]
    if table.get("statement"):
        parts.append(f'<p class="warn">{_e(table["statement"])}</p>')
    parts.append(_table(header, body, cls, _SUBGROUP_NUM,
                        caption="Test metrics by skin-tone band (ITA), 95% CI"))
    if table.get("method"):
        parts.append(f'<p class="note">{_e(table["method"])}</p>')
    parts.append(f'<p class="note">Every band is listed with its image count; metrics are '
                 f"withheld (&mdash;) under {_e(table.get('min_n', 30))} images, and an AUC, "
                 f"sensitivity or specificity under {_e(table.get('min_cases', 5))} cases on "
                 "either side.</p>")
    return "".join(parts)


_PROTOCOLS: dict[str, tuple[str, str]] = {
    "test_split_by_source": (
        "Held-out test split, per data source",
        "This model on the test images of each source."),
    "leave_one_source_out": (
        "Leave one source out",
        "A model trained on all other sources, scored on every image of the left-out source: "
        "how it does on a source it never saw."),
}


_CROSS_LABELS: dict[str, str] = {
    "balanced_accuracy": "balanced accuracy",
    "mel_auc": "MEL AUC",
    "malignant_auc": "malignant AUC",
    "refer_sensitivity": "sensitivity @ refer",
    "refer_specificity": "specificity @ refer",
}


def _run_text(r: Mapping[str, Any]) -> str:
    run = r.get("run") or {}
    trained = r.get("trained_on")
    parts = [f"trained on {', '.join(str(s) for s in trained)}"] if trained else []
    parts += [f"{k} {run[k]}" for k in ("config", "seed") if run.get(k) is not None]
    if run.get("command"):
        parts.append(f"reproduce: {run['command']}")
    return "; ".join(parts)


def _cross_source(results: Mapping[str, Any]) -> str:
    section = results.get("cross_source") or {}
    rows = [r for r in section.get("rows") or [] if isinstance(r, Mapping)]
    if not rows:
        return ""
    names = [str(m) for m in section.get("metrics") or []] or sorted(
        {k for r in rows for k in (r.get("metrics") or {})})
    min_n = section.get("min_n", 30)
    parts = ["<h2>Cross-source validation</h2>"]
    protocols = list(dict.fromkeys(str(r.get("protocol")) for r in rows))
    for protocol in protocols:
        title, text = _PROTOCOLS.get(protocol, (protocol, ""))
        group = [r for r in rows if str(r.get("protocol")) == protocol]
        runs = {_run_text(r) for r in group}
        shared = runs.pop() if len(runs) == 1 else None
        body, cls = [], []
        for r in group:
            n = r.get("n_images")
            small = _is_num(n) and float(n) < float(min_n)
            metrics = r.get("metrics") or {}
            cells = [_e(r.get("source")), _num(n), _num(r.get("n_groups")),
                     _num(r.get("n_malignant")),
                     _e(", ".join(str(c) for c in r.get("classes_present") or []))]
            mal = r.get("n_malignant")
            benign = float(n) - float(mal) if _is_num(n) and _is_num(mal) else None
            for m in names:
                e = metrics.get(m)
                if small:
                    cells.append(f"withheld (n &lt; {_e(min_n)})")
                elif _value(e) is None and r.get("note"):
                    cells.append("withheld")
                else:
                    cases = (mal if m.endswith("_sensitivity") else
                             benign if m.endswith("_specificity") else None)
                    cells.append(_ci(e, cases=cases))
            extra = [str(r["note"])] if r.get("note") else []
            shown = not small and any(_value(metrics.get(m)) is not None for m in names)
            if shown and _few_groups(r.get("n_groups")):
                extra.insert(0, _few_groups_text(r.get("n_groups")))
            if shared is None:
                extra.append(_run_text(r))
            cells.append(_e("; ".join(x for x in extra if x)))
            body.append(cells)
            # greyed when its note explains withheld figures, not for a note beside full ones
            # (e.g. the spread of other training draws, tools/add_loso_rows.py --note)
            held = small or any(_value(metrics.get(m)) is None for m in names)
            cls.append("withheld" if r.get("note") and held else "")
        header = ["source", "images", "groups", "malignant", "classes present",
                  *(_CROSS_LABELS.get(m, _label(m)) for m in names), "note"]
        nums = [1, 2, 3, *range(5, 5 + len(names))]
        parts += [f"<h3>{_e(title)}</h3>", f'<p class="note">{_e(text)}</p>' if text else "",
                  _table(header, body, cls, nums, caption=f"{title}, 95% CI")]
        if shared:
            parts.append(f'<p class="note">Model run: {_e(shared)}.</p>')
    if section.get("generated_by"):
        parts.append(f'<p class="note">Tables computed with: {_e(section["generated_by"])}</p>')
    parts.append(f'<p class="note">95% intervals: group bootstrap within each source '
                 f"(groups: the patients / lesion groups it resamples; &ldquo;{FEW_GROUPS_NOTE}"
                 f"&rdquo; under {FEW_GROUPS} of them). Metrics "
                 f"are withheld under {_e(min_n)} images, and an AUC, sensitivity or "
                 f"specificity under {_e(section.get('min_cases', 5))} cases on either side. "
                 "Balanced accuracy is over the classes present in that source, so it is not "
                 "comparable between sources with different class mixes.</p>")
    return "".join(parts)


_TIERS = ("high", "moderate", "low")


def _test_tier_counts(test: Mapping[str, Any]) -> dict[str, tuple[int, int]] | None:
    """Test images and malignant ones per risk tier, from the sensitivity and specificity at the
    refer and monitor thresholds (tiers: ``>= refer`` high, ``>= monitor`` moderate, else low);
    ``None`` unless every count comes out whole."""
    m = test.get("metrics") or {}
    keys = ("n", "n_malignant", "refer_sensitivity", "refer_specificity",
            "monitor_sensitivity", "monitor_specificity")
    if not all(_is_num(m.get(k)) for k in keys):
        return None
    n, mal = float(m["n"]), float(m["n_malignant"])
    benign = n - mal

    def whole(x: float) -> int | None:
        return round(x) if abs(x - round(x)) < 1e-6 else None

    counts = [whole(float(m["refer_sensitivity"]) * mal),
              whole((1 - float(m["refer_specificity"])) * benign),
              whole(float(m["monitor_sensitivity"]) * mal),
              whole((1 - float(m["monitor_specificity"])) * benign),
              whole(n), whole(mal)]
    if any(c is None for c in counts):
        return None
    mal_hi, ben_hi, mal_mon, ben_mon, n_all, n_mal = (int(c) for c in counts if c is not None)
    if mal_mon < mal_hi or ben_mon < ben_hi or n_mal < mal_mon or n_all - n_mal < ben_mon:
        return None
    return {"high": (mal_hi + ben_hi, mal_hi),
            "moderate": (mal_mon + ben_mon - mal_hi - ben_hi, mal_mon - mal_hi),
            "low": (n_all - mal_mon - ben_mon, n_mal - mal_mon)}


def _per_100(n: object, k: object, given: object = None) -> str:
    """``about N`` of 100 (the card's rounded ``per_100`` where given); ``fewer than 1`` where
    that rounds to 0 but some were malignant; withheld for a tier of fewer than :data:`MIN_N`
    images (:func:`~dermsight.evaluate.frequencies.too_few`)."""
    if _is_num(n) and float(n) > 0 and too_few(float(n)):
        return f"withheld: too few images to count ({_num(n)})"
    if not (_is_num(n) and _is_num(k)) or float(n) == 0:
        return f"about {round(float(given))}" if _is_num(given) else "&mdash;"
    per = round(float(given)) if _is_num(given) else round(100 * float(k) / float(n))
    if per == 0 and float(k) > 0:
        return "fewer than 1"
    return f"about {per}"


def _natural_frequencies(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    """The card's natural frequencies per risk tier ("of 100 lesions given this tier, about N
    were malignant"), said to be counted on the images the cut-offs were fitted on, with the
    same counts on the test images beside them where the evaluation gives them."""
    nf = results.get("natural_frequencies") or {}
    per_tier = nf.get("per_tier") or {}
    if not isinstance(per_tier, Mapping) or not per_tier:
        return ""
    split = str(nf.get("split") or "validation")
    on_test = _test_tier_counts(test) if test else None
    header = ["risk tier", f"{split} images", "malignant", "of 100, malignant"]
    if on_test:
        header += ["test images", "malignant (test)", "of 100, malignant (test)"]
    rows = []
    for tier in [t for t in _TIERS if t in per_tier] + [t for t in per_tier if t not in _TIERS]:
        e = per_tier.get(tier) or {}
        row = [_e(tier), _num(e.get("n")), _num(e.get("malignant")),
               _per_100(e.get("n"), e.get("malignant"), e.get("per_100"))]
        if on_test:
            tn, tk = on_test.get(str(tier), (None, None))
            row += [_num(tn), _num(tk), _per_100(tn, tk)]
        rows.append(row)
    counted = [e.get("n") for e in per_tier.values() if isinstance(e, Mapping)]
    counted += [tn for tn, _ in (on_test or {}).values()]
    thin = any(_is_num(n) and float(n) > 0 and too_few(float(n)) for n in counted)
    fitted = split == "validation"
    text = (f"Of 100 lesions given each tier, about how many were malignant: counted on the "
            f"{_count(nf.get('n'))} {_e(split)} images (kept out of training)"
            + (", the same images the refer and monitor cut-offs were fitted on, so these "
               "counts may flatter the model a little." if fitted else ".")
            + (" The test images, used for no fitting, give the counts beside them." if on_test
               else " The test images' counts are not in these results.")
            + (f" A tier with fewer than {MIN_N} images gets no figure (withheld, as subgroups "
               "that small are): a handful of images says little about how often a result "
               "goes with cancer." if thin else ""))
    parts = ["<h2>Natural frequencies per risk tier</h2>", f"<p>{text}</p>",
             _table(header, rows, num_cols=range(1, len(header)),
                    caption=f"Malignant lesions per risk tier, {split}"
                            + (" and test images" if on_test else " images"))]
    for key in ("malignant_means", "limits"):
        if nf.get(key):
            label = "Malignant means: " if key == "malignant_means" else ""
            parts.append(f'<p class="note">{label}{_e(nf[key])}</p>')
    return "".join(parts)


def card_report_extras(card: Mapping[str, Any]) -> dict[str, Any]:
    """What a bundle card adds to :func:`render_report`'s ``results`` beyond its test
    evaluation: ``threshold_fit`` (the sensitivity the refer / monitor thresholds were chosen
    for, on the validation images: the training config's ``calibration``, and what they reached
    there) and ``natural_frequencies``. Keys the card lacks are left out."""
    out: dict[str, Any] = {}
    training = card.get("training") or {}
    config = training.get("config") if isinstance(training, Mapping) else None
    calibration = (config or {}).get("calibration") if isinstance(config, Mapping) else None
    thresholds = card.get("thresholds") or {}
    if isinstance(calibration, Mapping) and isinstance(thresholds, Mapping):
        targets = {name: calibration[f"{name}_sensitivity"] for name in ("refer", "monitor")
                   if _is_num(calibration.get(f"{name}_sensitivity"))}
        if targets:
            validation = (card.get("metrics") or {}).get("validation") or {}
            out["threshold_fit"] = {
                "fit_on": "validation",
                "thresholds": {k: v for k, v in thresholds.items() if _is_num(v)},
                "target_sensitivity": targets,
                "reached_sensitivity": {
                    name: validation[f"{name}_sensitivity"] for name in targets
                    if _is_num(validation.get(f"{name}_sensitivity"))},
            }
    if isinstance(card.get("natural_frequencies"), Mapping):
        out["natural_frequencies"] = _frequency_words(card, card["natural_frequencies"])
    return out


def _card_malignant(card: Mapping[str, Any]) -> list[str] | None:
    """The card's malignant classes (``malignant``; absent: the malignant classes among the
    training configuration's classes), ``None`` when it names neither."""
    listed = card.get("malignant")
    if isinstance(listed, list | tuple) and listed:
        return [str(c) for c in listed]
    training = card.get("training")
    config = training.get("config") if isinstance(training, Mapping) else None
    data = config.get("data") if isinstance(config, Mapping) else None
    classes = data.get("classes") if isinstance(data, Mapping) else None
    if isinstance(classes, list | tuple) and classes:
        return [str(c) for c in classes if c in MALIGNANT]
    return None


def _frequency_words(card: Mapping[str, Any], nf: Mapping[str, Any]) -> Mapping[str, Any]:
    """The card's natural frequencies with ``malignant_means`` and ``limits`` said for this
    model: its own malignant classes, and "public collections" only where every source of the
    counted images is one (``source_mix``). A card that records neither is shown as it is; the
    shipped card's words are these."""
    codes = _card_malignant(card)
    mix = nf.get("source_mix")
    n, k = nf.get("n"), nf.get("malignant")
    if codes is None or not isinstance(mix, Mapping) or not (_is_num(n) and _is_num(k)):
        return nf
    public = from_public_collections(mix)
    return {**nf, "malignant_means": malignant_means_text(codes, public),
            "limits": limits_text(int(float(n)), int(float(k)), public)}


def _calibration(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    cal = results.get("calibration") or {}
    ci = test.get("ci") or {}
    plots = results.get("plots") or {}
    if not cal and "ece" not in ci and "reliability" not in plots:
        return ""
    parts = ["<h2>Calibration</h2>"]
    if cal:
        parts.append(_kv_table(cal, "Temperature scaling"))
    n = (test.get("metrics") or {}).get("n")
    rows = [[_e(_label(k)), _ci(ci[k]), _num(n)] for k in ("ece", "brier", "nll") if k in ci]
    if rows:
        parts.append(_table(["test metric (calibrated probabilities)", "value (95% CI)",
                             "n (test items)"], rows, num_cols=[1, 2],
                            caption=f"Calibration on {_count(n)} test items"))
    if "reliability" in plots:
        parts.append(_figure("reliability", plots["reliability"]))
    return "".join(parts)


def _plots(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    plots = results.get("plots") or {}
    names = [n for n in plots if n not in ("reliability", "risk_tiers")]
    if not names:
        return ""
    roc = _PLOT_CAPTIONS["roc"].replace(f"malignant = {_SHIPPED_MALIGNANT}",
                                        f"malignant = {or_list(_malignant_codes(test))}")
    return "<h2>Figures</h2>" + "".join(
        _figure(n, plots[n], roc if n == "roc" else None) for n in names)


def _limitations(results: Mapping[str, Any], test: Mapping[str, Any]) -> str:
    items = [str(x) for x in results.get("limitations") or []]
    withheld = [r for r in test.get("subgroups") or [] if r.get("note")]
    if withheld:
        items.append(f"{len(withheld)} subgroup(s) had too few cases for some or all metrics; "
                     "performance there is unknown, not good.")
    undefined = [pc["code"] for pc in test.get("per_class") or []
                 if _value(pc.get("auc")) is None and not _withheld(pc.get("auc"))]
    if undefined:
        items.append("No test cases for: " + ", ".join(undefined) + "; performance on these "
                     "classes is not measured.")
    thin = [f"{pc['code']} ({_count(pc.get('n'))})" for pc in test.get("per_class") or []
            if _withheld(pc.get("auc"))]
    if thin:
        items.append(f"Too few cases for the AUC of {', '.join(thin)} (fewer than "
                     f"{MIN_CASES} on a side): withheld; performance there is unknown, not "
                     "good.")
    if not items:
        return ""
    return "<h2>Limitations</h2><ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def render_report(results: Mapping[str, Any]) -> str:
    """Render ``results`` (schema in the module docstring) to one self-contained HTML page."""
    test: Mapping[str, Any] = results.get("test") or {}
    title = results.get("title") or "dermsight evaluation report"
    model = results.get("model") or {}
    sections = [_intended_use(results), _data_section(results, test)]
    if test:
        sections.append(_headline(test))
        if results.get("baseline"):
            sections.append(_comparison(results["baseline"], test))
        sections += [_per_class(test), _thresholds(results, test),
                     _natural_frequencies(results, test), _subgroups(test, results), _ita(test)]
    else:
        sections.append('<p class="warn">No test evaluation in these results.</p>')
    sections += [_cross_source(results), _calibration(results, test), _plots(results, test),
                 _limitations(results, test)]
    named = " ".join(str(model[k]) for k in ("name", "version") if model.get(k))
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}{' &ndash; ' + _e(named) if named else ''}</title>"
            f"<style>{_CSS}</style></head><body>")
    return (head + f"<header>{_header(results)}</header><main>"
            + "".join(s for s in sections if s) + "</main></body></html>\n")
