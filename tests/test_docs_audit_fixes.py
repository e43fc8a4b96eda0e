"""What the documentation and the shipped report say agrees with the code and the stored results.

Each test reads the real files (README.md, docs/*.md, the shipped bundle, the experiment log's
stored draws) and fails on the wording a documentation audit found wrong: a command-line option
that does not exist, an install from a package index dermsight is not published on, report labels
that read as the three classes' sum or as ISIC 2019 images, a card limitation that implied
validation everywhere else, a skin-tone band inequality the code does not use, and model-page
figures that no longer match the draws they describe.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BUNDLE = REPO / "src" / "dermsight" / "assets" / "default"
MARKDOWN = sorted([REPO / "README.md", *DOCS.glob("*.md")])

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")
_SEPARATORS = frozenset({";", "&&", "||", "|", ">", ">>", "2>", "<"})


def _code_snippets(text: str) -> Iterator[str]:
    """Every fenced block (backslash continuations joined) and every inline code span."""
    for m in _FENCE.finditer(text):
        yield m.group(2).replace("\\\n", " ")
    for m in _INLINE.finditer(_FENCE.sub("", text)):
        yield m.group(1).replace("\n", " ")


def _tokens(line: str) -> list[str]:
    line = re.sub(r"(^|\s)#.*$", "", line)
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in prose code: plain words still carry the options
        return line.split()


@cache
def _root() -> Any:
    """The real ``dermsight`` command tree (typer's click objects; a group has ``commands``)."""
    from dermsight.cli import app

    root = typer.main.get_command(app)
    assert getattr(root, "commands", None)
    return root


def _subcommand(command: Any, name: str) -> Any:
    """``command``'s sub-command ``name``, or ``None`` (also for a command without any)."""
    return (getattr(command, "commands", None) or {}).get(name)


def _options(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def _invocations(snippet: str) -> Iterator[tuple[str, list[str]]]:
    """(command path, the ``--options`` after it) of each ``dermsight <command> ...`` in a
    snippet, resolved against the real command tree; words that name no command are skipped."""
    for line in snippet.splitlines():
        words = _tokens(line)
        for i, word in enumerate(words):
            if word != "dermsight" and not word.endswith("/bin/dermsight"):
                continue
            command = _root()
            path = ["dermsight"]
            j = i + 1
            while j < len(words):
                sub = _subcommand(command, words[j])
                if sub is None:
                    break
                command, path, j = sub, [*path, words[j]], j + 1
            if len(path) == 1:
                continue
            options = []
            for w in words[j:]:
                if w in _SEPARATORS or w.endswith(";") or w in {"dermsight", "python"}:
                    break
                m = re.fullmatch(r"(--[a-z][a-z0-9-]*)(=.*)?[.,):]*", w)
                if m:
                    options.append(m.group(1))
            yield " ".join(path), options


def _unknown_options(text: str) -> list[str]:
    bad = []
    for snippet in _code_snippets(text):
        for path, options in _invocations(snippet):
            command = _root()
            for name in path.split()[1:]:
                command = _subcommand(command, name)
            known = _options(command)
            bad += [f"{path} {o}" for o in options if o not in known]
    return bad


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_quoted_dermsight_option_exists(doc: Path) -> None:
    """``dermsight <command> --option`` quoted in README.md or docs/*.md: the option is one that
    command's ``--help`` lists (docs/benchmarks.md quoted ``predict --overlay``, which is
    ``--heatmap``)."""
    assert _unknown_options(doc.read_text(encoding="utf-8")) == []


def test_the_option_check_sees_an_unknown_option() -> None:
    """The check itself finds a wrong option in inline code and in a continued fenced line."""
    text = ("Run `dermsight predict --overlay out.png img.jpg`.\n\n```bash\n"
            "dermsight gate fit \\\n  --data x --no-such-flag\n```\n")
    assert _unknown_options(text) == ["dermsight gate fit --no-such-flag",
                                      "dermsight predict --overlay"]


def _installs_by_name(text: str) -> list[str]:
    """``pip install`` lines (shell code) that install dermsight by name from a package index."""
    found = []
    pip = re.compile(r"(?:^|#)\s*(?:sudo\s+)?(?:%pip|[\w./-]*pip3?|python3?\s+-m\s+pip)\s+"
                     r"install\s+(.*)$")
    for snippet in _code_snippets(text):
        for line in snippet.splitlines():
            m = pip.search(line)
            if not m:
                continue
            for arg in _tokens(m.group(1)):
                name = re.split(r"[\[=<>!~ ]", arg, maxsplit=1)[0]
                if name.lower() == "dermsight":
                    found.append(line.strip())
    return found


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_install_dermsight_from_the_checkout_or_a_wheel(doc: Path) -> None:
    """dermsight is installed from the checkout (``pip install .``, ``'.[spark]'``) or a built
    wheel; it is not on a package index, so ``pip install dermsight`` / ``'dermsight[s3]'`` in a
    doc's commands would fail (docs/batch.md had four)."""
    assert _installs_by_name(doc.read_text(encoding="utf-8")) == []


def test_the_batch_example_bundle_is_not_a_shipped_looking_name() -> None:
    """docs/batch.md's examples use a trained run's bundle folder, not ``dermsight-1.0`` (which
    reads as a released v1 bundle; v1 is not the shipped model)."""
    text = (DOCS / "batch.md").read_text(encoding="utf-8")
    assert "dermsight-1.0" not in text
    assert "--model runs/my-model/bundle" in text


# --- the shipped report and card -----------------------------------------------------------------


def test_shipped_report_names_what_the_malignant_figures_score() -> None:
    """The malignant AUC is on the malignant share ((MEL+BCC+SCC) over the classes the bundle
    keeps; the shipped bundle leaves out UNK), not the three classes' sum; balanced accuracy is
    the ISIC 2019 challenge's metric over all test items, not a figure on ISIC 2019 images."""
    from dermsight.evaluate.report import METRIC_LABELS

    card = json.loads((BUNDLE / "card.json").read_text(encoding="utf-8"))
    html = (BUNDLE / "report.html").read_text(encoding="utf-8")
    assert card["malignant_excluded"] == ["UNK"]
    for old in ("Malignant vs benign AUC (MEL+BCC+SCC)",
                "Balanced multiclass accuracy (ISIC 2019)<",
                "dashed: malignant = MEL+BCC+SCC)",
                "positive when P(MEL)+P(BCC)+P(SCC) &ge;"):
        assert old not in html
    assert "malignant share" in METRIC_LABELS["malignant_auc"]
    assert "challenge" in METRIC_LABELS["balanced_accuracy"]
    assert METRIC_LABELS["malignant_auc"] in html
    assert METRIC_LABELS["balanced_accuracy"].replace("'", "&#x27;") in html
    assert ("The malignant share is P(MEL)+P(BCC)+P(SCC) over the probability on the classes "
            "the bundle does not leave out of it (a bundle may leave out UNK)") in html


def test_card_limitation_does_not_imply_validation_elsewhere() -> None:
    """The card no longer says "Not validated for mucosal, nail, ..." (read as: validated for
    everything else); the shipped card and what finalize writes carry the same sentence, and the
    report shows it. The test split does hold a few 'oral/genital' images (too few for the site
    table), so the sentence must not claim that no such image was seen."""
    from dermsight.train.finalize.card import NOT_EVALUATED_LIMITATION

    card = json.loads((BUNDLE / "card.json").read_text(encoding="utf-8"))
    assert not any(line.startswith("Not validated") for line in card["limitations"])
    assert NOT_EVALUATED_LIMITATION in card["limitations"]
    assert "unknown" in NOT_EVALUATED_LIMITATION
    html = (BUNDLE / "report.html").read_text(encoding="utf-8")
    assert NOT_EVALUATED_LIMITATION.replace("'", "&#x27;") in html
    sites = {r["subgroup"]: r["n"] for r in card["metrics"]["test"]["subgroups"]
             if r["attribute"] == "site"}
    assert sites.get("oral/genital", 0) > 0
    assert "no images" not in NOT_EVALUATED_LIMITATION.lower()


# --- skin tone -----------------------------------------------------------------------------------


def _operator_at(limit: float, band: str) -> str:
    """The inequality a band's bound takes in the code: a boundary value belongs to the darker
    band (``ita_band``)."""
    from dermsight.skintone import ita_band

    inside = ita_band(limit) == band
    lower_bound = band == "very light"
    if lower_bound:
        return "≥" if inside else ">"
    return "≤" if inside else "<"


def test_skin_tone_doc_band_inequalities_follow_band_limits() -> None:
    """docs/skin-tone.md writes the open bands with the inequality ``BAND_LIMITS`` and
    ``ita_band`` use: ``very light > 55°`` and ``dark ≤ −30°`` (it wrote ``dark < −30°``, the
    table header ``≤``)."""
    from dermsight.skintone import BAND_LIMITS

    text = (DOCS / "skin-tone.md").read_text(encoding="utf-8")
    prose = re.search(r"Del Bino: very light ([<>≤≥]) ([−-]?\d+)°.*?dark ([<>≤≥]) ([−-]?\d+)°",
                      text, re.S)
    assert prose is not None
    assert float(prose.group(2)) == BAND_LIMITS[0]
    assert float(prose.group(4).replace("−", "-")) == BAND_LIMITS[-1]
    assert prose.group(1) == _operator_at(BAND_LIMITS[0], "very light")
    assert prose.group(3) == _operator_at(BAND_LIMITS[-1], "dark")
    header = re.search(r"\| dark \(([<>≤≥]) ([−-]?\d+)°\)", text)
    assert header is not None
    assert header.group(1) == prose.group(3)


def test_skin_tone_doc_time_is_the_stored_measurement() -> None:
    """The per-image ITA time in docs/skin-tone.md is the one stored in docs/skin-tone.json."""
    stored = json.loads((DOCS / "skin-tone.json").read_text())["median_ita_ms_per_image"]
    text = (DOCS / "skin-tone.md").read_text(encoding="utf-8")
    m = re.search(r"median ITA time (\d+\.\d+) ms per 256 px image", text)
    assert m is not None
    assert float(m.group(1)) == round(stored, 2)


# --- docs/model.md figures against the stored draws and the card ---------------------------------


def _model_md() -> str:
    return re.sub(r"\s+", " ", (DOCS / "model.md").read_text(encoding="utf-8"))


def _reference_draws() -> np.ndarray:
    path = DOCS / "experiments" / "v2.29" / "ablation.json"
    rows = json.loads(path.read_text())["reference"]
    return np.array([[r["mel_auc"], r["malignant_auc"]] for r in rows])


def test_model_page_names_the_shipped_models_isic2020_figure() -> None:
    """With ISIC 2020 held out the shipped v2.4.1 recipe gets the card's cross-source melanoma
    AUC (0.589), and the 0.60 is said to be v1's (the page called 0.60 "the shipped model")."""
    card = json.loads((BUNDLE / "card.json").read_text(encoding="utf-8"))
    row = next(r for r in card["cross_source"]["rows"]
               if r["protocol"] == "leave_one_source_out" and r["source"] == "isic2020")
    text = _model_md()
    assert "the shipped model 0.60" not in text
    m = re.search(r"shipped v2\.4\.1 recipe with ISIC 2020 held out, (0\.\d{3})", text)
    assert m is not None
    assert float(m.group(1)) == round(row["metrics"]["mel_auc"]["value"], 3)
    assert "v1, the model shipped then, 0.60" in text


def test_model_page_draw_spread_and_power_match_the_thirteen_draws() -> None:
    """The thirteen stored held-out draws' SD and range, and the one-run rule's power computed on
    them as ``v2.23/rule_power.py`` does, are the figures the page gives (it gave the nine-draw
    SD 0.011 as if current and a range up to 0.726-0.783 for the peer comparison)."""
    from scipy.stats import multivariate_normal

    xy = _reference_draws()
    assert len(xy) == 13
    mean, cov = xy.mean(0), np.cov(xy.T)
    sd = np.sqrt(np.diag(cov))
    text = _model_md()
    m = re.search(r"thirteen held-out draws of the shipped recipe used since .*? SD (0\.\d+) "
                  r"\(melanoma AUC, (0\.\d+)–(0\.\d+)\) and (0\.\d+) \(malignant AUC, "
                  r"(0\.\d+)–(0\.\d+)\)", text)
    assert m is not None
    assert [float(g) for g in m.groups()] == [
        round(sd[0], 3), round(xy[:, 0].min(), 3), round(xy[:, 0].max(), 3),
        round(sd[1], 3), round(xy[:, 1].min(), 3), round(xy[:, 1].max(), 3)]
    power = re.search(r"gives about (\d+) % for no gain, (\d+) % for \+0\.01, (\d+) % for \+0\.02, "
                      r"(\d+) % for \+0\.03 and (\d+) % for \+0\.04", text)
    assert power is not None
    bars = np.array([0.771, 0.770])
    expected = [round(100 * float(multivariate_normal(-(mean + g), cov).cdf(-bars)))
                for g in (0.0, 0.01, 0.02, 0.03, 0.04)]
    assert [int(p) for p in power.groups()] == pytest.approx(expected, abs=1)
    # the peer comparison and the colour-constancy reading quote the same range
    assert "0.706 vs 0.726–0.783" not in text
    low, high = f"{xy[:, 0].min():.3f}", f"{xy[:, 0].max():.3f}"
    assert text.count(f"{low}–{high}") >= 3


def test_model_page_reads_the_colour_constancy_draw_against_the_right_interval() -> None:
    """0.778 is above every one of the thirteen draws (top 0.771) but inside the rule's 95 %
    prediction interval; the page must not call it "inside the draws' spread"."""
    a = json.loads((DOCS / "experiments" / "v2.29" / "ablation.json").read_text())
    pi = a["prediction_intervals_95"]["mel_auc"]
    run = a["runs"]["no-colour-constancy"]["mel_auc"]
    xy = _reference_draws()
    assert run > xy[:, 0].max()
    assert pi["lo"] < run < pi["hi"]
    text = _model_md()
    assert "inside the draws' spread (0.778" not in text
    assert (f"melanoma {run:.3f} in {pi['lo']:.3f}–{pi['hi']:.3f}") in text
    assert f"above all thirteen draws (highest {xy[:, 0].max():.3f})" in text


# --- docs/benchmarks.md -------------------------------------------------------------------------


def test_benchmarks_say_which_model_the_model_benchmark_measured() -> None:
    """benchmarks/results/model.json is from 2026-11-27, when v1 was shipped: the page says so."""
    stored = json.loads((REPO / "benchmarks" / "results" / "model.json").read_text())
    text = re.sub(r"\s+", " ", (DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    assert stored["date"] == "2026-11-27"
    assert f"(`benchmarks/results/model.json`, {stored['date']}) measured **v1**" in text
    inf = stored["inference"]
    assert f"| batch 1 latency | {inf['eager_ms_b1']:.1f} ms | {inf['ort_ms_b1']:.1f} ms |" in text


def test_benchmarks_bracketed_api_figures_are_in_the_named_commit() -> None:
    """The bracketed "code before" API figures come from ``git show
    a0eb9cb:benchmarks/results/api.json``, as the page now says."""
    text = re.sub(r"\s+", " ", (DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    assert "git show a0eb9cb:benchmarks/results/api.json" in text
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shown = subprocess.run(["git", "show", "a0eb9cb:benchmarks/results/api.json"], cwd=REPO,
                           capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        pytest.skip("commit a0eb9cb is not in this clone's history")
    head = json.loads(shown.stdout)["headline"]
    assert (f"[{head['seq_p50_ms']:.1f} / {head['seq_p95_ms']:.1f}]") in text
    assert f"[{head['load_throughput_rps']:.1f}]" in text
    assert f"[{head['load_p95_ms']:.1f} / {head['load_errors']}]" in text
    assert f"[{head['seq_server_cpu_ms']:.1f} / {head['load_server_cpu_ms']:.1f}]" in text
    assert f"[{head['cold_start_s']:.2f}]" in text


# --- docs/architecture.md -----------------------------------------------------------------------


def test_architecture_cli_row_names_every_cli_module_and_the_shared_output_checks() -> None:
    """The ``cli/`` row of the module table names each ``src/dermsight/cli/*.py`` module (it
    left out ``serve.py`` and ``model.py``) and every public check of ``labelled_data.py`` that
    other command modules import (it described only the ``--data`` / ``--split`` options)."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `cli/` |"))
    cli = REPO / "src" / "dermsight" / "cli"
    modules = sorted(p.name for p in cli.glob("*.py") if not p.name.startswith("__"))
    assert [m for m in modules if f"`{m}`" not in row] == []
    shared = re.findall(r"^def ([a-z]\w*)\(", (cli / "labelled_data.py").read_text(), re.M)
    used = [f for f in shared
            if any(f in p.read_text() for p in cli.glob("*.py") if p.name != "labelled_data.py")]
    assert used
    assert [f for f in used if f"`{f}`" not in row] == []


def test_finalize_writes_the_same_limitation_for_the_real_data(data_dir: Path) -> None:
    """What ``finalize`` writes for the shipped recipe on the shared data carries the new sentence
    (not "Not validated for ..."), and the data show why it cannot say no such image was seen:
    the test split holds images sited 'oral/genital'."""
    from dermsight.train.config import load_config
    from dermsight.train.finalize.card import NOT_EVALUATED_LIMITATION, limitations
    from dermsight.train.table import assign_split, load_table

    isic2020 = data_dir.parent / "isic2020-sample"
    cfg = load_config(REPO / "configs" / "default.yaml", [f"data.root=[{data_dir}, {isic2020}]"])
    df = load_table(cfg.data)
    df["split"] = assign_split(df, cfg.data)
    lim = limitations(cfg, df)
    assert NOT_EVALUATED_LIMITATION in lim
    assert not any(line.startswith("Not validated") for line in lim)
    site = next(c for c in ("site", "anatom_site") if c in df.columns)
    assert ((df["split"] == "test") & (df[site] == "oral/genital")).sum() > 0
