"""Where requests may go: no redirect or image URL is followed, plain http only to loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import (
    Baseten,
    ConfigError,
    Dataoorts,
    FluxClient,
    FluxError,
    GenerateRequest,
    ProviderError,
    Retry,
)

from ._safety import PNG
from ._server import serve

KEY = "sk-safety-test-51b0e2c9d7"


class Target:
    """An ASGI app that only counts the requests it gets, and the credentials in them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        with self._lock:
            self.requests.append((scope["path"], authorization))
        headers = [(b"content-type", b"image/png")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": PNG})


async def _lifespan(receive: Any, send: Any) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def redirector(target_url: str) -> Callable[..., Any]:
    """An app answering ``/<status>/...`` with that redirect status to ``target_url``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        status = int(scope["path"].split("/")[1])
        location = f"{target_url}{scope['path']}".encode()
        headers = [(b"location", location), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return app


@pytest.fixture(scope="module")
def target() -> Iterator[tuple[Target, str]]:
    app = Target()
    with serve(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def redirecting_url(target: tuple[Target, str]) -> Iterator[str]:
    # "localhost" rather than 127.0.0.1: another host name and another port, so the
    # redirect crosses to a different origin in every way an origin can differ.
    with serve(redirector(target[1].replace("127.0.0.1", "localhost"))) as url:
        yield url


def _provider(kind: str, base: str) -> Dataoorts | Baseten:
    if kind == "dataoorts":
        return Dataoorts(KEY, base_url=f"{base}/api/v1")
    return Baseten(KEY, base_url=base)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", ["dataoorts", "baseten"])
@pytest.mark.parametrize("follow", [False, True], ids=["own-client", "client-following"])
async def test_a_redirect_to_another_host_is_never_followed(
    target: tuple[Target, str], redirecting_url: str, status: int, kind: str, follow: bool
) -> None:
    """A redirect ends the call with a clear FluxError; the other host never sees a request."""
    app, _ = target
    before = len(app.requests)
    provider = _provider(kind, f"{redirecting_url}/{status}")
    # Even an http client the caller set to follow redirects must not follow ours.
    http = httpx.AsyncClient(follow_redirects=True) if follow else None
    async with FluxClient(provider, max_retries=3, http_client=http) as client:
        with pytest.raises(ProviderError) as caught:
            await client.generate("a lighthouse")
    if http is not None:
        await http.aclose()
    assert len(app.requests) == before  # the key never reached the other origin
    error = caught.value
    assert error.status_code == status
    assert "never follows redirects" in str(error)
    assert error.retryable is False
    assert error.attempts == 1


# No provider fetches image URLs (see PROVIDERS.md: Dataoorts and Baseten return the
# image itself), so a URL where an image should be must never be fetched at all.

IMAGE_URL = "https://images.elsewhere.example/out/cat.png"
URL_ANSWERS = [
    {"result": {"image_url": IMAGE_URL}, "success": True, "errors": []},
    {"result": {"image_base64": IMAGE_URL}, "success": True},
    {"result": {"images": [{"url": IMAGE_URL}]}, "success": True},
    {"data": IMAGE_URL},
    {"output": IMAGE_URL},
    {"data": [{"url": IMAGE_URL}]},
    {"images": [{"url": IMAGE_URL, "content_type": "image/png"}]},
    {"output": [IMAGE_URL]},
]


@pytest.mark.anyio
@pytest.mark.parametrize("answer", URL_ANSWERS, ids=lambda answer: json.dumps(answer)[:40])
@pytest.mark.parametrize("kind", ["dataoorts", "baseten"])
async def test_an_image_url_in_the_answer_is_never_fetched(
    answer: dict[str, Any], kind: str
) -> None:
    """An answer that points at an image elsewhere is an error, and nothing else is requested."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "images.elsewhere.example":
            return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)
        return httpx.Response(200, json=answer)

    provider = _provider(kind, "https://provider.example")
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = Retry(2, sleep=_no_wait)  # each retry is a chance to fetch it: none may
    async with http, FluxClient(provider, max_retries=retry, http_client=http) as client:
        with pytest.raises(FluxError) as caught:
            await client.generate("a lighthouse")
    assert set(hosts) == {"provider.example"}
    assert len(hosts) == (3 if caught.value.retryable else 1)


