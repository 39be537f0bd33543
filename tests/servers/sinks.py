"""Local receivers for alert deliveries: a webhook HTTP server and an SMTP server
(aiosmtpd), both on 127.0.0.1 with free ports, recording what they got."""

from __future__ import annotations

import json
import ssl
import threading
import time
from email import message_from_bytes
from email.message import Message
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.servers.ports import free_port


class WebhookServer:
    """Records every JSON POST; ``fail_first`` answers that many requests with HTTP 500;
    ``delay_s``: each answer takes that long (a slow receiver); ``script``: the first
    requests get these (status, headers) answers instead (e.g. ``(429, {"Retry-After":
    "2"})``). ``hits``: the monotonic time of every request, answered or not."""

    def __init__(
        self,
        fail_first: int = 0,
        delay_s: float = 0.0,
        script: list[tuple[int, dict[str, str]]] | None = None,
    ) -> None:
        self.posts: list[dict[str, Any]] = []
        self.hits: list[float] = []
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.script = list(script or [])
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                headers: dict[str, str] = {}
                with outer._lock:
                    outer.hits.append(time.monotonic())
                    if outer.script:
                        status, headers = outer.script.pop(0)
                    elif outer.fail_first > 0:
                        outer.fail_first -= 1
                        status = 500
                    else:
                        outer.posts.append(json.loads(body))
                        status = 200
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def texts(self) -> list[str]:
        with self._lock:
            return [p["text"] for p in self.posts]


class SmtpServer:
    """aiosmtpd on loopback; ``messages`` are the parsed e-mails received. ``ssl_context``
    (a server context): implicit TLS, as a port-465 server. ``auth=True``: it offers AUTH
    even without TLS and records each (login, password) it is sent in ``logins``."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, auth: bool = False) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Message] = []
        self.envelopes: list[list[str]] = []  # the RCPT TO addresses of each message
        self.logins: list[tuple[str, str]] = []
        outer = self

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            outer.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=True)

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                outer.messages.append(message_from_bytes(envelope.content, policy=default))
                outer.envelopes.append(list(envelope.rcpt_tos))
                return "250 OK"

        self.port = free_port()
        extra: dict[str, Any] = (
            {"authenticator": authenticator, "auth_require_tls": False} if auth else {}
        )
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, ssl_context=ssl_context, **extra
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.controller.stop()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def self_signed(dir: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (its PEM file, a server context
    serving it)."""
    from datetime import UTC, datetime
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # A wide fixed validity: OpenSSL checks it against the system clock, which a test process
    # whose clock is moved (time-machine) does not share.
    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(since)
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = dir / "smtp-cert.pem"
    key_pem = dir / "smtp-key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    return cert_pem, server
