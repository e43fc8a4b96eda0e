"""Readers: CSV layouts of every ISIC export, bad rows, DICOM and TFRecord round trips."""

from __future__ import annotations

import csv
import io
import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsight.io import (
    ReaderError,
    ReadSummary,
    detect_kind,
    estimate_count,
    iter_records,
    load_image,
    load_images,
)
from dermsight.io.csvfolder import detect_layout, iter_csv, iter_csv_rows
from dermsight.io.decode import decode_image
from dermsight.io.dicom import dicom_site, patient_pseudonym, read_dicom, write_dicom
from dermsight.io.tfrecord import Codes, iter_tfrecord, write_tfrecord
from dermsight.records import IGNORED, LesionRecord, Metadata

# --- helpers -----------------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def copy_images(data_dir: Path, ids: Sequence[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for i in ids:
        shutil.copy(data_dir / "images" / f"{i}.jpg", dest / f"{i}.jpg")


def by_id(records: Sequence[LesionRecord]) -> dict[str, LesionRecord]:
    return {r.id: r for r in records}


@pytest.fixture
def ids(sample_ids: list[str]) -> list[str]:
    return sample_ids[:6]


# --- the shared dataset ------------------------------------------------------------------------


def test_shared_dataset_streams_lazily(data_dir: Path, metadata: pd.DataFrame) -> None:
    assert detect_kind(data_dir) == "folder"
    assert estimate_count(data_dir) == len(metadata) == 12394
    first = list(itertools.islice(iter_records(data_dir, decode=False), 50))
    row = metadata.iloc[0]
    rec = first[0]
    assert rec.id == row.image_id
    assert rec.image is None
    assert rec.error is None
    assert rec.label == row.diagnosis
    assert rec.source == row.source
    assert rec.group == row.group_id
    assert rec.meta == Metadata.parse(row.age_approx, row.sex, row.anatom_site)
    assert rec.path is not None
    assert Path(rec.path) == data_dir / "images" / f"{row.image_id}.jpg"
    decoded = list(load_images(first[:8], workers=2))
    assert [r.id for r in decoded] == [r.id for r in first[:8]]
    assert all(r.ok and r.image is not None and r.image.shape == (256, 256, 3) for r in decoded)


def test_shared_csv_given_directly(data_dir: Path) -> None:
    recs = list(itertools.islice(iter_records(data_dir / "metadata.csv"), 3))
    assert all(r.ok for r in recs)


# --- CSV layouts -------------------------------------------------------------------------------


