"""Zip exports: the clinic's confirmed cases in the layout ``dermsight evaluate`` / ``train``
read directly (``metadata.csv`` + ``images/``), and everything stored about one patient (with
the audit events about their records)."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic import audit
from dermsight.clinic.accounts import aware
from dermsight.clinic.cases import NotFound, patient_detail, usernames, visit_json
from dermsight.clinic.imagestore import ImageStore
from dermsight.clinic.models import Diagnosis, Lesion, Patient, Visit
from dermsight.clinic.sites import site_in_doubt
from dermsight.predict import CANNOT_ASSESS

#: the ``dermsight`` CSV layout (io/csvfolder.py) plus where each row came from
CONFIRMED_COLUMNS = ("image_id", "diagnosis", "age_approx", "sex", "anatom_site", "lesion_id",
                     "group_id", "source", "diagnosis_method", "taken_at")
#: the confirmed-case export's note on what it holds and leaves out
README = "README.txt"
#: the response header with how many visits the confirmed-case export left out
LEFT_OUT_HEADER = "X-Dermsight-Left-Out"
#: the response header with how many stored files (images, heatmaps) a patient's export lacks
MISSING_HEADER = "X-Dermsight-Missing-Files"
#: the patient export's note on what it holds and which files are missing
PATIENT_README = "README.txt"
#: the patient export's list of the audit events about the patient (who viewed, changed or
#: exported their records, and when)
ACCESS_LOG = "access_log.json"
#: the fields of an audit event ``ACCESS_LOG`` keeps (``audit.event_json``'s, without the event
#: and patient ids)
ACCESS_LOG_FIELDS = ("at", "user", "action", "object_type", "object_id")

log = logging.getLogger(__name__)


#: runs of characters no download name keeps: anything but letters, digits, ``.`` and ``-``
#: (path separators, quotes, spaces, controls, ``<>:"|?*``, ``_`` itself) become one ``_``
_UNSAFE_NAME = re.compile(r"(?:[^\w.-]|_)+")


def _name_part(text: str) -> str:
    """``text`` as a piece of a file name: unsafe runs as one ``_``, no dot, ``-`` or ``_`` at
    either end (no hidden file, no ``..``)."""
    return _UNSAFE_NAME.sub("_", unicodedata.normalize("NFC", text)).strip("._-")


def _ascii_part(text: str) -> str | None:
    """``text`` as a piece of an ASCII file name, accents dropped (``Özil`` -> ``Ozil``), or None
    when a letter has no ASCII form (``ß``, other scripts): a part of it would mislead."""
    letters = [c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)]
    if any(not c.isascii() for c in letters):
        return None
    return _name_part("".join(letters)) or None


def _attachment(name: str, plain: str) -> str:
    """``Content-Disposition`` of a download: ``filename="<plain>"`` (ASCII) for every client,
    and ``filename*=UTF-8''...`` (RFC 6266 / RFC 8187: browsers prefer it) when ``name`` is not
    ``plain``."""
    header = f'attachment; filename="{plain}"'
    return header if name == plain else f"{header}; filename*=UTF-8''{quote(name, safe='')}"


def patient_attachment(ref: str, patient_id: int, day: date) -> str:
    """``Content-Disposition`` of a patient's export: ``patient_<ref>_<YYYY-MM-DD>.zip``, the
    reference (user text) made safe for a file name and a header; the ASCII ``filename`` has
    the reference without accents, or the patient's id where a letter has no ASCII form
    (``patient_<id>_...``, also when nothing of the reference is left)."""
    ref_part = _name_part(ref) or str(patient_id)
    plain = _ascii_part(ref) or str(patient_id)
    return _attachment(f"patient_{ref_part}_{day.isoformat()}.zip",
                       f"patient_{plain}_{day.isoformat()}.zip")


def confirmed_attachment(day: date) -> str:
    """``Content-Disposition`` of the confirmed-case export:
    ``confirmed_cases_<YYYY-MM-DD>.zip``."""
    name = f"confirmed_cases_{day.isoformat()}.zip"
    return _attachment(name, name)


@dataclass(frozen=True)
class ConfirmedExport:
    """The confirmed-case zip (``data``), its ``metadata.csv`` rows, and the visits of confirmed
    lesions left out (``n_left_out``, all of them): their photo could not be assessed,
    (``n_site_in_doubt`` of them) its body site contradicts the lesion's, or (``n_image_missing``
    of them) its image file is missing from the image store. ``patient_ids``: the patients with
    at least one row in the zip (ascending; for the audit log: one event per patient)."""

    data: bytes
    n_rows: int
    n_left_out: int
    n_site_in_doubt: int = 0
    n_image_missing: int = 0
    patient_ids: tuple[int, ...] = ()


#: why a visit of a confirmed lesion is left out of the export, by reason (``_left_out``;
#: ``IMAGE_MISSING_REASON`` when reading its image file finds none)
CANNOT_ASSESS_REASON = "cannot_assess"
SITE_REASON = "site_in_doubt"
IMAGE_MISSING_REASON = "image_missing"


def _left_out(risk: str, result_json: str) -> str | None:
    """Why a confirmed lesion's visit is no image to label with the lesion's diagnosis (None:
    it is one): the gate refused its photo, or a warning says the photo's body site
    contradicts the lesion's or another visit's (``sites.site_in_doubt``)."""
    if risk == CANNOT_ASSESS:
        return CANNOT_ASSESS_REASON
    if site_in_doubt(result_json):
        return SITE_REASON
    return None


def _readme(n_rows: int, left_out: Counter[str]) -> str:
    """``README.txt`` of the confirmed-case export: what it holds and what it leaves out, by
    reason (``_left_out``)."""
    n_left_out = left_out.total()
    visits = "visit was" if n_left_out == 1 else "visits were"
    return (
        "Confirmed cases of this clinic, in the layout dermsight evaluate / train / bundle adapt "
        "read (metadata.csv + images/).\n"
        f"{n_rows} image{'' if n_rows == 1 else 's'}: every visit of a lesion with a recorded "
        "diagnosis whose photo could be assessed and whose body site agrees with the lesion's, "
        "labelled with the lesion's diagnosis.\n"
        f"{n_left_out} {visits} left out:\n"
        f"- {left_out[CANNOT_ASSESS_REASON]}: the gate refused the photo (\"cannot assess\": "
        "not a usable skin-lesion image, e.g. blurred, too dark or not skin);\n"
        f"- {left_out[SITE_REASON]}: the visit carries a warning that its body site (a DICOM "
        "file's body part, or the site given) contradicts the lesion's recorded body site or "
        "another visit's of the lesion (site_contradicts_lesion, site_contradicts_earlier_visit): "
        "the photo may be of another lesion. A clinician who checks that it is of this lesion can "
        "add it to the data by hand.\n"
        f"- {left_out[IMAGE_MISSING_REASON]}: the visit's image file is missing from the image "
        "store (e.g. restored from an incomplete backup).\n"
        "\n"
        "This is pseudonymised personal data, not an anonymous research set: image_id, "
        "lesion_id and group_id are the clinic's internal ids of the visit, lesion and patient "
        "(visit_<id>, lesion_<id>, patient_<id>), which anyone with access to the clinic's "
        "records can map back to the patient; taken_at is the exact date of the "
        "visit, and age_approx (the ISIC column name) holds the age exactly as entered, not a "
        "rounded one. Handle it under the clinic's data-protection rules.\n")


def confirmed_zip(db: DbSession, images: ImageStore) -> ConfirmedExport:
    """Every visit of every lesion with a confirmed diagnosis whose photo could be assessed (one
    row per image; lesion and patient as ``lesion_id`` / ``group_id`` so splits and bootstraps
    keep them together). A visit the gate refused ("cannot assess") or whose body site is in
    doubt (``sites.site_in_doubt``: the photo may be of another lesion) is left out of
    ``metadata.csv`` and ``images/`` (a photo of a flag, an ID card or another lesion must not
    become a labelled training image) and counted in ``README.txt`` and ``n_left_out``; so is a
    visit whose image file is missing from the image store (logged as a WARNING with the visit
    ids)."""
    rows = db.execute(
        select(Visit.id, Visit.image_key, Visit.age, Visit.sex, Visit.site, Visit.taken_at,
               Visit.lesion_id, Visit.risk, Visit.result_json, Lesion.patient_id,
               Diagnosis.code, Diagnosis.method)
        .join(Lesion, Lesion.id == Visit.lesion_id)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .order_by(Visit.id))
    buf = io.BytesIO()
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(CONFIRMED_COLUMNS)
    n = 0
    left_out: Counter[str] = Counter()
    missing: list[int] = []
    patients: set[int] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for r in rows:
            reason = _left_out(r.risk, r.result_json)
            if reason is not None:
                left_out[reason] += 1
                continue
            try:
                image = images.get(r.image_key)
            except NotFound:
                left_out[IMAGE_MISSING_REASON] += 1
                missing.append(r.id)
                continue
            image_id = f"visit_{r.id}"
            zf.writestr(f"images/{image_id}.png", image)
            age = "" if r.age is None else f"{r.age:g}"
            writer.writerow([image_id, r.code, age, r.sex or "", r.site or "",
                             f"lesion_{r.lesion_id}", f"patient_{r.patient_id}", "clinic",
                             r.method, r.taken_at.isoformat()])
            patients.add(r.patient_id)
            n += 1
        zf.writestr("metadata.csv", table.getvalue())
        zf.writestr(README, _readme(n, left_out))
    if missing:
        log.warning("confirmed-case export: %d visit image file(s) missing from the image "
                    "store, visits left out: visit ids %s", len(missing),
                    ", ".join(map(str, missing)))
    return ConfirmedExport(buf.getvalue(), n, left_out.total(), left_out[SITE_REASON],
                           left_out[IMAGE_MISSING_REASON], tuple(sorted(patients)))


@dataclass(frozen=True)
class PatientExport:
    """A patient's zip (``data``) and the visits whose stored files are missing from the image
    store (``missing_images`` / ``missing_heatmaps``: visit ids), left out of ``images/``."""

    data: bytes
    missing_images: tuple[int, ...] = ()
    missing_heatmaps: tuple[int, ...] = ()

    @property
    def n_missing(self) -> int:
        """How many files (images and heatmaps) are missing."""
        return len(self.missing_images) + len(self.missing_heatmaps)


#: how much earlier than the patient's ``created_at`` an event of its own may be dated
#: (``access_log``): the patient's row and the events of the transaction that created it take
#: their times separately, on PostgreSQL possibly on servers whose clocks differ a little
CREATED_TOLERANCE = timedelta(seconds=1)


def access_log(db: DbSession, patient_id: int) -> list[dict[str, Any]]:
    """Every audit event that carries ``patient_id`` (``audit.query``, page by page), oldest
    first, with the fields of ``ACCESS_LOG_FIELDS`` only: when, which user (their user name),
    which action and which object (type and id).

    Only this patient's: a SQLite database upgraded from before revision 0009 may have given
    a deleted patient's id to a later patient, and its events carry the same id. Events dated
    before the patient was created (less ``CREATED_TOLERANCE``), and those up to a deletion of
    a patient with this id, are left out."""
    events: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = audit.query(db, audit.PAGE_MAX, before, audit.Filter(patient_id=patient_id))
        events += page
        if len(page) < audit.PAGE_MAX:
            break
        before = page[-1]["id"]
    events.reverse()
    deleted = [i for i, e in enumerate(events) if e["action"] == "delete"
               and e["object_type"] == "patient" and e["object_id"] == patient_id]
    if deleted:  # an earlier patient's events, up to its deletion
        events = events[deleted[-1] + 1:]
    created = db.scalar(select(Patient.created_at).where(Patient.id == patient_id))
    if created is not None:
        since = aware(created) - CREATED_TOLERANCE
        events = [e for e in events if datetime.fromisoformat(e["at"]) >= since]
    return [{k: e[k] for k in ACCESS_LOG_FIELDS} for e in events]


def _patient_readme(missing_images: list[int], missing_heatmaps: list[int],
                    n_events: int) -> str:
    """``README.txt`` of a patient's export: what it holds and which files it lacks."""
    def ids(visits: list[int]) -> str:
        return ", ".join(f"visit {v}" for v in visits) if visits else "none"

    text = ("Everything stored about this patient: patient.json (the patient, lesions, "
            "diagnoses, every visit with its result), images/ (each visit's photo and "
            "heatmap, named in patient.json as image_file / heatmap_file) and "
            f"{ACCESS_LOG} (the clinic's audit log entries about this patient's records: "
            f"{n_events} event{'' if n_events == 1 else 's'}, oldest first, each with its time "
            "(UTC), the user name, the action (such as view, update or export) and the object "
            "(its type and id)).\n"
            f"Not in {ACCESS_LOG}: this export itself (the audit log records it after this "
            "file was written), and events logged before the clinic's database upgrade that "
            "links audit events to patients (revision 0008), which name no patient.\n")
    if not missing_images and not missing_heatmaps:
        return text + "No stored file is missing.\n"
    return text + (
        "Some stored files are missing from the clinic's image store (e.g. it was restored "
        "from an incomplete backup) and are not in this export; the visits' records in "
        "patient.json are complete and say so (image_missing / heatmap_missing):\n"
        f"- images missing: {ids(missing_images)}\n"
        f"- heatmaps missing: {ids(missing_heatmaps)}\n")


