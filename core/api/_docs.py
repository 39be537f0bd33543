"""Interactive docs at /api/docs: Swagger UI served from the ``swagger-ui-bundle`` package's
files (nothing is fetched from a CDN), pointed at the API's own OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Costline API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#ui", deepLinking: true,
  persistAuthorization: true}});
</script></body></html>
"""
FALLBACK = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Costline API</title></head>
<body><h1>Costline API</h1><p>The OpenAPI document is at <a href="{spec}">{spec}</a>.
Install <code>swagger-ui-bundle</code> for the interactive page.</p></body></html>
"""


def _assets() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").exists() else None


def routes(root: str, spec_url: str) -> list[BaseRoute]:
    assets = _assets()
    base = f"{root}/docs"

    async def page(request: Request) -> Response:
        # mounted (the gateway serves the API under /api with root ""), the links need the
        # mount's path, which Starlette passes as the root_path
        prefix = str(request.scope.get("root_path", "")).rstrip("/")
        spec = prefix + spec_url
        if assets is None:
            return HTMLResponse(FALLBACK.format(spec=spec))
        return HTMLResponse(PAGE.format(assets=f"{prefix}{base}/assets", spec=spec))

    out: list[BaseRoute] = [Route(base, page, methods=["GET"])]
    if assets is not None:
        out.append(Mount(f"{base}/assets", app=StaticFiles(directory=assets), name="api-docs"))
    return out