async def _no_wait(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_a_redirect_answer_to_an_image_elsewhere_is_not_fetched() -> None:
    """A 302 pointing at a CDN image is refused, not followed, even through a mock transport."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"location": f"{IMAGE_URL}?sig={KEY}"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True)
    async with http, FluxClient(Dataoorts(KEY), http_client=http) as client:
        with pytest.raises(ProviderError, match="redirect") as caught:
            await client.generate("a lighthouse")
    assert hosts == ["cloud.dataoorts.com"]
    assert KEY not in str(caught.value)


# Plain http only to loopback, whatever the URL's spelling (test_dataoorts_request.py and
# test_baseten_request.py cover the plain cases)

REFUSED = [
    "http://127.0.0.1.nip.io",  # a public name that resolves to loopback
    "http://localhost.",  # the root-anchored form is left to https too
    "http://0x7f000001",  # numeric spellings of 127.0.0.1 that resolvers accept
    "http://2130706433",
    "http://127.1",
    "http://0177.0.0.1",
    "http://[::ffff:127.0.0.1]",  # IPv4-mapped: refused rather than second-guessed
    "http://0.0.0.0",
    "http://[::]",
    "http://127.0.0.1@evil.com",  # userinfo tricks, either way round
    "http://evil.com@127.0.0.1",
    "http://localhost:8000@evil.com",
    "http://evil.com\\@127.0.0.1",
    "http://evil.com%2f@127.0.0.1",
    "http://127.0.0.1%2fevil.com",
    "http://127.0.0.1 .evil.com",
    "http://127.0.0.1#@evil.com",
    "http://127.0.0.1?@evil.com",
    "http://127.0.0.1\tevil.com",
    "http://localhost%00.evil.com",
    "HTTP://evil.com",
    " http://127.0.0.1",
    "http:127.0.0.1",
    "http:///127.0.0.1",
    "//127.0.0.1",
    "ws://127.0.0.1",
]
ALLOWED = {
    "http://[::1]": "::1",
    "http://[0:0:0:0:0:0:0:1]:9": "0:0:0:0:0:0:0:1",
    "http://127.255.255.254": "127.255.255.254",
    "http://LOCALHOST:80": "localhost",
    "http://emulator.localhost:8787": "emulator.localhost",
    "http://127\u30020\u30020\u30021": "127.0.0.1",  # ideographic full stops, normalised
}


def _make(kind: str, url: str) -> Dataoorts | Baseten:
    return Dataoorts(KEY, base_url=url) if kind == "dataoorts" else Baseten(KEY, base_url=url)


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize("kind", ["dataoorts", "baseten"])
def test_odd_spellings_of_plain_http_or_credentials_are_refused(kind: str, url: str) -> None:
    """Plain http that is not unmistakably loopback, or a URL with userinfo, is a ConfigError."""
    with pytest.raises(ConfigError) as caught:
        _make(kind, url)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(("url", "host"), ALLOWED.items())
@pytest.mark.parametrize("kind", ["dataoorts", "baseten"])
def test_odd_spellings_of_loopback_are_allowed_and_sent_there(
    kind: str, url: str, host: str
) -> None:
    """Loopback written any standard way is allowed, and requests go to that very host."""
    request = _make(kind, url).build_request(GenerateRequest(prompt="a lighthouse"))
    assert request.url.scheme == "http"
    assert request.url.host == host


@pytest.mark.parametrize("url", ["https://xn--a.example", "http://xn--zz.localhost"])
def test_a_host_that_is_not_valid_idna_is_a_config_error(url: str) -> None:
    """A punycode host that cannot be decoded is refused as a setting, not a crash."""
    with pytest.raises(ConfigError, match="not a valid URL"):
        Dataoorts(api_key="sk-idna-test-key", base_url=url)
