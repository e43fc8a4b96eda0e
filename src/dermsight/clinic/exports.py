"""Zip exports: the clinic's confirmed cases in the layout ``dermsight evaluate`` / ``train``
read directly (``metadata.csv`` + ``images/``), and everything stored about one patient."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from dermsight.clinic.cases import patient_detail, usernames, visit_json
from dermsight.clinic.imagestore import ImageStore
from dermsight.clinic.models import Diagnosis, Lesion, Patient, Visit
from dermsight.predict import CANNOT_ASSESS

#: the ``dermsight`` CSV layout (io/csvfolder.py) plus where each row came from
CONFIRMED_COLUMNS = ("image_id", "diagnosis", "age_approx", "sex", "anatom_site", "lesion_id",
                     "group_id", "source", "diagnosis_method", "taken_at")
#: the confirmed-case export's note on what it holds and leaves out
README = "README.txt"
#: the response header with how many visits the confirmed-case export left out
LEFT_OUT_HEADER = "X-Dermsight-Left-Out"


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
    lesions left out because their photo could not be assessed."""

    data: bytes
    n_rows: int
    n_left_out: int


def _readme(n_rows: int, n_left_out: int) -> str:
    """``README.txt`` of the confirmed-case export: what it holds and what it leaves out."""
    visits = "visit was" if n_left_out == 1 else "visits were"
    return (
        "Confirmed cases of this clinic, in the layout dermsight evaluate / train / bundle adapt "
        "read (metadata.csv + images/).\n"
        f"{n_rows} image{'' if n_rows == 1 else 's'}: every visit of a lesion with a recorded "
        "diagnosis whose photo could be assessed, labelled with the lesion's diagnosis.\n"
        f"{n_left_out} {visits} left out: the gate refused the photo (\"cannot assess\": not "
        "a usable skin-lesion image, e.g. blurred, too dark or not skin), so it is not an image "
        "of the lesion to label with its diagnosis.\n")


def confirmed_zip(db: DbSession, images: ImageStore) -> ConfirmedExport:
    """Every visit of every lesion with a confirmed diagnosis whose photo could be assessed (one
    row per image; lesion and patient as ``lesion_id`` / ``group_id`` so splits and bootstraps
    keep them together). A visit the gate refused ("cannot assess") is left out of
    ``metadata.csv`` and ``images/`` (a photo of a flag or an ID card must not become a
    labelled training image) and counted in ``README.txt`` and ``n_left_out``."""
    rows = db.execute(
        select(Visit.id, Visit.image_key, Visit.age, Visit.sex, Visit.site, Visit.taken_at,
               Visit.lesion_id, Visit.risk, Lesion.patient_id, Diagnosis.code, Diagnosis.method)
        .join(Lesion, Lesion.id == Visit.lesion_id)
        .join(Diagnosis, Diagnosis.lesion_id == Visit.lesion_id)
        .order_by(Visit.id))
    buf = io.BytesIO()
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(CONFIRMED_COLUMNS)
    n = left_out = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for r in rows:
            if r.risk == CANNOT_ASSESS:
                left_out += 1
                continue
            image_id = f"visit_{r.id}"
            zf.writestr(f"images/{image_id}.png", images.get(r.image_key))
            age = "" if r.age is None else f"{r.age:g}"
            writer.writerow([image_id, r.code, age, r.sex or "", r.site or "",
                             f"lesion_{r.lesion_id}", f"patient_{r.patient_id}", "clinic",
                             r.method, r.taken_at.isoformat()])
            n += 1
        zf.writestr("metadata.csv", table.getvalue())
        zf.writestr(README, _readme(n, left_out))
    return ConfirmedExport(buf.getvalue(), n, left_out)


def patient_zip(db: DbSession, images: ImageStore, patient: Patient) -> bytes:
    """``patient.json`` (the patient, lesions, diagnoses, every visit with its result) and
    ``images/visit_<id>.png`` + ``images/visit_<id>_heatmap.png``."""
    names = usernames(db)
    doc: dict[str, Any] = patient_detail(db, patient)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for lesion_doc, lesion in zip(doc["lesions"], patient.lesions, strict=True):
            visits = []
            for v in lesion.visits:
                vj = visit_json(v, names)
                vj["image_file"] = f"images/visit_{v.id}.png"
                zf.writestr(vj["image_file"], images.get(v.image_key))
                if v.heatmap_key:
                    vj["heatmap_file"] = f"images/visit_{v.id}_heatmap.png"
                    zf.writestr(vj["heatmap_file"], images.get(v.heatmap_key))
                visits.append(vj)
            lesion_doc["visits"] = visits
        zf.writestr("patient.json", json.dumps(doc, indent=2))
    return buf.getvalue()
