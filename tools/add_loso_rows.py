"""Add leave-one-source-out rows to a bundle's card (``cross_source`` section).

    # score a data folder the bundle never trained on (every image of it is "left out"):
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default \
        --score-folder ../shared/data/isic2020-sample --trained-on ham10000,isic2017,isic2019

    # copy the LOSO rows of a run trained with the same recipe minus one source:
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default \
        --from runs/loso-isic2020/bundle

    # add what a reader must know about a row (e.g. the spread of other draws) to its note;
    # alone, or with --from / --score-folder (then said of the rows just added):
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default \
        --note "isic2017=one training draw; ..."

    # only rewrite the card's test-set limitation from the rows it holds:
    .venv/bin/python tools/add_loso_rows.py --bundle src/dermsight/assets/default --refresh

Scoring goes through the serving facade (decode -> preprocess -> ONNX Runtime -> temperature ->
decision rule) with the card's own bootstrap settings; nothing is fitted. Copied rows keep their
``run`` (config, seed, command) and ``trained_on``, so the card says which model produced them.
Every call also rewrites the card's "Test set: ..." limitation from its rows (which collections
this network itself was scored on, which rows come from other networks of the recipe). The card
is rewritten and the bundle's integrity manifest refreshed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermsight import Dermsight
from dermsight.bundle import CARD_FILE, write_manifest
from dermsight.evaluate.cross_source import LOSO, add_loso_row, validate_cross_source
from dermsight.evaluate.settings import EvalSettings
from dermsight.io.decode import decode_image
from dermsight.records import Metadata
from dermsight.train.finalize.card import (
    TEST_SET_LIMITATION_START,
    external_validation_limitation,
)

COMMAND = ".venv/bin/python tools/add_loso_rows.py"


def _folder_frame(model: Dermsight, folder: Path) -> pd.DataFrame:
    meta = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.rename(columns={"age_approx": "age", "anatom_site": "site"})
    known = meta["diagnosis"].isin(model.classes)
    left = meta.loc[~known, "diagnosis"].value_counts()
    if len(left):
        print(f"left out {int(left.sum())} images of classes the model does not have")
    meta = meta[known].reset_index(drop=True)
    probs = []
    for i in range(0, len(meta), 64):
        part = meta.iloc[i:i + 64]
        imgs = [decode_image(folder / "images" / f"{x}.jpg") for x in part["image_id"]]
        metas: list[Metadata | None] = [Metadata.lenient(r.get("age"), r.get("sex"), r.get("site"))
                                         for _, r in part.iterrows()]
        out = model.predict_batch(imgs, metas)
        probs += [[p.probabilities[c] for c in model.classes] for p in out]
    frame = pd.DataFrame(np.array(probs), columns=[f"p_{c}" for c in model.classes])
    frame["label"] = meta["diagnosis"]
    frame["group"] = meta["group_id"]
    frame["source"] = meta["source"] if "source" in meta.columns else folder.name
    frame.attrs["left_out"] = ", ".join(f"{n} {c}" for c, n in left.items())
    return frame


def _parse_note(value: str, ap: argparse.ArgumentParser) -> tuple[str, str]:
    source, sep, text = value.partition("=")
    if not sep or not source.strip() or not text.strip():
        ap.error(f"--note takes SOURCE=TEXT, got {value!r}")
    return source.strip(), text.strip()


def _append_note(row: dict[str, Any], text: str) -> None:
    """Add ``text`` to the row's note (kept once: running the same command again adds nothing)."""
    old = row.get("note")
    if old and f"; {text}; " in f"; {old}; ":
        return
    row["note"] = f"{old}; {text}" if old else text


def _copied(section: dict[str, Any] | None, bundle: Path, from_bundle: Path) -> dict[str, Any]:
    """``--from``: the other bundle's LOSO rows replace this card's rows of the same sources."""
    other = json.loads((from_bundle / CARD_FILE).read_text()).get("cross_source") or {}
    rows = [r for r in other.get("rows", []) if r["protocol"] == LOSO]
    if not rows:
        raise SystemExit(f"{from_bundle} has no leave-one-source-out rows")
    if section is None:
        raise SystemExit(f"{bundle} has no cross_source section to add rows to")
    replaced = {r["source"] for r in rows}
    return dict(section, rows=[r for r in section["rows"]
                               if not (r["protocol"] == LOSO and r["source"] in replaced)] + rows)


