"""Stratified group k-fold on the real metadata: no lesion in two folds, classes balanced."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from dermsight.io.errors import ReaderError
from dermsight.splits import FoldAssignment, split_csv, stratified_group_folds


@pytest.fixture(scope="module")
def real_folds(data_dir: Path) -> FoldAssignment:
    return split_csv(data_dir / "metadata.csv", 5, seed=0)


def test_every_image_gets_one_fold(real_folds: FoldAssignment, metadata: pd.DataFrame) -> None:
    assert real_folds.group_col == "group_id"
    assert real_folds.ids == metadata.image_id.tolist()
    assert set(real_folds.folds) == {0, 1, 2, 3, 4}
    sizes = pd.Series(real_folds.folds).value_counts()
    assert sizes.min() > 0.17 * len(metadata)
    assert sizes.max() < 0.23 * len(metadata)


def test_groups_never_cross_folds(real_folds: FoldAssignment, metadata: pd.DataFrame) -> None:
    frame = pd.DataFrame({"image_id": real_folds.ids, "fold": real_folds.folds}).merge(
        metadata[["image_id", "group_id", "lesion_id"]], on="image_id"
    )
    assert frame.groupby("group_id").fold.nunique().max() == 1
    # Lesions are inside groups, so they cannot cross either.
    lesions = frame[frame.lesion_id != ""]
    assert lesions.groupby("lesion_id").fold.nunique().max() == 1


def test_class_proportions_per_fold(real_folds: FoldAssignment) -> None:
    report = real_folds.report()
    overall = report["class_fraction"]
    assert set(overall) == {"MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"}
    for fold in report["folds"]:
        for cls, frac in fold["class_fraction"].items():
            assert abs(frac - overall[cls]) < 0.03, (fold["fold"], cls, frac, overall[cls])


def test_seed_is_reproducible_and_matters(metadata: pd.DataFrame) -> None:
    part = metadata.iloc[:800]
    labels, groups = part.diagnosis.tolist(), part.group_id.tolist()
    a = stratified_group_folds(labels, groups, 5, seed=0)
    assert stratified_group_folds(labels, groups, 5, seed=0) == a
    assert stratified_group_folds(labels, groups, 5, seed=1) != a


@pytest.mark.filterwarnings("ignore:The least populated class")
@pytest.mark.parametrize(("n", "folds", "seed"), [(600, 5, 0), (400, 3, 42)])
def test_same_folds_as_scikit_learn(
    metadata: pd.DataFrame, n: int, folds: int, seed: int
) -> None:
    sklearn_split = pytest.importorskip("sklearn.model_selection")
    import numpy as np

    part = metadata.iloc[:n]
    cv = sklearn_split.StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    expected = np.full(n, -1)
    for k, (_tr, va) in enumerate(cv.split(part, part.diagnosis, groups=part.group_id)):
        expected[va] = k
    ours = stratified_group_folds(part.diagnosis.tolist(), part.group_id.tolist(), folds, seed)
    assert ours == expected.tolist()


def test_write_csv(real_folds: FoldAssignment, tmp_path: Path) -> None:
    out = real_folds.write_csv(tmp_path / "folds" / "folds.csv")
    with out.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_id", "fold"]
    assert len(rows) == len(real_folds.ids) + 1


def _small_csv(tmp_path: Path, header: list[str], rows: list[list[str]]) -> Path:
    p = tmp_path / "m.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return p


def test_group_column_fallbacks(tmp_path: Path) -> None:
    # No group_id: lesion_id; an empty lesion_id means the image is its own group.
    rows = [[f"I{i}", "NV" if i % 3 else "MEL", f"L{i // 2}" if i < 20 else ""] for i in range(40)]
    p = _small_csv(tmp_path, ["image_id", "diagnosis", "lesion_id"], rows)
    a = split_csv(p, 4, seed=3)
    assert a.group_col == "lesion_id"
    assert a.groups[20] == "IMG_I20"
    by_group: dict[str, set[int]] = {}
    for g, f in zip(a.groups, a.folds, strict=True):
        by_group.setdefault(g, set()).add(f)
    assert all(len(v) == 1 for v in by_group.values())
    # SIIM layout: patient_id groups; an explicit column wins.
    rows2 = [
        [f"I{i}", f"IP_{i % 7}", "melanoma" if i % 9 == 0 else "unknown", str(int(i % 9 == 0))]
        for i in range(40)
    ]
    p2 = _small_csv(tmp_path, ["image_name", "patient_id", "diagnosis", "target"], rows2)
    b = split_csv(p2, 3, group_col="patient_id")
    assert b.group_col == "patient_id"
    assert len(set(b.groups)) == 7
    # No group column at all: every image alone.
    p3 = _small_csv(tmp_path, ["image_id", "dx"], [[f"I{i}", "nv"] for i in range(10)])
    assert split_csv(p3, 2).group_col is None


def test_split_errors(tmp_path: Path) -> None:
    p = _small_csv(tmp_path, ["image_id", "diagnosis"], [["a", "NV"], ["b", "MEL"]])
    with pytest.raises(ReaderError, match="group column 'nope' is not in the CSV"):
        split_csv(p, 2, group_col="nope")
    with pytest.raises(ValueError, match="cannot make 5 folds from 2 groups"):
        split_csv(p, 5)
    with pytest.raises(ValueError, match="at least 2"):
        stratified_group_folds(["a", "b"], ["1", "2"], 1)
    dup = _small_csv(tmp_path, ["image_id", "diagnosis"], [["a", "NV"], ["a", "MEL"]])
    with pytest.raises(ReaderError, match="image id a appears twice"):
        split_csv(dup, 2)


def test_holdout_split_is_group_disjoint_and_sized(metadata: pd.DataFrame) -> None:
    from dermsight.splits import holdout_split

    labels, groups = metadata.diagnosis.tolist(), metadata.group_id.tolist()
    split = holdout_split(labels, groups, test_fraction=0.15, val_fraction=0.15, seed=0)
    frame = pd.DataFrame({"split": split, "group": groups, "label": labels})
    assert frame.groupby("group").split.nunique().max() == 1
    share = frame.split.value_counts(normalize=True)
    assert share["test"] == pytest.approx(0.15, abs=0.01)
    assert share["val"] == pytest.approx(0.15, abs=0.01)
    # the same 20 folds as stratified_group_folds: test = folds 0-2, val = folds 3-5
    folds = stratified_group_folds(labels, groups, 20, 0)
    assert [s == "test" for s in split] == [f < 3 for f in folds]
    assert [s == "val" for s in split] == [3 <= f < 6 for f in folds]
    with pytest.raises(ValueError, match="leave no whole fold"):
        holdout_split(labels, groups, test_fraction=0.01, val_fraction=0.15)


def test_split_sha256_is_of_the_sorted_ids() -> None:
    import hashlib

    from dermsight.splits import split_sha256

    assert split_sha256(["b", "a"]) == split_sha256(["a", "b"])
    assert split_sha256(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()
