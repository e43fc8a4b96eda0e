"""The model's documentation: card, HTML evaluation report, plots, and the class list.

The card and the class list, which the clinic pages read, are open to a signed-in clinic user
without the shared token (``deps.open_to_clinic_users``); the rest is not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException

from dermsight import taxonomy
from dermsight.predict import Dermsight
from dermsight.web.deps import ModelDep, open_to_clinic_users
from dermsight.web.routes import API
from dermsight.web.schemas import ClassOut, PlotsResponse, error_responses

router = APIRouter(prefix=API, tags=["model"])

PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def plots_dir(model: Dermsight) -> Path:
    return model.bundle.path / "plots"


def plot_names(model: Dermsight) -> list[str]:
    d = plots_dir(model)
    return sorted(p.stem for p in d.glob("*.png")) if d.is_dir() else []


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
    response_class=HTMLResponse, responses=error_responses(404),
)
async def model_report(model: ModelDep) -> Response:
    report = model.bundle.report_path
    if report is None:
        raise HTTPException(404, "this model bundle has no evaluation report")
    return FileResponse(report, media_type="text/html; charset=utf-8")


@router.get("/model/plots", response_model=PlotsResponse,
            summary="Names of the evaluation plots in the bundle")
async def model_plots(model: ModelDep) -> dict[str, Any]:
    return {"plots": plot_names(model)}


@router.get(
    "/model/plots/{name}.png", summary="One evaluation plot (PNG)",
    response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "the plot"},
        **error_responses(404),
    },
)
async def model_plot(name: str, model: ModelDep) -> Response:
    d = plots_dir(model)
    path = d / f"{name}.png"
    if not PLOT_NAME.match(name) or not path.is_file() or path.resolve().parent != d.resolve():
        raise HTTPException(404, f"no plot named {name[:60]!r} in this model bundle")
    return FileResponse(path, media_type="image/png",
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
