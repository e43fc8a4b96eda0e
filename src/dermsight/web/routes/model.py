"""The model's documentation: card, HTML evaluation report, plots, and the class list.

The report and the plots are served only when they are the files the loaded card's manifest
names (sha256; read and hashed again only when a file's ``stat`` changed): after a re-export
into the same folder the server still runs the model it loaded, so it answers 409 (restart the
server) rather than show the new bundle's figures beside the old model.

The card and the class list, which the clinic pages read, are open to a signed-in clinic user
without the shared token (``deps.open_to_clinic_users``); the rest is not."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from dermsight import taxonomy
from dermsight.bundle import REPORT_FILE
from dermsight.predict import Dermsight
from dermsight.web.deps import ModelDep, open_to_clinic_users
from dermsight.web.routes import API
from dermsight.web.schemas import ClassOut, ErrorResponse, PlotsResponse, error_responses

router = APIRouter(prefix=API, tags=["model"])

PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


CHANGED = ("the model bundle on disk changed since the server loaded it (re-exported?); the "
           "server still runs the model it loaded: restart the server to use the new one")

CHANGED_409: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "the bundle's files on disk are no longer those of the loaded model "
                   "(re-exported while the server ran): restart the server"}


def plots_dir(model: Dermsight) -> Path:
    return model.bundle.path / "plots"


def plot_names(model: Dermsight) -> list[str]:
    """The loaded card's plots (its manifest), or without a manifest those in the folder."""
    files = model.card.files
    if files:
        return sorted(n[len("plots/"):-len(".png")] for n in files
                      if n.startswith("plots/") and n.endswith(".png") and n.count("/") == 1)
    d = plots_dir(model)
    return sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []


#: files ``loaded_file`` has checked: (path, the sha256 the card names) -> (the file's
#: (inode, size, mtime) when it was read, its bytes); a request reads and hashes a file again
#: only when its ``stat`` changed, so the report and plots cost one ``stat`` per request
_CHECKED: dict[tuple[str, str | None], tuple[tuple[int, int, int], bytes]] = {}


def _missing(name: str, want: str | None) -> HTTPException:
    if want is not None:
        return HTTPException(409, CHANGED)
    return HTTPException(404, f"this model bundle has no {name}")


def loaded_file(model: Dermsight, name: str) -> bytes:
    """The bundle file ``name`` (relative, e.g. ``plots/roc.png``) as loaded: 404 when missing,
    409 when it is not the file the loaded card's manifest names (the bundle was replaced)."""
    path = model.bundle.path / name
    want = model.card.files.get(name) if model.card.files else None
    try:
        st = path.stat()
    except OSError:
        raise _missing(name, want) from None
    key, sig = (str(path), want), (st.st_ino, st.st_size, st.st_mtime_ns)
    seen = _CHECKED.get(key)
    if seen is not None and seen[0] == sig:
        return seen[1]
    try:
        data = path.read_bytes()
    except OSError:
        raise _missing(name, want) from None
    if model.card.files and hashlib.sha256(data).hexdigest() != want:
        raise HTTPException(409, CHANGED)
    _CHECKED[key] = (sig, data)
    return data


@router.get("/model", summary="The model card (JSON)")
@open_to_clinic_users  # the clinic pages read it (the model's name and version)
async def model_card(model: ModelDep) -> dict[str, Any]:
    card = model.card.to_dict()
    card.setdefault("links", {
        "report": f"{API}/model/report" if model.bundle.report_path else None,
        "plots": {p: f"{API}/model/plots/{p}.png" for p in plot_names(model)},
    })
    return card


@router.get(
    "/model/report", summary="The bundle's HTML evaluation report",
    response_class=HTMLResponse, responses={**error_responses(404), 409: CHANGED_409},
)
async def model_report(model: ModelDep) -> Response:
    if model.bundle.report_path is None and REPORT_FILE not in (model.card.files or {}):
        raise HTTPException(404, "this model bundle has no evaluation report")
    return Response(loaded_file(model, REPORT_FILE), media_type="text/html; charset=utf-8")


@router.get("/model/plots", response_model=PlotsResponse,
            summary="Names of the evaluation plots in the bundle")
async def model_plots(model: ModelDep) -> dict[str, Any]:
    return {"plots": plot_names(model)}


@router.get(
    "/model/plots/{name}.png", summary="One evaluation plot (PNG)",
    response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "the plot"},
        **error_responses(404), 409: CHANGED_409,
    },
)
async def model_plot(name: str, model: ModelDep) -> Response:
    d = plots_dir(model)
    path = d / f"{name}.png"
    if not PLOT_NAME.match(name) or name not in plot_names(model) or (
            path.exists() and path.resolve().parent != d.resolve()):
        raise HTTPException(404, f"no plot named {name[:60]!r} in this model bundle")
    return Response(loaded_file(model, f"plots/{name}.png"), media_type="image/png",
                    headers={"Cache-Control": "public, max-age=3600"})


@router.get("/classes", response_model=list[ClassOut],
            summary="The classes this model was trained on")
@open_to_clinic_users  # the clinic pages read it (the class names)
async def classes(model: ModelDep) -> list[dict[str, Any]]:
    out = []
    for code in model.classes:
        c = taxonomy.BY_CODE[code]
        out.append({"code": c.code, "name": c.name, "lay": c.lay,
                    "malignant": code in model.card.malignant, "premalignant": c.premalignant})
    return out
