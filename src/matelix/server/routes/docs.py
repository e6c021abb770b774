"""The API docs (`/docs` Swagger UI, `/redoc` ReDoc) with their scripts served from the installed
`fastapi-offline` package, never from a CDN: third-party code loaded on the lab's origin could read the API
key the dashboard keeps there. The pages hold no inline script, so they run under the strict CSP of
`server/browser_guard.py`."""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
DOCS_ASSETS_URL = "/docs/assets"
router = APIRouter(include_in_schema=False)

SWAGGER_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MaTeLiX Lab – API (Swagger UI)</title>
<link rel="icon" href="{DOCS_ASSETS_URL}/favicon.png">
<link rel="stylesheet" href="{DOCS_ASSETS_URL}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{DOCS_ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="/ui/docs/swagger-init.js"></script></body></html>
"""

REDOC_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MaTeLiX Lab – API (ReDoc)</title>
<link rel="icon" href="{DOCS_ASSETS_URL}/favicon.png"></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="{DOCS_ASSETS_URL}/redoc.standalone.js"></script></body></html>
"""


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE)


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE)
