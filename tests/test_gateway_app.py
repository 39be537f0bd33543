"""The gateway app in process: extra Starlette mounts are served beside the inference routes,
and an injected Router is used and closed (its usage log flushed) at shutdown."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from core.gateway import GatewayConfig, build_app
from core.router import Router
from core.usage import Reader
from tests.gateway_support import make_key


def test_mounts_are_served_and_the_router_is_closed_at_shutdown(costline_home: Path) -> None:
    secret = make_key(costline_home, "app")

    async def hello(request: object) -> JSONResponse:
        return JSONResponse({"api": "v1"})

    router = Router()
    app = build_app(
        GatewayConfig(), router=router, mounts=[Mount("/api/v1", routes=[Route("/hello", hello)])]
    )
    with TestClient(app) as client:
        assert client.get("/api/v1/hello").json() == {"api": "v1"}
        r = client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={"model": "dryrun-small", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200 and r.headers["x-costline-model"] == "dryrun-small"
        assert client.get("/no/such/path").status_code == 404
    assert app.router is None  # closed: the event is on disk without waiting for a flush
    (ev,) = Reader(costline_home).fetch()
    assert ev.request_id == r.headers["x-costline-request-id"] and ev.key == "app"


def test_the_management_api_is_mounted_by_default(costline_home: Path) -> None:
    app = build_app(GatewayConfig(), router=Router())
    with TestClient(app) as client:
        doc = client.get("/api/v1/openapi.json")
        assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.")
        assert client.get("/api/v1/budgets").status_code == 401  # its own tokens, not keys
        assert client.get("/health/live").json() == {"status": "ok"}
    assert app._on_close is None  # the API's context was closed with the gateway