def _scored(section: dict[str, Any] | None, card: dict[str, Any], bundle: Path, folder: Path,
            trained_on: list[str]) -> dict[str, Any]:
    """``--score-folder``: every image of ``folder`` scored by the bundle, one row per source."""
    model = Dermsight.load(bundle)
    test = card["metrics"]["test"]
    frame = _folder_frame(model, folder)
    run = {"config": card.get("name"), "seed": card.get("training", {}).get("seed"),
           "command": f"{COMMAND} --bundle {bundle} --score-folder {folder.name}"}
    settings = EvalSettings(
        refer_threshold=model.card.thresholds.refer,
        offsets=model.card.decision.offsets(model.classes),
        malignant_excluded=tuple(model.card.malignant_excluded),
        n_boot=int(test.get("n_boot", 200)), seed=int(test.get("seed", 0)),
        intervals="bootstrap")  # the shipped card's stored method
    for source in sorted(frame["source"].unique()):
        section = add_loso_row(
            section, frame, model.classes, str(source), trained_on, run, settings=settings)
        if frame.attrs["left_out"]:
            _append_note(_loso_row(section, str(source), bundle),
                         f"images of classes this model does not have were left out "
                         f"({frame.attrs['left_out']})")
    assert section is not None
    return section


def _loso_row(section: dict[str, Any], source: str, bundle: Path) -> dict[str, Any]:
    row = next((r for r in section["rows"]
                if r["protocol"] == LOSO and r["source"] == source), None)
    if row is None:
        raise SystemExit(f"{bundle} has no leave-one-source-out row for {source!r}")
    return row


def refresh_test_set_limitation(card: dict[str, Any]) -> None:
    """Rewrite the card's "Test set: ..." limitation from its leave-one-source-out rows: the
    sources its own run held out (finalize scored them) and rows scored by this tool
    (``--score-folder``) describe this network, copied rows (``--from``) another network of the
    recipe."""
    config = (card.get("training") or {}).get("config") or {}
    held = [str(x) for x in (config.get("data") or {}).get("holdout_sources") or []]
    rows = [r for r in (card.get("cross_source") or {}).get("rows", []) if r["protocol"] == LOSO]
    here = [r["source"] for r in rows if r["source"] not in held
            and str((r.get("run") or {}).get("command", "")).startswith(COMMAND)]
    other = [r["source"] for r in rows if r["source"] not in held and r["source"] not in here]
    line = external_validation_limitation(held, scored_here=here, other_networks=other)
    lims = card.get("limitations") or []
    card["limitations"] = [line if str(x).startswith(TEST_SET_LIMITATION_START) else x
                           for x in lims]
    if line not in card["limitations"]:
        card["limitations"].append(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--score-folder", type=Path)
    src.add_argument("--from", dest="from_bundle", type=Path)
    ap.add_argument("--trained-on", default="", help="comma-separated training sources")
    ap.add_argument("--note", action="append", default=[], metavar="SOURCE=TEXT",
                    help="append TEXT to the note of SOURCE's leave-one-source-out row "
                         "(repeatable)")
    ap.add_argument("--refresh", action="store_true",
                    help="change no row: only rewrite the card's test-set limitation")
    a = ap.parse_args()
    if a.score_folder is None and a.from_bundle is None and not a.note and not a.refresh:
        ap.error("give --score-folder, --from, --note or --refresh")
    notes = [_parse_note(n, ap) for n in a.note]
    card_path = a.bundle / CARD_FILE
    card: dict[str, Any] = json.loads(card_path.read_text())
    section = card.get("cross_source")
    if a.from_bundle is not None:
        section = _copied(section, a.bundle, a.from_bundle)
    elif a.score_folder is not None:
        section = _scored(section, card, a.bundle, a.score_folder,
                          [s for s in a.trained_on.split(",") if s])
    if section is None:
        raise SystemExit(f"{a.bundle} has no cross_source section")
    for source, text in notes:
        _append_note(_loso_row(section, source, a.bundle), text)
    card["cross_source"] = validate_cross_source(section)
    before = dict(card, limitations=list(card.get("limitations") or []))
    refresh_test_set_limitation(card)
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    # the report shows the same table: re-rendered only where the rest of it is reproduced
    # exactly from the card (tools/card_tables.py), then the manifest re-sealed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from card_tables import update_report

    update_report(card, a.bundle, before=before)
    write_manifest(a.bundle)
    for r in card["cross_source"]["rows"]:
        if r["protocol"] == LOSO:
            m = {k: (v or {}).get("value") for k, v in r["metrics"].items()}
            print(r["source"], r["n_images"], {k: None if v is None else round(v, 3)
                                               for k, v in m.items()}, r["note"] or "")


if __name__ == "__main__":
    main()