def test_ham10000_layout(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    # HAM10000 ships images in two part folders; the reader finds them anywhere below.
    copy_images(data_dir, ids[:3], tmp_path / "HAM10000_images_part_1")
    copy_images(data_dir, ids[3:], tmp_path / "HAM10000_images_part_2")
    dx = ["mel", "nv", "akiec", "bkl", "df", "vasc"]
    loc = ["back", "face", "unknown", "trunk", "foot", "acral"]
    rows = [
        [f"HAM_{k:07d}", i, dx[k], "histo", 40 + k, "male" if k % 2 else "female", loc[k]]
        for k, i in enumerate(ids)
    ]
    rows[1][5] = "unknown"  # HAM's spelling of a missing sex
    rows[2][4] = ""  # and of a missing age
    write_csv(
        tmp_path / "HAM10000_metadata.csv",
        ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
        rows,
    )
    recs = by_id(list(iter_records(tmp_path)))
    assert len(recs) == 6
    assert all(r.ok for r in recs.values())
    r0, r1, r2 = (recs[i] for i in ids[:3])
    assert (r0.label, r0.meta, r0.group, r0.source) == (
        "MEL",
        Metadata(age=40.0, sex="female", site="posterior torso"),
        "HAM_0000000",
        "ham10000",
    )
    assert r1.meta == Metadata(age=41.0, sex=None, site="head/neck")
    assert r2.label == "AK"
    assert r2.meta.age is None
    assert r2.meta.site is None
    assert recs[ids[5]].meta.site == "palms/soles"


def test_isic2019_ground_truth_joined_with_metadata(
    data_dir: Path, ids: list[str], tmp_path: Path
) -> None:
    copy_images(data_dir, ids, tmp_path / "ISIC_2019_Training_Input")
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    gt = []
    for k, i in enumerate(ids):
        onehot = ["0.0"] * 9
        onehot[[0, 7, 3, 8, 1, 2][k]] = "1.0"
        gt.append([i, *onehot])
    write_csv(tmp_path / "ISIC_2019_Training_GroundTruth.csv", ["image", *classes], gt)
    write_csv(
        tmp_path / "ISIC_2019_Training_Metadata.csv",
        ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"],
        [[i, 30 + 5 * k, "anterior torso", f"BCN_{k}" if k % 2 else "", "female"]
         for k, i in enumerate(ids)],
    )
    recs = list(iter_records(tmp_path))
    assert [r.id for r in recs] == ids
    assert all(r.ok for r in recs)
    assert [r.label for r in recs] == ["MEL", "SCC", "AK", "UNK", "NV", "BCC"]
    assert recs[1].meta == Metadata(age=35.0, sex="female", site="anterior torso")
    assert recs[1].group == "BCN_1"
    assert recs[0].group is None
    assert recs[0].source == "isic2019"
    # The ground-truth CSV alone: labels, no metadata.
    alone = list(iter_records(tmp_path / "ISIC_2019_Training_GroundTruth.csv", decode=False))
    assert [r.label for r in alone] == [r.label for r in recs]
    assert all(r.meta == Metadata() for r in alone)


def test_isic2018_task3_columns(tmp_path: Path) -> None:
    layout = detect_layout(["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"])
    assert layout.name == "isic2018"
    write_csv(tmp_path / "gt.csv", layout.columns, [["x", 0, 0, 0, 1, 0, 0, 0]])
    (rec,) = iter_records(tmp_path / "gt.csv", decode=False)
    assert rec.label == "AK"


def test_isic2017_layout(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    copy_images(data_dir, ids[:3], tmp_path / "images")
    write_csv(
        tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv",
        ["image_id", "melanoma", "seborrheic_keratosis"],
        [[ids[0], "1.0", "0.0"], [ids[1], "0.0", "1.0"], [ids[2], "0.0", "0.0"]],
    )
    recs = list(iter_records(tmp_path))
    assert [r.label for r in recs] == ["MEL", "BKL", "NV"]
    assert all(r.ok for r in recs)
    assert recs[0].source == "isic2017"


def test_siim2020_train_csv(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    copy_images(data_dir, ids[:5], tmp_path / "jpeg" / "train")
    header = [
        "image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge",
        "diagnosis", "benign_malignant", "target",
    ]
    rows = [
        [ids[0], "IP_1", "male", "45.0", "head/neck", "unknown", "benign", 0],
        [ids[1], "IP_1", "male", "45.0", "torso", "melanoma", "malignant", 1],
        [ids[2], "IP_2", "female", "", "", "lentigo NOS", "benign", 0],
        [ids[3], "IP_3", "", "50.0", "palms/soles", "cafe-au-lait macule", "benign", 0],
        [ids[4], "IP_3", "female", "50.0", "oral/genital", "seborrheic keratosis", "benign", 0],
    ]
    write_csv(tmp_path / "train.csv", header, rows)
    assert detect_layout(header).name == "siim2020"
    recs = list(iter_records(tmp_path / "train.csv"))
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert [r.label for r in recs] == ["UNK", "MEL", "BKL", "UNK", "BKL"]
    assert [r.group for r in recs] == ["IP_1", "IP_1", "IP_2", "IP_3", "IP_3"]
    assert recs[1].meta == Metadata(age=45.0, sex="male", site="torso")
    assert recs[2].meta == Metadata(age=None, sex="female", site=None)
    assert recs[0].source == "isic2020"


def test_siim_test_csv_without_labels(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "test.csv",
        ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"],
        [["ISIC_0052060", "IP_3579794", "male", "70.0", ""]],
    )
    (rec,) = iter_records(tmp_path / "test.csv", decode=False)
    assert rec.label is None
    assert rec.meta == Metadata(age=70.0, sex="male")
    assert rec.error is not None
    assert "image file not found" in rec.error


def test_manifest_with_paths(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    copy_images(data_dir, ids[:2], tmp_path / "photos")
    absolute = data_dir / "images" / f"{ids[2]}.jpg"
    write_csv(
        tmp_path / "batch.csv",
        ["path", "age", "sex", "site"],
        [
            [f"photos/{ids[0]}.jpg", 61, "F", "back"],
            [f"photos/{ids[1]}.jpg", "", "", ""],
            [str(absolute), 30, "male", "upper extremity"],
        ],
    )
    assert detect_layout(["path", "age", "sex", "site"]).name == "manifest"
    recs = list(iter_records(tmp_path / "batch.csv"))
    assert [r.id for r in recs] == ids[:3]
    assert all(r.ok for r in recs)
    assert recs[0].meta == Metadata(age=61.0, sex="female", site="posterior torso")
    assert recs[0].label is None
    assert np.array_equal(recs[2].image, decode_image(absolute))  # type: ignore[arg-type]


def test_folder_without_csv(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    copy_images(data_dir, ids[:2], tmp_path)
    (tmp_path / "sub").mkdir()
    Image.fromarray(decode_image(data_dir / "images" / f"{ids[2]}.jpg")).save(
        tmp_path / "sub" / "x.png"
    )
    (tmp_path / "readme.txt").write_text("not an image, not listed")
    recs = list(iter_records(tmp_path))
    assert [r.id for r in recs] == [*ids[:2], "x"]
    assert all(r.ok for r in recs)
    assert all(r.label is None and r.meta == Metadata() for r in recs)


def test_single_image_file(sample_image: Path) -> None:
    assert detect_kind(sample_image) == "image"
    (rec,) = iter_records(sample_image)
    assert rec.ok
    assert rec.id == sample_image.stem


# --- bad inputs --------------------------------------------------------------------------------


def test_csv_missing_required_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ["name", "dx", "age"], [["x", "mel", 3]])
    with pytest.raises(ReaderError, match=r"missing required columns.*HAM10000.*image_id"):
        list(iter_records(tmp_path / "a.csv"))
    write_csv(tmp_path / "b.csv", ["image", "MEL", "NV", "BCC"], [["x", 1, 0, 0]])
    with pytest.raises(ReaderError, match=r"missing required class columns: BKL, DF, VASC, AK"):
        list(iter_records(tmp_path / "b.csv"))
    write_csv(tmp_path / "c.csv", ["image_id", "melanoma"], [["x", 1]])
    with pytest.raises(ReaderError, match="missing required column seborrheic_keratosis"):
        list(iter_records(tmp_path / "c.csv"))
    (tmp_path / "d.csv").write_text("")
    with pytest.raises(ReaderError, match="empty"):
        list(iter_records(tmp_path / "d.csv"))


def test_missing_path_is_a_reader_error(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="not found"):
        list(iter_records(tmp_path / "nowhere"))


def test_bad_values_are_left_out_and_rows_without_an_image_become_error_records(
        data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    copy_images(data_dir, ids[:5], tmp_path / "images")
    (tmp_path / "images" / "TEXT_1.jpg").write_text("this is not a picture")
    good = (tmp_path / "images" / f"{ids[4]}.jpg").read_bytes()
    (tmp_path / "images" / "CUT_1.jpg").write_bytes(good[: len(good) // 2])
    header = ["image_id", "diagnosis", "age_approx", "sex", "anatom_site", "group_id"]
    dupe = ids[0].replace("ISIC", "DUPE")
    rows: list[list[object]] = [
        [ids[0], "NV", 40, "male", "torso", "g0"],
        [ids[1], "psoriasis", 40, "male", "torso", "g1"],  # line 3
        [ids[2], "MEL", -5, "female", "", "g2"],
        [ids[3], "MEL", 400, "female", "", "g3"],
        [ids[4], "BCC", 50, "x", "", "g4"],
        ["ISIC_9999999", "NV", 30, "male", "", "g5"],
        ["TEXT_1", "NV", 30, "male", "", "g6"],
        ["CUT_1", "NV", 30, "male", "", "g7"],
        [dupe, "NV", "", "", "elbow pit", "g8"],
    ]
    write_csv(tmp_path / "metadata.csv", header, rows)
    summary = ReadSummary()
    warnings: list[str] = []
    recs = list(summary.track(iter_records(tmp_path, on_warning=warnings.append)))
    assert len(recs) == len(rows)  # nothing aborted
    assert summary.n_ok == 5
    assert summary.n_errors == 4
    errors = [r.error or "" for r in recs]
    # A value that cannot be used is left out (noted), and the image is read all the same.
    assert errors[:5] == [""] * 5
    assert recs[1].label is None  # an unknown diagnosis: unlabelled, and the user is told
    assert warnings == [
        f"1 row of metadata.csv has a label that cannot be used (line 3 ({ids[1]}): unknown "
        "diagnosis 'psoriasis'): its image is read without a label"
    ]
    for rec in recs[2:4]:  # age -5, age 400
        assert rec.meta.age is None
        assert ("age", IGNORED) in rec.meta.notes
    assert recs[4].meta.sex is None  # sex 'x'
    assert ("sex", IGNORED) in recs[4].meta.notes
    # Only a row without an image to read is an error row.
    assert errors[5].startswith("metadata.csv line 7 (ISIC_9999999): image file not found")
    assert errors[6] == (
        "metadata.csv line 8 (TEXT_1): TEXT_1.jpg: not an image (looks like a text file)"
    )
    assert errors[7] == (
        "metadata.csv line 9 (CUT_1): CUT_1.jpg: truncated JPEG: the file is incomplete"
    )
    assert errors[8].startswith(f"metadata.csv line 10 ({dupe}): image file not found")
    # Good parts of a row are kept.
    assert recs[2].label == "MEL"
    assert recs[2].meta.sex == "female"
    assert recs[2].image is not None
    assert recs[4].label == "BCC"
    assert recs[4].meta.age == 50
    # Lazy reading finds the missing files but not the undecodable ones...
    lazy = list(iter_records(tmp_path, decode=False))
    assert [r.error is None for r in lazy] == [True] * 5 + [False, True, True, False]
    # ...which load_image then reports.
    assert "truncated JPEG" in (load_image(lazy[7]).error or "")
    assert str(summary) == "9 records: 5 ok, 4 with errors"


def test_target_disagreeing_with_diagnosis(data_dir: Path, ids: list[str],
                                           tmp_path: Path) -> None:
    copy_images(data_dir, ids[:3], tmp_path)
    write_csv(
        tmp_path / "t.csv",
        ["image_name", "diagnosis", "target"],
        [[ids[0], "melanoma", 0], [ids[1], "nevus", 1], [ids[2], "nevus", 7]],
    )
    # The images are read, without their label; the user is told once, with the first reason.
    warnings: list[str] = []
    recs = list(iter_records(tmp_path / "t.csv", decode=False, on_warning=warnings.append))
    assert [r.error for r in recs] == [None] * 3
    assert [r.label for r in recs] == [None] * 3
    assert [w for w in warnings if "label" in w] == [
        f"3 rows of t.csv have a label that cannot be used (line 2 ({ids[0]}): diagnosis MEL "
        "disagrees with target 0, ...): their images are read without a label"
    ]
    # Each row's reason.
    problems = [parsed.label_problems for _line, parsed in iter_csv_rows(tmp_path / "t.csv")]
    assert problems == [["diagnosis MEL disagrees with target 0"],
                        ["diagnosis NV disagrees with target 1"],
                        ["target '7' is not 0 or 1"]]


def test_folder_with_two_label_csvs_needs_a_choice(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ["image_id", "dx"], [["x", "nv"]])
    write_csv(tmp_path / "b.csv", ["image_id", "diagnosis"], [["x", "NV"]])
    with pytest.raises(ReaderError, match=r"several label CSVs \(a.csv, b.csv\)"):
        list(iter_records(tmp_path))


def test_semicolon_csv_and_bom(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(
        "\ufeffimage_id;diagnosis;sex\nISIC_1;MEL;F\n".encode()
    )
    (rec,) = iter_csv(tmp_path / "m.csv", decode=False)
    assert rec.id == "ISIC_1"
    assert rec.label == "MEL"
    assert rec.meta.sex == "female"


# --- DICOM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("jpeg", [True, False])
def test_dicom_round_trip(data_dir: Path, ids: list[str], tmp_path: Path, jpeg: bool) -> None:
    src = decode_image(data_dir / "images" / f"{ids[0]}.jpg")
    p = write_dicom(tmp_path / f"{ids[0]}.dcm", src, 45, "female", "head/neck", jpeg=jpeg,
                    patient_id="IP_0001")
    rec = read_dicom(p)
    assert rec.ok, rec.error
    assert rec.image is not None, rec.error
    assert rec.id == ids[0]
    assert rec.group == patient_pseudonym("IP_0001") != "IP_0001"  # never the PatientID
    assert rec.source == "dicom"
    assert rec.meta == Metadata(age=45.0, sex="female", site="head/neck")
    diff = np.abs(rec.image.astype(int) - src).mean()
    assert diff < (2.0 if jpeg else 1e-9)
    # decode_image recognises DICOM content and gives the same pixels.
    assert np.array_equal(decode_image(p), rec.image)
    # Header-only read: metadata without pixels.
    lazy = read_dicom(p, decode=False)
    assert lazy.image is None
    assert lazy.error is None
    assert lazy.meta == rec.meta


def test_dicom_folder(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    sites = ["torso", "lower extremity", "upper extremity"]
    for k, i in enumerate(ids[:3]):
        write_dicom(tmp_path / f"{i}.dcm", decode_image(data_dir / "images" / f"{i}.jpg"),
                    30 + k, "male", sites[k])
    write_dicom(tmp_path / "EMPTY.dcm", np.zeros((4, 4, 3), np.uint8), pixels=False)
    recs = list(iter_records(tmp_path))
    assert [r.id for r in recs] == ["EMPTY", *ids[:3]]
    assert recs[0].error == "EMPTY.dcm: DICOM file has no image (pixel data)"
    assert [r.meta.site for r in recs[1:]] == sites
    assert all(r.ok for r in recs[1:])
    assert detect_kind(tmp_path / "EMPTY.dcm") == "dicom"


@pytest.mark.parametrize(
    ("raw", "site"),
    [
        ("TORSO", "torso"),
        ("LOWER EXTREMITY", "lower extremity"),
        ("UPPER_EXTREMITY", "upper extremity"),
        ("HEAD/NECK", "head/neck"),
        ("HEAD_NECK", "head/neck"),
        ("PALMS/SOLES", "palms/soles"),
        ("ORAL/GENITAL", "oral/genital"),
        ("ANTERIOR TORSO", "anterior torso"),
        ("EXTREMITY", None),
        ("", None),
    ],
)
def test_dicom_body_part_spellings(raw: str, site: str | None) -> None:
    assert dicom_site(raw) == site


def test_dicom_with_bad_metadata(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    import pydicom

    p = write_dicom(tmp_path / "a.dcm", decode_image(data_dir / "images" / f"{ids[0]}.jpg"), 40)
    ds = pydicom.dcmread(p)
    ds.PatientSex = "X"
    ds.save_as(p)
    rec = read_dicom(p)  # scored as predict scores it: the value left out and noted
    assert rec.ok
    assert (rec.meta.age, rec.meta.sex) == (40.0, None)
    assert rec.meta.notes == (("sex", IGNORED),)


def test_not_a_dicom(tmp_path: Path) -> None:
    p = tmp_path / "x.dcm"
    p.write_text("hello")
    rec = read_dicom(p)
    assert rec.error is not None
    assert rec.error.startswith("x.dcm: not a valid DICOM file")


# --- TFRecord ----------------------------------------------------------------------------------


def _siim_examples(data_dir: Path, ids: Sequence[str]) -> list[dict[str, object]]:
    dx = ["melanoma", "nevus", "unknown", "lentigo NOS"]
    sites = ["torso", "head/neck", None, "palms/soles"]
    return [
        {
            "image": (data_dir / "images" / f"{i}.jpg").read_bytes(),
            "image_name": i,
            "patient_id": f"IP_{k // 2}",
            "sex": ["male", "female", None, "female"][k],
            "age_approx": [45, 60, None, 5][k],
            "anatom_site_general_challenge": sites[k],
            "diagnosis": dx[k],
            "target": int(dx[k] == "melanoma"),
        }
        for k, i in enumerate(ids)
    ]


@pytest.mark.parametrize("int_codes", [False, True])
def test_tfrecord_round_trip(
    data_dir: Path, ids: list[str], tmp_path: Path, int_codes: bool
) -> None:
    examples = _siim_examples(data_dir, ids[:4])
    shard = write_tfrecord(tmp_path / "train00-4.tfrec", examples, int_codes=int_codes)
    assert detect_kind(shard) == "tfrecord"
    recs = list(iter_records(shard))
    assert [r.id for r in recs] == ids[:4], [r.error for r in recs]
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert [r.label for r in recs] == ["MEL", "NV", "UNK", "BKL"]
    assert recs[0].meta == Metadata(age=45.0, sex="male", site="torso")
    assert recs[2].meta == Metadata()
    assert recs[3].meta == Metadata(age=5.0, sex="female", site="palms/soles")
    assert recs[0].group == recs[1].group != recs[2].group
    for rec, i in zip(recs, ids, strict=False):
        original = decode_image(data_dir / "images" / f"{i}.jpg")
        assert rec.image is not None
        assert np.abs(rec.image.astype(int) - original).mean() < 1.0
    # Lazy: records point into the shard and decode later, in parallel, to the same pixels.
    lazy = list(iter_records(shard, decode=False))
    assert all(r.image is None and r.path and "#" in r.path for r in lazy)
    loaded = list(load_images(lazy, workers=2))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(loaded, recs, strict=True))  # type: ignore[arg-type]


def test_tfrecord_folder_of_shards(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    ex = _siim_examples(data_dir, ids[:4])
    write_tfrecord(tmp_path / "train00-2.tfrec", ex[:2])
    write_tfrecord(tmp_path / "train01-2.tfrec", ex[2:], int_codes=True)
    assert detect_kind(tmp_path) == "tfrecord-folder"
    assert [r.id for r in iter_records(tmp_path, decode=False)] == ids[:4]


def test_tfrecord_custom_codes_and_disagreement(
    data_dir: Path, ids: list[str], tmp_path: Path
) -> None:
    ex = _siim_examples(data_dir, ids[:2])
    shard = write_tfrecord(tmp_path / "s.tfrec", ex, int_codes=True)
    swapped = Codes(diagnosis={1: "melanoma", 2: "nevus", 0: "unknown"})
    said: list[str] = []
    recs = list(iter_tfrecord(shard, codes=swapped, decode=False, on_warning=said.append))
    # a label that disagrees with the target is not used, and the image is still scored
    assert recs[0].error is None
    assert recs[0].label is None
    assert len(said) == 1
    assert "disagrees with target" in said[0]
    assert "are the diagnosis codes" in said[0]


def test_tfrecord_damage_is_reported_not_raised(
    data_dir: Path, ids: list[str], tmp_path: Path
) -> None:
    shard = write_tfrecord(tmp_path / "s.tfrec", _siim_examples(data_dir, ids[:3]))
    data = bytearray(shard.read_bytes())
    # Flip one byte inside the second record's payload: its checksum fails, the others read.
    first_len = int.from_bytes(data[:8], "little")
    second = 12 + first_len + 4
    data[second + 12 + 100] ^= 0xFF
    (tmp_path / "flipped.tfrec").write_bytes(bytes(data))
    recs = list(iter_records(tmp_path / "flipped.tfrec"))
    assert [r.ok for r in recs] == [True, False, True]
    assert recs[1].error == "flipped.tfrec record 1: corrupt record (data checksum mismatch)"
    # Truncated shard: the complete records read, then one error record.
    (tmp_path / "cut.tfrec").write_bytes(bytes(shard.read_bytes()[: second + 500]))
    recs = list(iter_records(tmp_path / "cut.tfrec"))
    assert [r.ok for r in recs] == [True, False]
    assert recs[1].error == "cut.tfrec record 1: truncated shard: the last record is incomplete"
    # Not a TFRecord at all.
    (tmp_path / "junk.tfrec").write_bytes(b"hello world, definitely not a shard")
    (rec,) = iter_records(tmp_path / "junk.tfrec")
    assert rec.error is not None
    assert "not a TFRecord file" in rec.error


def test_tfrecord_bad_values(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    ex = _siim_examples(data_dir, ids[:3])
    ex[0]["sex"] = "x"
    ex[1]["age_approx"] = 400
    ex[2]["image"] = b"not an image"
    shard = write_tfrecord(tmp_path / "bad.tfrec", ex)
    recs = list(iter_records(shard))
    # a value that cannot be used is left out (noted IGNORED) and the image is scored, as in a CSV
    assert recs[0].error is None
    assert recs[0].meta.sex is None
    assert recs[0].meta.notes == (("sex", IGNORED),)
    assert recs[1].error is None
    assert recs[1].meta.age is None
    assert recs[1].meta.notes == (("age", IGNORED),)
    assert recs[2].error == f"bad.tfrec record 2 ({ids[2]}): not an image (looks like a text file)"


# --- utilities ---------------------------------------------------------------------------------


def test_load_images_keeps_order_and_bounds_memory(data_dir: Path, sample_ids: list[str]) -> None:
    recs = [
        LesionRecord(id=i, image=None, path=str(data_dir / "images" / f"{i}.jpg"))
        for i in sample_ids
    ]
    recs.append(LesionRecord(id="missing", image=None, path=str(data_dir / "nope.jpg")))
    out = list(load_images(iter(recs), workers=3, prefetch=4))
    assert [r.id for r in out] == [r.id for r in recs]
    assert all(r.ok for r in out[:-1])
    assert out[-1].error is not None
    assert "file not found" in out[-1].error


def test_unknown_file_kind(tmp_path: Path) -> None:
    p = tmp_path / "data.parquet"
    p.write_bytes(b"PAR1" + bytes(range(200)))
    with pytest.raises(ReaderError, match="not a dataset this reader knows"):
        detect_kind(p)


def test_png_bytes_in_a_csv_folder(data_dir: Path, ids: list[str], tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    arr = decode_image(data_dir / "images" / f"{ids[0]}.jpg")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    (tmp_path / "images" / f"{ids[0]}.png").write_bytes(buf.getvalue())
    write_csv(tmp_path / "labels.csv", ["image_id", "diagnosis"], [[ids[0], "NV"]])
    (rec,) = iter_records(tmp_path)
    assert rec.ok
    assert np.array_equal(rec.image, arr)  # type: ignore[arg-type]
