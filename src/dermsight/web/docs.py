"""``/api/v1/docs``: Swagger UI served from the package (no CDN), under a script-src 'self' CSP.

The assets are the vendored ``swagger_ui/`` files (``swagger-ui-dist`` 5.35.0, Apache-2.0);
the page starts the UI with ``docs-init.js`` instead of an inline script.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

SWAGGER_UI_VERSION = "5.35.0"
ASSETS_DIR = Path(__file__).resolve().parent / "swagger_ui"
#: the files the docs page may load, with their media types
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs-init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/docs-init.js"></script>
</body>
</html>
"""


def docs_router(docs_url: str, openapi_url: str, title: str) -> APIRouter:
    """The docs page at ``docs_url`` and its assets at ``docs_url/assets/<file>``."""
    router = APIRouter(include_in_schema=False)
    assets_url = f"{docs_url}/assets"
    page = PAGE.format(title=html.escape(title), assets=html.escape(assets_url),
                       openapi_url=html.escape(openapi_url))

    @router.get(docs_url)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get(f"{assets_url}/{{name}}")
    async def docs_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no docs asset named {name[:60]!r}")
        return FileResponse(ASSETS_DIR / name, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400"})

    return router
