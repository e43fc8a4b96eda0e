"""The clinic storage does not destroy data an operator mix-up puts within its reach: the image
sweep deletes only the store's own files, and nothing when the database does not match the
image store (an older backup); a missing image folder stops the start instead of being
recreated; the retention purge says what it deleted (and, dry run, what it would); settings and
a database newer than the code fail with one line and exit 2."""

from __future__ import annotations

import logging
import os
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from test_clinic_processes import cli

pytest.importorskip("sqlalchemy")


def _db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'clinic.db'}"


def _open(tmp_path: Path, images: Path, sweep: bool = False, **config: Any) -> Any:
    from dermsight.clinic.config import ClinicConfig
    from dermsight.clinic.runtime import Clinic

    return Clinic.open(ClinicConfig(database_url=_db_url(tmp_path), images=str(images),
                                    **config), sweep=sweep)


def _add_visit(clinic: Any, ref: str, image_key: str, days_old: int = 0) -> tuple[int, int, int]:
    """A patient with one lesion with one visit (no model needed): (patient, lesion, visit)."""
    from dermsight.clinic.models import Lesion, Patient, Visit, utcnow

    with clinic.db.session() as s:
        p = Patient(ref=ref)
        s.add(p)
        s.flush()
        lesion = Lesion(patient_id=p.id)
        s.add(lesion)
        s.flush()
        v = Visit(lesion_id=lesion.id, taken_at=date.today(), result_json="{}", risk="low",
                  model_name="m", model_version="1", bundle_sha256="0" * 64,
                  image_key=image_key, created_at=utcnow() - timedelta(days=days_old))
        s.add(v)
        s.flush()
        return p.id, lesion.id, v.id