def _stored(images: ImageStore, key: str) -> bytes | None:
    """The stored file, or None when it is missing from the image store."""
    try:
        return images.get(key)
    except NotFound:
        return None


def _add_file(zf: zipfile.ZipFile, images: ImageStore, key: str, vj: dict[str, Any],
              what: str, name: str) -> bool:
    """Put the stored file ``key`` into the zip as ``name`` and record it in the visit's record
    as ``<what>_file``; when it is missing from the image store, record ``<what>_missing``
    instead. False when it was missing."""
    data = _stored(images, key)
    if data is None:
        vj[f"{what}_missing"] = True
        return False
    vj[f"{what}_file"] = name
    zf.writestr(name, data)
    return True


def patient_export(db: DbSession, images: ImageStore, patient: Patient) -> PatientExport:
    """``patient.json`` (the patient, lesions, diagnoses, every visit with its result),
    ``images/visit_<id>.png`` + ``images/visit_<id>_heatmap.png``, ``access_log.json`` (the
    audit events about the patient: ``access_log``; not the export's own, which the caller
    records after) and ``README.txt``. A file
    missing from the image store leaves the rest of the export whole: the visit's record says
    ``image_missing`` / ``heatmap_missing`` (true) instead of ``image_file`` / ``heatmap_file``,
    ``README.txt`` and ``patient.json`` (``missing_files``) list the visit ids, and one WARNING
    line with the count and visit ids (no patient data) is logged."""
    names = usernames(db)
    doc: dict[str, Any] = patient_detail(db, patient)
    missing_images: list[int] = []
    missing_heatmaps: list[int] = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for lesion_doc, lesion in zip(doc["lesions"], patient.lesions, strict=True):
            visits = []
            for v in lesion.visits:
                vj = visit_json(v, names)
                if not _add_file(zf, images, v.image_key, vj, "image",
                                 f"images/visit_{v.id}.png"):
                    missing_images.append(v.id)
                if v.heatmap_key and not _add_file(zf, images, v.heatmap_key, vj, "heatmap",
                                                   f"images/visit_{v.id}_heatmap.png"):
                    missing_heatmaps.append(v.id)
                visits.append(vj)
            lesion_doc["visits"] = visits
        doc["missing_files"] = {"images": missing_images, "heatmaps": missing_heatmaps}
        zf.writestr("patient.json", json.dumps(doc, indent=2))
        events = access_log(db, patient.id)
        zf.writestr(ACCESS_LOG, json.dumps({"patient_id": patient.id, "events": events},
                                           indent=2))
        zf.writestr(PATIENT_README, _patient_readme(missing_images, missing_heatmaps,
                                                    len(events)))
    export = PatientExport(buf.getvalue(), tuple(missing_images), tuple(missing_heatmaps))
    if export.n_missing:
        log.warning("patient export: %d stored file(s) missing from the image store, left out "
                    "of the zip: images of visit ids [%s], heatmaps of visit ids [%s]",
                    export.n_missing, ", ".join(map(str, missing_images)),
                    ", ".join(map(str, missing_heatmaps)))
    return export
