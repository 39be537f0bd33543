"""The REST API on a real uvicorn server on 127.0.0.1 (a free port), in a thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from core.api import Context, create_app
from core.control import SYSTEM, ControlPlane


class ApiServer:
    """``with ApiServer(home) as api: api.client(token).get("/spend")``"""

    def __init__(self, home: Path, plane: ControlPlane | None = None, **ctx: object) -> None:
        self.home = home
        self.context = Context(home, plane=plane, **ctx)  # type: ignore[arg-type]
        if plane is None:
            self.context.plane.scrypt_n = 2**4  # test users: a cheap hash (the default is OWASP's)
        self.app = create_app(context=self.context)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = ""

    @property
    def plane(self) -> ControlPlane:
        return self.context.plane

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.context.close()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url + "/api/v1", headers=headers, timeout=60)

    def user(self, username: str, role: str) -> str:
        """A console user with ``role`` and a fresh API token for them."""
        self.plane.create_user(username, "password-123", role, SYSTEM)
        secret, _ = self.plane.create_api_token(username, SYSTEM, name="test")
        return secret
