"""Add the per-source test table and the skin-tone (ITA) table to a trained bundle's card.

    .venv/bin/python tools/card_tables.py [--bundle src/dermsight/assets/default]
        [--split configs/default-split.csv] [--data ../shared/data/isic-subset] [--check-only]
    .venv/bin/python tools/card_tables.py --report-only     # report.html from the card as it is

For bundles made before ``finalize`` wrote these tables itself (the 8-class bundles of one data
folder; the 9-class default writes them in finalize, and its test split spans two folders, which
this step does not read). ``--report-only`` works for any bundle. It
re-scores the held-out TEST split through the serving path (decode -> preprocess -> ONNX Runtime
-> temperature), refuses to write anything unless the split's sha256 and the recomputed pooled
test metrics equal the ones in the card (so the tables describe exactly the evaluated model and
images), then computes with the card's own bootstrap settings (n_boot, seed, refer threshold):

* ``cross_source``: rows of protocol ``test_split_by_source`` (dermsight.evaluate.cross_source);
* ``metrics.test.by_ita``: metrics by ITA band (dermsight.evaluate.skin_tone).

The bundle's report.html is re-rendered with the two new tables, but only after the same
rendering WITHOUT them reproduces the existing report.html (minus any earlier copy of these two
sections) byte for byte, so nothing else in the report changes; otherwise the report is left
alone and a message says so.

Nothing is fitted or chosen here: the test split only describes the model. The card is
rewritten and the bundle's integrity manifest refreshed (dermsight.bundle.write_manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight.bundle import write_manifest
from dermsight.evaluate.cross_source import RunInfo, cross_source_section, source_rows
from dermsight.evaluate.metrics import compute_metrics
from dermsight.evaluate.report import card_report_extras, render_report
from dermsight.evaluate.settings import EvalSettings
from dermsight.evaluate.skin_tone import ita_table
from dermsight.io.decode import decode_image
from dermsight.predict import Dermsight
from dermsight.preprocess import encode_meta, preprocess
from dermsight.records import Metadata
from dermsight.skintone import ita_for_images

REPO = Path(__file__).resolve().parents[1]
COMMAND = ".venv/bin/python tools/card_tables.py"
GENERATED_BY = f"{COMMAND} (tables added to the card after training)"
#: pooled metrics that must match the card before anything is written
CHECKED = ("balanced_accuracy", "mel_auc", "malignant_auc", "refer_sensitivity",
           "refer_specificity", "ece")


def _meta(row: pd.Series) -> Metadata:
    """As the shipped model's finalize read metadata.csv (an invalid value drops all three)."""
    try:
        return Metadata.parse(row.get("age_approx"), row.get("sex"), row.get("anatom_site"))
    except ValueError:
        return Metadata()


def load_test(split_csv: Path, data: Path) -> pd.DataFrame:
    split = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    test = split[split["split"] == "test"][["image_id", "group_id"]]
    df = test.merge(meta.drop(columns=["group_id"]), on="image_id", how="left",
                    validate="one_to_one")
    if df["diagnosis"].isna().any():
        raise SystemExit("test images missing from metadata.csv")
    df["path"] = [str(data / "images" / f"{i}.jpg") for i in df["image_id"]]
    return df.reset_index(drop=True)


def score(model: Dermsight, images: list[np.ndarray], metas: list[Metadata],
          bs: int = 64) -> np.ndarray:
    logits = []
    for i in range(0, len(images), bs):
        x = np.stack([preprocess(im, model.card.input_spec) for im in images[i : i + bs]])
        m = np.stack([encode_meta(mt, model.card.meta_spec) for mt in metas[i : i + bs]])
        logits.append(model.run_arrays(x, m)["logits"])
    return model.probabilities(np.concatenate(logits))


