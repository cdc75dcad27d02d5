"""The emulator's HTTP plumbing and serving: paths, methods, body caps, lifespan, loopback."""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk.emulator import EmulatorApp, run, serve
from flux_sdk.emulator._request import MAX_BODY_BYTES

from ._emulator import API_KEY, BEARER, DATAOORTS, SMALL, client, dataoorts_body, decode

pytestmark = pytest.mark.anyio


# HTTP plumbing


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v2",
        "/api/v1/",
        "/environments/bad.name/predict",
        "/deployment//predict",
        "/production/predict/x",
        "/production/async_predict",
    ],
)
async def test_unknown_path_is_404(path: str) -> None:
    """A path neither provider serves is a 404, so a wrong base URL fails loudly."""
    async with client() as http:
        response = await http.post(path, headers=BEARER, json={})
    assert response.status_code == 404
    assert response.json()["errors"] == [{"code": 7000, "message": "No route for that URI"}]
    assert response.headers["x-request-id"].startswith("emu-")


@pytest.mark.parametrize(
    ("path", "key"), [(DATAOORTS, "errors"), ("/development/predict", "error")]
)
async def test_wrong_method_is_405(path: str, key: str) -> None:
    """Only POST is served; other methods get 405, an Allow header and the provider's body."""
    async with client() as http:
        response = await http.get(path, headers=BEARER)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert key in response.json()


class ChunkedBody(httpx.AsyncByteStream):
    """A JSON body padded with spaces to ``size`` bytes, sent chunked in ``parts`` pieces.

    A plain iterator rather than an async generator: the app stops reading a body that is
    too large, and an abandoned async generator would warn when trio collects it.
    """

    def __init__(self, size: int, parts: int = 4) -> None:
        head = json.dumps({"prompt": "a red fox", **SMALL}).encode()
        whole = head + b" " * (size - len(head))
        step = -(-size // parts)
        self.pieces = [whole[start : start + step] for start in range(0, size, step)]
        self.pulled = 0

    def __aiter__(self) -> ChunkedBody:
        return self

    async def __anext__(self) -> bytes:
        if self.pulled == len(self.pieces):
            raise StopAsyncIteration
        self.pulled += 1
        return self.pieces[self.pulled - 1]


async def post_chunked(body: ChunkedBody) -> httpx.Response:
    async with client() as http:
        request = httpx.Request(
            "POST", "http://127.0.0.1/production/predict", headers=API_KEY, stream=body
        )
        assert "content-length" not in request.headers
        response = await http.send(request)
        await response.aread()
        return response


async def test_body_over_one_mebibyte_is_413() -> None:
    """A body over 1 MiB is refused with 413 when it declares its length."""
    body = b"{" + b" " * (MAX_BODY_BYTES - 1) + b"}"
    async with client() as http:
        response = await http.post("/production/predict", headers=API_KEY, content=body)
    assert response.status_code == 413
    assert "error" in response.json()


async def test_chunked_body_over_one_mebibyte_is_413() -> None:
    """A chunked body, which declares no length, is refused with 413 once it passes 1 MiB."""
    one_byte_over = await post_chunked(ChunkedBody(MAX_BODY_BYTES + 1))
    assert one_byte_over.status_code == 413
    assert "error" in one_byte_over.json()
    twice = ChunkedBody(2 * MAX_BODY_BYTES, parts=8)
    assert (await post_chunked(twice)).status_code == 413
    assert twice.pulled == 5  # refused as soon as it passed the limit, the rest left unread


async def test_body_of_exactly_one_mebibyte_in_many_messages_is_read_whole() -> None:
    """A body split over several ASGI messages is joined; 1 MiB exactly is still accepted."""
    body = ChunkedBody(MAX_BODY_BYTES)
    response = await post_chunked(body)
    assert response.status_code == 200, response.text
    assert body.pulled == 4
    assert decode(base64.b64decode(response.json()["data"])).size == (64, 64)


async def test_image_bytes_pads_every_provider_response() -> None:
    """image_bytes makes every image exactly that long, and it still decodes."""
    app = EmulatorApp(image_bytes=300_000, default_size=64, dataoorts_response="raw")
    async with client(app) as http:
        raw = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
        baseten = await http.post("/production/predict", headers=API_KEY, json={"prompt": "ab"})
    baseten_png = base64.b64decode(baseten.json()["data"])
    for png in (raw.content, baseten_png):
        assert len(png) == 300_000
        assert decode(png).size == (64, 64)


async def test_requests_seen_counts_every_request_and_ids_follow_it() -> None:
    """Tests can count the calls that reached the service, errors included."""
    app = EmulatorApp(default_size=64)
    async with client(app) as http:
        first = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
        await http.post("/nowhere")
        third = await http.post("/production/predict", json={"prompt": "ab"})
    assert app.requests_seen == 3
    assert (first.headers["x-request-id"], third.headers["x-request-id"]) == (
        "emu-000001",
        "emu-000003",
    )


async def test_lifespan_startup_and_shutdown_complete() -> None:
    """The app answers the lifespan protocol, so servers' default lifespan=auto starts it."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    with anyio.fail_after(5):
        await EmulatorApp()({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_client_that_leaves_mid_body_gets_no_response() -> None:
    """A disconnect while the body is read ends the request quietly, as a server expects."""
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1", "headers": []}
    await EmulatorApp()(scope, receive, send)
    assert (sent, incoming) == ([], [])


# Serving


async def test_serves_over_real_loopback_with_uvicorn() -> None:
    """The app runs under a real uvicorn server, so any HTTP client can reach it."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = EmulatorApp(default_size=64)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await anyio.sleep(0.005)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
    finally:
        server.should_exit = True
        await anyio.to_thread.run_sync(thread.join, 10)
    assert not thread.is_alive()
    assert response.status_code == 200
    assert decode(base64.b64decode(response.json()["result"]["image_base64"])).size == (64, 64)
    assert app.requests_seen == 1


ALL_INTERFACES = "0.0.0.0"


@pytest.mark.parametrize("host", [ALL_INTERFACES, "::", "192.168.1.10", "example.com"])
async def test_serving_refuses_non_loopback_hosts(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with a published key must never listen beyond this machine."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # were the check missing: fail, not serve
    with pytest.raises(ValueError, match="loopback"):
        await serve(host=host)
    with pytest.raises(ValueError, match="loopback"):
        run(host=host)


async def test_serving_without_uvicorn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without uvicorn installed the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(RuntimeError, match=r"flux-sdk\[emulator\]"):
        await serve()


async def test_importing_the_emulator_loads_only_the_standard_library() -> None:
    """The emulator imports nothing beyond the standard library and what a client already
    loads, so it adds no dependency."""
    code = (
        "import sys; from flux_sdk import FluxClient; before = set(sys.modules); "
        "import flux_sdk.emulator; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'flux_sdk'}))"
    )
    result = await anyio.run_process([sys.executable, "-c", code])
    assert result.stdout.decode().strip() == "[]"
