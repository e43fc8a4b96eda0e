"""TFRecord records whose metadata or label cannot be used are scored, as CSV rows are.

A metadata value that cannot be used (age 400, a sex or site code the code tables do not hold)
is left out and the row gets the ``metadata_ignored`` flag; a label that cannot be used (an
unknown diagnosis code, a diagnosis that disagrees with ``target``) leaves the row unlabelled,
and the reader says so in the words a CSV's reader uses. Only a record without an image to read
is an error row. (Before, each of these records was an error row and its image was not scored.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.store import read_output
from dermsight.io import tfrecord
from dermsight.io.tfrecord import iter_tfrecord, write_tfrecord
from dermsight.records import IGNORED, Metadata

#: id -> the record's integer-coded features (the shared 2020 shards' codes, -1 = not given)
#: and what the reader must make of them: (age, sex, site, label, the fields noted IGNORED)
Want = tuple[float | None, str | None, str | None, str | None, tuple[str, ...]]
CODED: dict[str, tuple[dict[str, int], Want]] = {
    "ok": ({"age_approx": 45, "sex": 0, "anatom_site_general_challenge": 3, "diagnosis": 1,
            "target": 0}, (45.0, "male", "torso", "NV", ())),
    "age400": ({"age_approx": 400, "sex": 1, "anatom_site_general_challenge": 3,
                "diagnosis": 1, "target": 0}, (None, "female", "torso", "NV", ("age",))),
    "sex7": ({"age_approx": 50, "sex": 7, "anatom_site_general_challenge": 2, "diagnosis": 1,
              "target": 0}, (50.0, None, "lower extremity", "NV", ("sex",))),
    "site99": ({"age_approx": 55, "sex": 0, "anatom_site_general_challenge": 99,
                "diagnosis": 1, "target": 0}, (55.0, "male", None, "NV", ("site",))),
    "site6": ({"age_approx": 60, "sex": 1, "anatom_site_general_challenge": 6, "diagnosis": 1,
               "target": 0}, (60.0, "female", None, "NV", ("site",))),
    "dx99": ({"age_approx": 40, "sex": 0, "anatom_site_general_challenge": 0, "diagnosis": 99,
              "target": 0}, (40.0, "male", "head/neck", None, ())),
    "mel_dx0": ({"age_approx": 70, "sex": 0, "anatom_site_general_challenge": 3,
                 "diagnosis": 0, "target": 1}, (70.0, "male", "torso", None, ())),
}
#: the records whose label cannot be used, and why (the reader's warning names them)
UNLABELLED = {
    "dx99": "unknown diagnosis code 99",
    "mel_dx0": "diagnosis UNK disagrees with target 1 (are the diagnosis codes those of this "
               "shard?)",
}


def _write_coded(path: Path, records: Mapping[str, tuple[bytes, Mapping[str, int]]]) -> Path:
    """A shard of records with the integer codes given as they are (``write_tfrecord`` only
    writes the codes its tables hold)."""
    writer = tfrecord._tfrecord().writer.TFRecordWriter(str(path))
    try:
        for rid, (image, coded) in records.items():
            datum: dict[str, tuple[bytes | int, str]] = {
                "image": (image, "byte"), "image_name": (rid.encode(), "byte")}
            datum.update({key: (value, "int") for key, value in coded.items()})
            writer.write(datum)
    finally:
        writer.close()
    return path


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory, data_dir: Path,
          sample_ids: list[str]) -> Path:
    """The records of ``CODED``, each with a real image, then ``broken``: image bytes that are
    no image (the one record that must stay an error row)."""
    root = tmp_path_factory.mktemp("tfmeta")
    records = {rid: ((data_dir / "images" / f"{image_id}.jpg").read_bytes(), coded)
               for (rid, (coded, _want)), image_id in zip(CODED.items(), sample_ids,
                                                          strict=False)}
    records["broken"] = (b"not an image at all", CODED["ok"][0])
    return _write_coded(root / "train00-8.tfrec", records)


@pytest.mark.parametrize("decode", [False, True])
def test_bad_metadata_and_labels_are_read_not_errors(shard: Path, decode: bool) -> None:
    warnings: list[str] = []
    recs = {r.id: r for r in iter_tfrecord(shard, decode=decode, on_warning=warnings.append)}
    assert list(recs) == [*CODED, "broken"]
    for rid, (_coded, (age, sex, site, label, ignored)) in CODED.items():
        rec = recs[rid]
        assert rec.error is None, (rid, rec.error)
        assert (rec.image is not None) == decode, rid
        assert rec.meta == Metadata(age=age, sex=sex, site=site), rid
        assert sorted(name for name, what in rec.meta.notes if what == IGNORED) == \
            sorted(ignored), rid
        assert rec.label == label, rid
    # only the unreadable image is an error row (with decode=False, when the image is loaded)
    broken = recs["broken"]
    assert broken.meta == Metadata(age=45.0, sex="male", site="torso")
    if decode:
        assert broken.error == (f"{shard.name} record 7 (broken): not an image (looks like a "
                                "text file)")
    # one line for the shard, in a CSV reader's words, naming the first record and why
    first = next(iter(UNLABELLED))
    assert warnings == [
        f"2 rows of {shard.name} have a label that cannot be used (record 5 ({first}): "
        f"{UNLABELLED[first]}, ...): their images are read without a label"
    ]


def test_string_valued_shard_values_that_cannot_be_used(
        data_dir: Path, sample_ids: list[str], tmp_path: Path) -> None:
    """Shards that store strings (not codes): the same rules, the same wording as a CSV."""
    image = (data_dir / "images" / f"{sample_ids[0]}.jpg").read_bytes()
    base = {"image": image, "age_approx": 45, "sex": "male",
            "anatom_site_general_challenge": "torso", "diagnosis": "nevus", "target": 0}
    shard = write_tfrecord(tmp_path / "s.tfrec", [
        {**base, "image_name": "sex_x", "sex": "x"},
        {**base, "image_name": "site_moon", "anatom_site_general_challenge": "moon"},
        {**base, "image_name": "age_400", "age_approx": 400},
        {**base, "image_name": "dx_foo", "diagnosis": "FOO"},
        {**base, "image_name": "mel_target0", "diagnosis": "melanoma"},
    ])
    warnings: list[str] = []
    recs = {r.id: r for r in iter_tfrecord(shard, decode=False, on_warning=warnings.append)}
    assert all(r.error is None for r in recs.values()), [r.error for r in recs.values()]
    assert recs["sex_x"].meta == Metadata(age=45.0, sex=None, site="torso")
    assert recs["sex_x"].meta.notes == (("sex", IGNORED),)
    assert recs["site_moon"].meta.notes == (("site", IGNORED),)
    assert recs["site_moon"].meta.site is None
    assert recs["age_400"].meta.notes == (("age", IGNORED),)
    assert recs["age_400"].meta.age is None
    assert [recs[i].label for i in ("sex_x", "dx_foo", "mel_target0")] == ["NV", None, None]
    assert warnings == [
        "2 rows of s.tfrec have a label that cannot be used (record 3 (dx_foo): unknown "
        "diagnosis 'FOO', ...): their images are read without a label"
    ]


def _flags(value: object) -> set[str]:
    return {f for f in str(value or "").split(";") if f.startswith("metadata")}


def test_batch_scores_them_with_the_flag_and_no_label(
        shard: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(capsys, "batch", str(shard), "--out", str(out), "-q")
    assert code == 1, err  # one error row: the unreadable image
    df = read_output(out).set_index("id")
    assert set(df.index) == {*CODED, "broken"}
    errors = df["error"].dropna()
    assert list(errors.index) == ["broken"], errors.tolist()
    assert "not an image" in str(errors["broken"])
    for rid, (_coded, (age, sex, site, label, ignored)) in CODED.items():
        row = df.loc[rid]
        assert pd.notna(row["malignant_probability"]), rid  # scored
        assert _flags(row["flags"]) == ({"metadata_ignored"} if ignored else set()), rid
        assert (None if pd.isna(row["age"]) else row["age"]) == age, rid
        assert row["sex"] == sex, rid
        assert row["site"] == site, rid
        assert (None if pd.isna(row["label"]) else row["label"]) == label, rid


def test_a_fractional_code_is_left_out_not_truncated(
        data_dir: Path, sample_ids: list[str], tmp_path: Path) -> None:
    """Sex code 1.5 is no code: left out and noted (not read as 1, "female"); 1.0 is 1."""
    image = (data_dir / "images" / f"{sample_ids[0]}.jpg").read_bytes()
    shard = tmp_path / "x.tfrec"
    writer = tfrecord._tfrecord().writer.TFRecordWriter(str(shard))
    for name, sex in ((b"B", 1.5), (b"C", 1.0)):
        writer.write({"image": (image, "byte"), "image_name": (name, "byte"),
                      "sex": (sex, "float")})
    writer.close()
    b, c = iter_tfrecord(shard, decode=False)
    assert b.error is None
    assert c.error is None
    assert b.meta.sex is None
    assert b.meta.notes == (("sex", IGNORED),)
    assert c.meta.sex == "female"
    assert c.meta.notes == ()