def report_results(card: dict[str, Any], bundle: Path) -> dict[str, Any]:
    """The ``render_report`` input that finalize (v1) built, rebuilt from a card + its plots."""
    cfg = card.get("training", {}).get("config", {})
    data_cfg, test = cfg.get("data", {}), card["metrics"]["test"]
    uncal = card["metrics"].get("test_uncalibrated", {})
    names = ["roc", "confusion", "reliability", "risk_tiers"]
    names += sorted(set(card.get("plots", [])) - set(names))
    plots = {n: (bundle / "plots" / f"{n}.png").read_bytes() for n in names
             if (bundle / "plots" / f"{n}.png").exists()}
    return {
        "title": "dermsight model evaluation (held-out test split)",
        "model": {"name": card["name"], "version": card["version"],
                  "backbone": cfg.get("model", {}).get("backbone"),
                  "input": f"{card['input_spec']['size']} px",
                  "temperature": round(card["temperature"], 4)},
        "generated": card.get("created"),
        "intended_use": card.get("intended_use"),
        "data": {
            "summary": {"images used": card["data"]["n_images"], "test images": test["n"],
                        "test groups": test["n_groups"]},
            "splits": {s: card["data"]["by_split"][s]["by_diagnosis"]
                       for s in ("train", "val", "test")},
            "notes": [f"Group-disjoint split on {data_cfg.get('group_col')} (seed "
                      f"{data_cfg.get('split_seed')}); test never used for training, early "
                      "stopping, temperature, thresholds or the gate.",
                      "Excluded source repos: "
                      + ", ".join(data_cfg.get("exclude_source_repos", []))],
        },
        "test": test,
        "baseline": card.get("baseline"),
        "calibration": {"temperature": card["temperature"], "fit_on": "validation",
                        "ece_before": uncal.get("ece"), "ece_after": test["metrics"].get("ece"),
                        "nll_before": uncal.get("nll"), "nll_after": test["metrics"].get("nll")},
        "plots": plots,
        "limitations": card.get("limitations"),
        **card_report_extras(card),
    }


_NEW_SECTIONS = ("<h2>By skin tone", "<h2>Cross-source validation</h2>")


def without_new_sections(html: str) -> str:
    """A report with the skin-tone and cross-source sections (if any) cut out."""
    for marker in _NEW_SECTIONS:
        start = html.find(marker)
        if start >= 0:
            end = html.find("<h2>", start + len(marker))
            html = html[:start] + (html[end:] if end >= 0 else "")
    return html


def rendered_report(card: dict[str, Any], bundle: Path) -> str:
    """The bundle's report.html as its card (and plots) render it, tables included."""
    results = report_results(card, bundle)
    results["cross_source"] = card.get("cross_source")
    return render_report(results)


def update_report(card: dict[str, Any], bundle: Path, *,
                  before: dict[str, Any] | None = None) -> bool:
    """Re-render report.html with the new tables if the rest of it is reproduced exactly (from
    ``before``, the card as it was, when the caller also changed its text)."""
    path = bundle / "report.html"
    if before is not None:  # the card had its tables (the caller changed them and its text)
        expected = without_new_sections(rendered_report(before, bundle))
        actual = (without_new_sections(path.read_text(encoding="utf-8")) if path.exists()
                  else None)
    else:  # the tables are new: the rest of the report must be the card's rendering without them
        old = dict(card, metrics=dict(card["metrics"], test={
            k: v for k, v in card["metrics"]["test"].items() if k != "by_ita"}))
        expected = render_report(report_results(old, bundle))
        actual = (without_new_sections(path.read_text(encoding="utf-8")) if path.exists()
                  else None)
    if actual != expected:
        print("report.html: not reproduced exactly from the card; left unchanged")
        return False
    path.write_text(rendered_report(card, bundle), encoding="utf-8")
    print(f"rewrote {path} (the rest of the report reproduced exactly; tables added)")
    return True


def rerender_report(bundle: Path) -> None:
    """``--report-only``: report.html rewritten from the card as it is now (after a change to
    the card's text, such as a limitation), and the integrity manifest refreshed. Nothing is
    scored; tests/test_report.py checks that the shipped report is this rendering."""
    card = json.loads((bundle / "card.json").read_text())
    (bundle / "report.html").write_text(rendered_report(card, bundle), encoding="utf-8")
    write_manifest(bundle)
    print(f"rewrote {bundle / 'report.html'} from its card")


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), abs_tol=1e-6)


