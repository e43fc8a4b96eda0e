"""A DICOM file's PatientID (typically a hospital record number) reaches no output of
``dermsight batch``: the ``group`` column holds its pseudonym (``dicom.patient_pseudonym``), the
same for every image of one patient, so grouping still holds; a CSV's own group column is used
as given. The upload path (``decode_dicom_upload``) keeps no PatientID either, as the group or
as the id of a file without a SOPInstanceUID. DICOM files are made from real isic-subset images."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from cli_support import run
from dermsight.batch.store import read_output
from dermsight.io.decode import decode_image
from dermsight.io.dicom import decode_dicom_upload, read_dicom, read_dicom_dataset, write_dicom

#: the PatientIDs planted: two images of patient A, one of patient B
MRN_A = "MRN-80431977"
MRN_B = "MRN-80431978"


def _pseudonym(patient_id: str) -> str:
    """The documented group of a PatientID (docs/batch.md)."""
    digest = hashlib.sha256(("dermsight-dicom-group\0" + patient_id).encode()).hexdigest()
    return "dcm-" + digest[:16]


@pytest.fixture(scope="module")
def images(data_dir: Path, metadata: pd.DataFrame) -> list[Path]:
    """4 real images, by image id."""
    return [data_dir / "images" / f"{i}.jpg" for i in sorted(metadata["image_id"])[:4]]


@pytest.fixture(scope="module")
def dicom_folder(images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pseudonym") / "dcm"
    folder.mkdir()
    write_dicom(folder / "a1.dcm", decode_image(images[0]), 45, "male", "back", patient_id=MRN_A)
    write_dicom(folder / "a2.dcm", decode_image(images[1]), 45, "male", "torso",
                patient_id=MRN_A)
    write_dicom(folder / "b1.dcm", decode_image(images[2]), 60, "female", "back",
                patient_id=MRN_B)
    return folder


def _files(out: Path) -> list[Path]:
    """Every file a run wrote: the output folder and the files beside it named after it."""
    found = [p for p in out.rglob("*") if p.is_file()]
    found += [p for p in out.parent.glob(f"{out.name}.*") if p.is_file()]
    assert found
    return found


def _assert_no_mrn(out: Path) -> None:
    for p in _files(out):
        data = p.read_bytes()
        for mrn in (MRN_A, MRN_B):
            assert mrn.encode() not in data, f"{p.name} holds a PatientID"
    cells = read_output(out).astype(str).to_numpy().ravel()
    assert not [c for c in cells if MRN_A in c or MRN_B in c]


def test_the_pseudonym_is_the_documented_hash_and_not_the_patient_id() -> None:
    from dermsight.io.dicom import patient_pseudonym

    assert patient_pseudonym(MRN_A) == _pseudonym(MRN_A) == "dcm-" + hashlib.sha256(
        b"dermsight-dicom-group\0" + MRN_A.encode()).hexdigest()[:16]
    assert patient_pseudonym(MRN_A) != patient_pseudonym(MRN_B)
    assert MRN_A not in patient_pseudonym(MRN_A)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_batch_of_a_dicom_folder_writes_no_patient_id_and_groups_by_patient(
        dicom_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fmt: str) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "batch", str(dicom_folder), "--out", str(out),
                               "--format", fmt)
    assert code == 0, stderr
    assert not [m for m in (MRN_A, MRN_B) if m in stdout + stderr]
    got = read_output(out).set_index("id")
    assert got["error"].isna().all(), got["error"]
    assert got.loc["a1", "group"] == got.loc["a2", "group"] == _pseudonym(MRN_A)
    assert got.loc["b1", "group"] == _pseudonym(MRN_B) != got.loc["a1", "group"]
    _assert_no_mrn(out)


def test_a_manifest_of_dicom_files_uses_the_csvs_own_group_as_given(
        dicom_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows without a patient id get the DICOM file's pseudonym; a row with one keeps it (it is
    the CSV's value, not read from the file). With --evaluate the sidecar files hold no
    PatientID either."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,id,diagnosis,patient_id\n"
                        f"{dicom_folder / 'a1.dcm'},a1,NV,\n"
                        f"{dicom_folder / 'a2.dcm'},a2,MEL,\n"
                        f"{dicom_folder / 'b1.dcm'},b1,NV,csv-patient-7\n", encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "batch", str(manifest), "--out", str(out), "--format",
                               "csv", "--evaluate")
    assert code == 0, stderr
    assert not [m for m in (MRN_A, MRN_B) if m in stdout + stderr]
    got = read_output(out).set_index("id")
    assert got.loc["a1", "group"] == got.loc["a2", "group"] == _pseudonym(MRN_A)
    assert got.loc["b1", "group"] == "csv-patient-7"
    assert list(out.parent.glob(f"{out.name}.evaluation*"))  # the sidecar is checked too
    _assert_no_mrn(out)


def _without_sop_instance_uid(path: Path) -> bytes:
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_an_upload_keeps_no_patient_id_as_its_group_or_its_id(dicom_folder: Path) -> None:
    data = _without_sop_instance_uid(dicom_folder / "a1.dcm")
    record, _frame = decode_dicom_upload(data)
    assert record.image is not None
    assert record.group == record.id == _pseudonym(MRN_A)
    assert MRN_A not in repr(dataclasses.replace(record, image=None))
    assert read_dicom_dataset(data).group == _pseudonym(MRN_A)
    assert read_dicom(dicom_folder / "a2.dcm", decode=False).group == _pseudonym(MRN_A)


def test_the_predict_answer_for_a_dicom_holds_no_patient_id(dicom_folder: Path) -> None:
    from dermsight import Dermsight

    answer = Dermsight.load(threads=2).predict(dicom_folder / "a1.dcm", heatmap=False)
    text = json.dumps(answer.to_dict(heatmap_png=False), default=str)
    assert MRN_A not in text
