"""Finding the split file a bundle was trained on (``splits.recorded_split_file``).

``dermsight evaluate`` / ``batch --evaluate`` (``training_overlap``, either engine) and
``dermsight reference build`` (``recorded_split``) take the first candidate file whose ids match
EVERY split fingerprint the card records (``data.split_sha256``); a file matching only some is
not the bundle's split, and an unreadable candidate is passed over, not a crash.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cli_support import labelled_subset
from dermsight.bundle import BundleError, default_bundle_path, load_bundle
from dermsight.splits import recorded_split_file, split_sha256

IDS = [f"ISIC_{k:07d}" for k in range(12)]


def _split(ids: list[str]) -> pd.DataFrame:
    names = ["test" if k % 4 == 0 else "val" if k % 4 == 1 else "train"
             for k in range(len(ids))]
    return pd.DataFrame({"image_id": ids, "diagnosis": "NV", "split": names})


def _fingerprints(split: pd.DataFrame) -> dict[str, str]:
    return {s: split_sha256(split.loc[split["split"] == s, "image_id"])
            for s in ("train", "val", "test")}


def _write(path: Path, split: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(path, index=False)
    return path


def test_the_first_candidate_matching_every_fingerprint_is_found(tmp_path: Path) -> None:
    split = _split(IDS)
    data = {"split_sha256": _fingerprints(split)}
    bundle = tmp_path / "run" / "bundle"
    bundle.mkdir(parents=True)
    fallback = _write(tmp_path / "configs" / "default-split.csv", split)
    assert recorded_split_file(data, bundle, [fallback]) == fallback
    in_run = _write(tmp_path / "run" / "split.csv", split)
    assert recorded_split_file(data, bundle, [fallback]) == in_run
    beside = _write(bundle / "split.csv", split)
    assert recorded_split_file(data, bundle, [fallback]) == beside
    assert recorded_split_file(data, None, [fallback]) == fallback


def test_a_file_matching_only_some_fingerprints_is_not_the_split(tmp_path: Path) -> None:
    split = _split(IDS)
    data = {"split_sha256": _fingerprints(split)}
    moved = split.copy()
    moved.loc[moved["split"] == "val", "split"] = "train"  # train/val differ, test the same
    partial = _write(tmp_path / "run" / "split.csv", moved)
    assert split_sha256(moved.loc[moved["split"] == "test", "image_id"]) == \
        data["split_sha256"]["test"]
    assert recorded_split_file(data, tmp_path / "run" / "bundle") is None
    # the next candidate that matches every fingerprint is taken instead
    fallback = _write(tmp_path / "default-split.csv", split)
    assert recorded_split_file(data, partial.parent / "bundle", [fallback]) == fallback
    # a card recording fewer splits is matched on those it records
    only_test = {"split_sha256": {"test": data["split_sha256"]["test"]}}
    assert recorded_split_file(only_test, partial.parent / "bundle") == partial
    # ... unless the caller needs splits the card does not record
    assert recorded_split_file(only_test, partial.parent / "bundle",
                               required=("train", "test")) is None


def test_unreadable_candidates_are_passed_over(tmp_path: Path) -> None:
    split = _split(IDS)
    data = {"split_sha256": _fingerprints(split)}
    bundle = tmp_path / "run" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "split.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x9c")  # not UTF-8 text
    (tmp_path / "run" / "split.csv").write_text("image_id,diagnosis\nISIC_0000000,NV\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('image_id,split\n"ISIC_0000000,train\n')  # unterminated quote
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    fallback = _write(tmp_path / "default-split.csv", split)
    candidates = [empty, ragged, folder, tmp_path / "absent.csv", fallback]
    assert recorded_split_file(data, bundle, candidates) == fallback
    assert recorded_split_file(data, bundle, candidates[:-1]) is None


def test_none_when_nothing_matches_or_nothing_is_recorded(tmp_path: Path) -> None:
    split = _split(IDS)
    path = _write(tmp_path / "run" / "split.csv", split)
    bundle = path.parent / "bundle"
    assert recorded_split_file({"split_sha256": {"train": "0" * 64}}, bundle) is None
    for data in ({}, {"split_sha256": {}}, {"split_sha256": ["x"]}, {"split_sha256": "x"},
                 "x", None):
        assert recorded_split_file(data, bundle, [path]) is None


def test_both_commands_refuse_a_partly_matching_split(tmp_path: Path) -> None:
    """``evaluate`` and ``reference build`` find the same file by the same rule: a run folder's
    split.csv whose train and test match the card but whose val does not is neither's (reference
    build used to compare train and test only)."""
    from dermsight.batch.summary import training_overlap
    from dermsight.reference_build import recorded_split

    split = _split(IDS)
    moved = pd.concat([split, pd.DataFrame({"image_id": ["ISIC_9999999"], "diagnosis": ["NV"],
                                            "split": ["val"]})])  # one more val image
    assert {s: _fingerprints(moved)[s] for s in ("train", "test")} == \
        {s: _fingerprints(split)[s] for s in ("train", "test")}
    assert _fingerprints(moved)["val"] != _fingerprints(split)["val"]
    _write(tmp_path / "run" / "split.csv", moved)
    card = load_bundle(default_bundle_path()).card
    extra = {**card.extra, "data": {"split_sha256": _fingerprints(split)}}
    bundle = tmp_path / "run" / "bundle"
    bundle.mkdir()
    (bundle / "card.json").write_text(json.dumps({"data": extra["data"]}), encoding="utf-8")
    with pytest.raises(BundleError, match="the split this bundle was trained on was not found"):
        recorded_split(bundle, tmp_path / "nowhere.csv")
    assert not training_overlap(replace(card, extra=extra), bundle, IDS).checked

    _write(tmp_path / "run" / "split.csv", split)
    assert recorded_split(bundle, tmp_path / "nowhere.csv") == tmp_path / "run" / "split.csv"
    overlap = training_overlap(replace(card, extra=extra), bundle, IDS)
    assert overlap.checked
    assert overlap.split_file == str(tmp_path / "run" / "split.csv")


def test_a_card_whose_split_record_is_not_a_mapping_is_not_checked() -> None:
    from dermsight.batch.summary import training_overlap

    card = load_bundle(default_bundle_path()).card
    odd = replace(card, extra={**card.extra, "data": {"split_sha256": ["x"]}})
    overlap = training_overlap(odd, None, IDS)
    assert not overlap.checked
    assert "records no split" in overlap.reason


# --- the Spark engine looks beside the bundle too ---------------------------------------------

@pytest.fixture
def spark(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not Path("/usr/lib/jvm").exists():
        pytest.skip("Spark needs Java")
    from dermsight.batch.spark import get_session

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    session = get_session("local[2]")
    yield session
    session.stop()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_evaluate_finds_the_split_in_the_bundles_run_folder(
        spark: Any, tmp_path: Path, data_dir: Path, metadata: pd.DataFrame) -> None:
    """A bundle as ``dermsight train`` writes it (``RUN/bundle`` beside ``RUN/split.csv``):
    ``batch --engine spark --evaluate`` counts the evaluated images of its training split, as
    the local engine does, instead of saying it could not check."""
    from dermsight.batch.local import run_local
    from dermsight.batch.options import ScoreOptions
    from dermsight.batch.spark import run_spark

    data = labelled_subset(tmp_path / "data", data_dir, metadata, per_class=1)
    ids = sorted(pd.read_csv(data / "metadata.csv", dtype=str)["image_id"])
    split = _split(ids)
    run_dir = tmp_path / "run"
    split_csv = _write(run_dir / "split.csv", split)
    bundle = run_dir / "bundle"
    shutil.copytree(default_bundle_path(), bundle)
    card = json.loads((bundle / "card.json").read_text(encoding="utf-8"))
    card.setdefault("data", {})["split_sha256"] = _fingerprints(split)  # not the shipped split
    (bundle / "card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")

    options = ScoreOptions(fmt="csv", evaluate=True)
    summary = run_spark(data, tmp_path / "spark", options, bundle=bundle)
    local = run_local(data, tmp_path / "local", options, bundle=bundle, progress=False)
    overlaps = []
    for s in (summary, local):
        assert "json" in s.evaluation, s.evaluation
        evaluation = json.loads(Path(s.evaluation["json"]).read_text(encoding="utf-8"))
        overlaps.append(evaluation["training_overlap"])
    spark_overlap, local_overlap = overlaps
    assert spark_overlap["checked"] is True, spark_overlap
    assert Path(spark_overlap["split_file"]).resolve() == split_csv.resolve()
    assert {k: spark_overlap[k] for k in ("train", "val", "test")} == \
        {k: local_overlap[k] for k in ("train", "val", "test")}
    assert spark_overlap["train"] + spark_overlap["val"] >= 1
    assert "optimistic" in spark_overlap["caveat"]