def _age(path: Path, seconds: float = 7200) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def test_the_sweep_deletes_only_the_stores_own_files(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    images = tmp_path / "images"
    clinic = _open(tmp_path, images)
    kept = clinic.images.put(b"referenced", "png")
    orphan = clinic.images.put(b"interrupted upload", "png")
    _add_visit(clinic, "P-1", kept)
    (images / "important.docx").write_bytes(b"not an image")
    (images / ".hidden").write_bytes(b"dot file")
    for name in (kept, orphan, "important.docx", ".hidden"):
        _age(images / name)
    with caplog.at_level(logging.WARNING, logger="dermsight.clinic"):
        clinic.sweep(grace_s=60)
    assert _files(images) == {kept, "important.docx", ".hidden"}  # the orphan went
    assert [r for r in caplog.records if "2 files that are not dermsight images" in r.message]
    # the store's own low-level sweep follows the same rule
    assert clinic.images.sweep(set(), grace_s=60) == [kept]
    assert _files(images) == {"important.docx", ".hidden"}
    clinic.close()


def test_an_older_database_backup_does_not_sweep_the_live_images(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    clinic = _open(tmp_path, images)
    first = clinic.images.put(b"visit before the backup", "png")
    _add_visit(clinic, "P-1", first)
    # visits stored after the backup: files in the live store, rows not in the restored database
    later = [clinic.images.put(f"visit after the backup {i}".encode(), "png") for i in range(10)]
    (images / "readme.txt").write_text("foreign")
    for name in _files(images):
        _age(images / name)
    clinic.close()

    with caplog.at_level(logging.WARNING, logger="dermsight.clinic"):
        clinic = _open(tmp_path, images, sweep=True, sweep_grace_s=60)
    clinic.close()
    assert _files(images) == {first, *later, "readme.txt"}
    assert [r for r in caplog.records if "nothing was deleted" in r.message
            and "dermsight clinic sweep" in r.message]

    db, folder = _db_url(tmp_path), str(images)
    monkeypatch.setenv("DERMSIGHT_CLINIC_SWEEP_GRACE_S", "60")
    r = cli("clinic", "sweep", "--dry-run", "--database", db, "--images", folder)
    assert r.returncode == 0, r.stderr
    assert set(later) <= set(r.stdout.split())
    assert "mismatch" in r.stderr
    r = cli("clinic", "sweep", "--yes", "--database", db, "--images", folder)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert _files(images) == {first, *later, "readme.txt"}
    r = cli("clinic", "sweep", "--yes", "--force", "--database", db, "--images", folder)
    assert r.returncode == 0, r.stderr
    assert "deleted 10 files" in r.stdout
    assert _files(images) == {first, "readme.txt"}


def test_the_start_sweep_still_removes_an_interrupted_upload(tmp_path: Path) -> None:
    images = tmp_path / "images"
    clinic = _open(tmp_path, images)
    kept = clinic.images.put(b"stored", "png")
    _add_visit(clinic, "P-1", kept)
    orphans = [clinic.images.put(b"cut-off image", "png"),
               clinic.images.put(b"cut-off heatmap", "png")]
    (images / ".tmp-0123abcd").write_bytes(b"half")
    for name in _files(images):
        _age(images / name)
    clinic.close()
    clinic = _open(tmp_path, images, sweep=True, sweep_grace_s=60)
    clinic.close()
    assert _files(images) == {kept}
    assert orphans


def test_a_database_without_visits_does_not_sweep_a_store_with_images(tmp_path: Path) -> None:
    images = tmp_path / "images"
    clinic = _open(tmp_path, images)
    key = clinic.images.put(b"someone's visit", "png")
    _age(images / key)
    result = clinic.sweep(grace_s=60)
    assert _files(images) == {key}
    assert result.refused
    assert result.removed == []
    clinic.close()


def test_a_missing_image_folder_is_not_recreated_when_visits_reference_it(
        tmp_path: Path) -> None:
    from dermsight.clinic.config import ClinicConfigError

    images = tmp_path / "mnt" / "images"
    clinic = _open(tmp_path, images)
    _add_visit(clinic, "P-1", clinic.images.put(b"img", "png"))
    clinic.close()
    elsewhere = tmp_path / "unmounted"
    images.rename(elsewhere)
    with pytest.raises(ClinicConfigError, match=r"does not exist.*mount it or restore it"):
        _open(tmp_path, images)
    assert not images.exists()
    r = cli("clinic", "purge", "--retention-days", "30", "--database", _db_url(tmp_path),
            "--images", str(images))
    assert r.returncode == 2, r.stderr
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    assert not images.exists()
    # a database with no visit: the folder is created
    other = tmp_path / "fresh"
    other.mkdir()
    fresh = _open(other, other / "images")
    fresh.close()
    assert (other / "images").is_dir()


def test_the_retention_purge_records_what_it_deleted_and_has_a_dry_run(
        tmp_path: Path) -> None:
    from dermsight.clinic.models import AuditEvent, Visit
    from dermsight.clinic.rights import purge_plan

    images = tmp_path / "images"
    clinic = _open(tmp_path, images)
    pid, lid, vid = _add_visit(clinic, "OLD-1", clinic.images.put(b"old", "png"), days_old=40)
    keep = _add_visit(clinic, "NEW-1", clinic.images.put(b"new", "png"))

    r = cli("clinic", "purge", "--dry-run", "--retention-days", "30",
            "--database", _db_url(tmp_path), "--images", str(images))
    assert r.returncode == 0, r.stderr
    assert "would purge 1 visit, 1 lesion and 1 patient (visits stored" in r.stdout
    assert f"visit ids: {vid}" in r.stdout
    assert f"patient ids: {pid}" in r.stdout
    assert "OLD-1" not in r.stdout  # ids only
    with clinic.db.session() as s:
        assert len(list(s.scalars(select(Visit)))) == 2
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action == "purge")))
    assert len(_files(images)) == 2

    assert purge_plan(clinic, 30).visit_ids == [vid]
    with clinic.db.session() as s:
        rows = {(e.object_type, e.object_id) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "purge"))}
        assert [v.id for v in s.scalars(select(Visit))] == [keep[2]]
    assert rows == {("visit", vid), ("lesion", lid), ("patient", pid)}
    clinic.close()


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_a_bad_sweep_grace_period_is_one_line(tmp_path: Path, value: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dermsight.clinic.config import ClinicConfig, ClinicConfigError

    with pytest.raises(ClinicConfigError, match="DERMSIGHT_CLINIC_SWEEP_GRACE_S"):
        ClinicConfig.resolve(database=_db_url(tmp_path),
                             env={"DERMSIGHT_CLINIC_SWEEP_GRACE_S": value})
    config = ClinicConfig.resolve(database=_db_url(tmp_path),
                                  env={"DERMSIGHT_CLINIC_SWEEP_GRACE_S": "0"})
    assert config is not None
    assert config.sweep_grace_s == 0
    if value == "abc":
        monkeypatch.setenv("DERMSIGHT_CLINIC_SWEEP_GRACE_S", value)
        r = cli("clinic", "upgrade", "--database", _db_url(tmp_path))
        assert r.returncode == 2
        assert "DERMSIGHT_CLINIC_SWEEP_GRACE_S" in r.stderr
        assert "Traceback" not in r.stderr


def test_a_database_newer_than_the_code_is_one_line(tmp_path: Path) -> None:
    from dermsight.clinic.config import ClinicConfigError

    clinic = _open(tmp_path, tmp_path / "images")
    with clinic.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    clinic.close()
    with pytest.raises(ClinicConfigError, match="revision 0099, newer than this dermsight"):
        _open(tmp_path, tmp_path / "images")
    r = cli("clinic", "upgrade", "--database", _db_url(tmp_path))
    assert r.returncode == 2
    assert "revision 0099, newer than this dermsight (head 00" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_fractional_retention_period_is_named_as_not_a_whole_number(tmp_path: Path) -> None:
    from dermsight.clinic.config import ClinicConfig, ClinicConfigError

    with pytest.raises(ClinicConfigError, match=r"'1\.5' is not a whole number of days"):
        ClinicConfig.resolve(f"sqlite:///{tmp_path / 'x.db'}",
                             env={"DERMSIGHT_RETENTION_DAYS": "1.5"})


def test_a_removed_image_folder_is_a_storage_failure_not_missing_files(
        tmp_path: Path, data_dir: Path) -> None:
    """The whole image folder gone (an unmounted disk): reading an image is a 503, and so is a
    patient's export (not a 200 listing every file as missing, nor 404s)."""
    import shutil

    from clinic_support import image_bytes, served_clinic

    with served_clinic(tmp_path) as h:
        pid = h.patient("UNMOUNTED-1")
        lid = h.lesion(pid, body_site="back")
        r = h.visit(lid, image_bytes(data_dir, "ISIC_0030403"))
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        assert h.get(f"/visits/{vid}/image").status_code == 200
        shutil.rmtree(h.clinic.images._base)
        r = h.get(f"/visits/{vid}/image")
        assert r.status_code == 503, r.text
        r = h.get(f"/patients/{pid}/export")
        assert r.status_code == 503, r.text