def verified_test_scores(model: Dermsight, card: dict[str, Any], split: Path, data: Path
                         ) -> tuple[pd.DataFrame, list[np.ndarray], np.ndarray]:
    """The test rows, their decoded images and the served probabilities — refused unless the
    split's sha256 and the recomputed pooled test metrics equal the card's."""
    test_ev = card["metrics"]["test"]
    df = load_test(split, data)
    ids = "\n".join(sorted(df["image_id"])).encode()
    want_hash = card.get("data", {}).get("split_sha256", {}).get("test")
    if hashlib.sha256(ids).hexdigest() != want_hash:
        raise SystemExit(f"the test split in {split} is not the one in the card")
    images = [decode_image(p) for p in df["path"]]
    probs = score(model, images, [_meta(r) for _, r in df.iterrows()])
    pooled = compute_metrics(df["diagnosis"].to_numpy(), probs, list(model.classes),
                             **_thresholds(model, card))
    bad = [k for k in CHECKED if not _close(pooled.get(k), test_ev["metrics"].get(k))]
    if bad:
        raise SystemExit("recomputed test metrics differ from the card: " + ", ".join(
            f"{k} {pooled.get(k)} vs {test_ev['metrics'].get(k)}" for k in bad))
    print(f"scored {len(df)} test images; pooled metrics match the card "
          f"({', '.join(CHECKED)})")
    return df, images, probs


def _thresholds(model: Dermsight, card: dict[str, Any]) -> dict[str, Any]:
    test_ev = card["metrics"]["test"]
    decision = getattr(model.card, "decision", None)
    return {"refer_threshold": test_ev.get("refer_threshold"),
            "monitor_threshold": test_ev.get("monitor_threshold"),
            "offsets": decision.offsets(list(model.classes)) if decision is not None else None,
            "malignant_excluded": model.card.malignant_excluded}


def new_tables(model: Dermsight, card: dict[str, Any], df: pd.DataFrame,
               images: list[np.ndarray], probs: np.ndarray
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The per-source rows and the by-ITA table, with the card's own bootstrap settings."""
    test_ev, classes = card["metrics"]["test"], list(model.classes)
    th = _thresholds(model, card)
    training = card.get("training", {})
    run: RunInfo = {"config": "configs/default.yaml", "seed": training.get("seed"),
                    "command": training.get("reproduce")}
    frame = pd.DataFrame({f"p_{c}": probs[:, i] for i, c in enumerate(classes)})
    frame["label"] = df["diagnosis"]
    frame["group"] = df["group_id"]
    frame["source"] = df["source"]
    settings = EvalSettings(refer_threshold=th["refer_threshold"], offsets=th["offsets"],
                            malignant_excluded=tuple(th["malignant_excluded"]),
                            n_boot=int(test_ev.get("n_boot", 200)),
                            seed=int(test_ev.get("seed", 0)),
                            intervals="bootstrap")  # the shipped card's stored method
    rows = source_rows(frame, classes, run, settings=settings)
    t_ita = time.perf_counter()
    ita = ita_for_images(images)
    print(f"ITA: {1000.0 * (time.perf_counter() - t_ita) / len(images):.2f} ms per image")
    by_ita = ita_table(df["diagnosis"].to_numpy(), probs, classes, ita,
                       groups=df["group_id"].to_numpy(), noun="test images", settings=settings)
    by_ita["generated_by"] = GENERATED_BY
    for r in rows:
        m = r["metrics"]
        print(f"{r['source']:<14} n={r['n_images']:>5}  bacc={m['balanced_accuracy']['value']}"
              f"  mel_auc={m['mel_auc']['value']}  note={r['note']}")
    for b in by_ita["bands"]:
        print(f"{b['subgroup']:<14} n={b['n']:>5}  mal_auc={b['malignant_auc']}  "
              f"note={b['note']}")
    print(by_ita["statement"])
    return rows, by_ita


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "src/dermsight/assets/default")
    ap.add_argument("--split", type=Path, default=REPO / "configs/default-split.csv")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/isic-subset")
    ap.add_argument("--check-only", action="store_true", help="verify, write nothing")
    ap.add_argument("--report-only", action="store_true",
                    help="only re-render report.html from the card as it is (nothing scored)")
    args = ap.parse_args()
    if args.report_only:
        rerender_report(args.bundle)
        return
    t0 = time.perf_counter()
    model = Dermsight.load(args.bundle, threads=2)
    card_path = args.bundle / "card.json"
    card = json.loads(card_path.read_text())
    df, images, probs = verified_test_scores(model, card, args.split, args.data)
    rows, by_ita = new_tables(model, card, df, images, probs)
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.check_only:
        return
    # leave-one-source-out rows come from other runs (tools/add_loso_rows.py): keep them
    kept = [r for r in (card.get("cross_source") or {}).get("rows", [])
            if r["protocol"] == "leave_one_source_out"]
    card["cross_source"] = cross_source_section([*rows, *kept], generated_by=GENERATED_BY)
    card["metrics"]["test"]["by_ita"] = by_ita
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    update_report(card, args.bundle)
    write_manifest(args.bundle)
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
