"""The web UI refuses a file before uploading it when its first bytes are no format the server
accepts (frontend ``imageKind``). The two must agree, or the UI refuses files the server reads
(a DICOM without its preamble, once the server read those). ``frontend/src/sniffCases.json``
holds first bytes and the kind the server gives them; this test checks the server against it,
``frontend/src/sniff.test.ts`` the UI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dermsight.io.decode import ALLOWED_FORMATS, sniff

CASES = json.loads((Path(__file__).resolve().parents[1] / "frontend" / "src" /
                    "sniffCases.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_server_accepts_what_the_ui_is_told(case: dict[str, str | None]) -> None:
    kind = sniff(bytes.fromhex(str(case["head"])))
    accepted = kind if kind is not None and (kind in ALLOWED_FORMATS or kind == "DICOM") else None
    assert accepted == case["kind"]


def test_every_accepted_format_has_a_case() -> None:
    assert {c["kind"] for c in CASES} - {None} == {*ALLOWED_FORMATS, "DICOM"}
