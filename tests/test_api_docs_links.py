"""/api/docs works wherever the API is served: alone (`costline api`) and mounted in the
gateway (README: "the management REST API under /api/v1 ... docs at /api/docs"). Mounted, the
page used to link /docs/assets/... and /v1/openapi.json, which the gateway does not serve: a
blank page."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.testclient import TestClient

from core.api import mounts


def test_every_link_of_the_gateways_docs_page_resolves() -> None:
    """(Served alone, tests/test_api_openapi.py checks the same page.)"""
    with TestClient(Starlette(routes=mounts())) as client:
        page = client.get("/api/docs")
        assert page.status_code == 200
        links = re.findall(r'(?:href|src|url): ?"([^"]+)"|(?:href|src)="([^"]+)"', page.text)
        urls = {a or b for a, b in links}
        assert "/api/v1/openapi.json" in urls
        assert any(u.endswith("swagger-ui-bundle.js") for u in urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
