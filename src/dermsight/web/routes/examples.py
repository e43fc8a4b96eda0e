"""Real example images (one per class) shipped with the package, with their credits."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from dermsight import taxonomy
from dermsight.web.routes import API
from dermsight.web.schemas import ExampleOut, error_responses

router = APIRouter(prefix=API, tags=["examples"])


def examples_dir() -> Path:
    return Path(str(resources.files("dermsight") / "assets" / "examples"))


@cache
def load_examples() -> tuple[str, tuple[dict[str, Any], ...]]:
    """The description and the image entries of ``credits.json`` (read once)."""
    credits = examples_dir() / "credits.json"
    if not credits.exists():
        return "", ()
    doc = json.loads(credits.read_text(encoding="utf-8"))
    return str(doc.get("description", "")), tuple(doc.get("images", []))


@router.get("/examples", response_model=list[ExampleOut],
            summary="Real example images (one per class) with credits")
async def list_examples() -> list[dict[str, Any]]:
    return [
        {
            **{k: e.get(k) for k in ("file", "image_id", "age", "sex", "site", "dataset",
                                     "license", "license_url", "attribution")},
            "code": e["diagnosis"],
            "name": taxonomy.BY_CODE[e["diagnosis"]].name,
            "url": f"{API}/examples/{e['file']}",
            "credit": f"{e['image_id']}, {e['dataset']} ({e['license']})",
        }
        for e in load_examples()[1]
    ]


@router.get(
    "/examples/{file}", summary="One example image (JPEG)",
    response_class=Response, responses={
        200: {"content": {"image/jpeg": {}}, "description": "the image"},
        **error_responses(404),
    },
)
async def example_file(file: str) -> Response:
    if file not in {e["file"] for e in load_examples()[1]}:
        raise HTTPException(404, f"no example named {file[:60]!r}")
    return FileResponse(examples_dir() / file, media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=86400"})
