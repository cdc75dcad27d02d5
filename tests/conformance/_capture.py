"""One loopback server for both clients: flux_sdk's emulator, recording every request.

Each request is kept as the facets the suite compares (method, decoded path, query,
auth scheme, content type, JSON body as keys and value types), then handed to the
emulator, so the client that sent it also gets a real answer. ``serve_tls`` serves it
over HTTPS with a certificate made for the test (fal-client builds only https URLs).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flux_sdk.emulator import EmulatorApp
from tests._server import serve as serve_app


@dataclass(frozen=True)
class Seen:
    """One request, as the suite compares it."""

    method: str
    path: str
    query: dict[str, list[str]]
    auth_scheme: str | None
    content_type: str | None
    body: dict[str, Any] | None  # key -> type name (nested objects as dicts)

    def facets(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "auth_scheme": self.auth_scheme,
            "content_type": self.content_type,
            "body": self.body,
        }


def shape(value: Any) -> Any:
    """A JSON value's keys and value types: objects recurse, the rest are type names."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "number"
    return type(value).__name__


class Recorder:
    """An ASGI app: records each HTTP request, then lets ``app`` answer it."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()

    def take(self) -> list[Seen]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self._record(scope, body)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _record(self, scope: Any, body: bytes) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        media = headers.get("content-type")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        seen = Seen(
            method=scope["method"],
            path=urllib.parse.unquote(scope["path"]),
            query=query,
            auth_scheme=auth.split()[0].lower() if auth else None,
            content_type=media.split(";")[0].strip().lower() if media else None,
            body=shape(parsed) if isinstance(parsed, dict) else None,
        )
        with self._lock:
            self.seen.append(seen)


@contextmanager
def serve(app: Any, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """``app`` under uvicorn in a thread on a free loopback port; its base URL."""
    with serve_app(app, tls=tls, lifespan="off") as url:
        yield url


def throwaway_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA made now, and a certificate it signed for 127.0.0.1 and localhost:
    (CA file to trust, server certificate, server key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("flux_sdk conformance CA"))
        .issuer_name(name("flux_sdk conformance CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def trusting(ca: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only the throwaway CA."""
    return ssl.create_default_context(cafile=str(ca))
