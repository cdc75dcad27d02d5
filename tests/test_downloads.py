"""Downloads of URLs a host answered with: https only, no private networks, no key sent
elsewhere, bounded redirects each checked again."""

from __future__ import annotations

import socket
from collections.abc import Generator
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    FluxClient,
    GeneratedImage,
    GenerateRequest,
    InvalidResponseError,
    ParamRules,
    Retry,
)
from flux_sdk._transport import _downloads as _downloads
from flux_sdk.providers import Flow, Step, raise_for_status

from ._images import image_bytes

pytestmark = pytest.mark.anyio

PNG = image_bytes(size=2)


class UrlHost:
    """Answers the submit with a URL, then downloads it with the key attached."""

    name = "url-host"
    rules = ParamRules()

    def __init__(self, base: str = "https://api.example") -> None:
        self.base = base

    def generate_flow(self, request: GenerateRequest) -> Flow:
        submit = httpx.Request("POST", f"{self.base}/run", headers={"Authorization": "Key sk-u"})
        url = yield Step(submit, lambda r: r.json()["url"], kind="submit")
        fetch = httpx.Request("GET", url, headers={"Authorization": "Key sk-u"})
        data = yield Step(fetch, self._body, kind="download")
        return GeneratedImage.from_data(data, provider=self.name, request=request)

    def _body(self, response: httpx.Response) -> bytes:
        raise_for_status(response, provider=self.name)
        return response.content


PUBLIC = "93.184.216.34"


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def answer(router: respx.MockRouter, url: str, base: str = "https://api.example") -> None:
    router.post(f"{base}/run").respond(200, json={"url": url})


def client(host: UrlHost | None = None) -> FluxClient:
    return FluxClient(host or UrlHost(), max_retries=Retry(2, sleep=_no_sleep))


async def _no_sleep(seconds: float) -> None:
    return None


async def test_the_key_is_not_sent_to_the_cdn(router: respx.MockRouter) -> None:
    """A download from another host goes without the provider's key."""
    answer(router, "https://cdn.example/a.png")
    cdn = router.get("https://cdn.example/a.png").respond(200, content=PNG)
    async with client() as flux:
        image = await flux.generate("a cat")
    assert image.data == PNG
    assert "authorization" not in cdn.calls.last.request.headers


async def test_the_key_is_kept_for_the_providers_own_host(router: respx.MockRouter) -> None:
    """A download from the provider's own host keeps its credentials."""
    answer(router, "https://api.example/files/a.png")
    own = router.get("https://api.example/files/a.png").respond(200, content=PNG)
    async with client() as flux:
        await flux.generate("a cat")
    assert own.calls.last.request.headers["authorization"] == "Key sk-u"


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example/a.png",
        "https://127.0.0.1/a.png",
        "https://localhost/a.png",
        "https://10.0.0.8/a.png",
        "https://192.168.1.4/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a.png",
        "https://[fd00::1]/a.png",
        "file:///etc/passwd",
    ],
)
async def test_unsafe_download_urls_are_never_fetched(router: respx.MockRouter, url: str) -> None:
    """A URL that is not public https is refused before anything is sent to it."""
    answer(router, url)
    anything = router.route(method="GET").respond(200, content=PNG)
    async with client() as flux:
        with pytest.raises(InvalidResponseError, match="will not fetch") as caught:
            await flux.generate("a cat")
    assert anything.call_count == 0
    assert not caught.value.retryable


async def test_redirects_are_followed_and_each_is_checked(router: respx.MockRouter) -> None:
    """A CDN may redirect; every hop must pass the same rules, and gets no key."""
    answer(router, "https://cdn.example/a.png")
    router.get("https://cdn.example/a.png").respond(302, headers={"location": "/b.png"})
    final = router.get("https://cdn.example/b.png").respond(200, content=PNG)
    async with client() as flux:
        assert (await flux.generate("a cat")).data == PNG
    assert "authorization" not in final.calls.last.request.headers

    router.get("https://cdn.example/c.png").respond(
        302, headers={"location": "http://cdn.example/plain.png"}
    )
    answer(router, "https://cdn.example/c.png")
    plain = router.get("http://cdn.example/plain.png").respond(200, content=PNG)
    async with client() as flux:
        with pytest.raises(InvalidResponseError, match="https"):
            await flux.generate("a cat")
    assert plain.call_count == 0


async def test_a_redirect_loop_ends(router: respx.MockRouter) -> None:
    """At most five redirects are followed."""
    answer(router, "https://cdn.example/loop")
    loop = router.get("https://cdn.example/loop").respond(
        302, headers={"location": "https://cdn.example/loop"}
    )
    async with client() as flux:
        with pytest.raises(InvalidResponseError, match="more than 5"):
            await flux.generate("a cat")
    assert loop.call_count == 6


async def test_a_provider_on_loopback_may_download_from_loopback(
    router: respx.MockRouter,
) -> None:
    """The emulator serves its own result URLs over plain http on loopback."""
    base = "http://127.0.0.1:9999"
    answer(router, f"{base}/files/a.png", base=base)
    router.get(f"{base}/files/a.png").respond(200, content=PNG)
    async with client(UrlHost(base)) as flux:
        assert (await flux.generate("a cat")).data == PNG


@pytest.mark.parametrize(
    "url",
    [
        "https://127.1/a.png",
        "https://2130706433/a.png",
        "https://0x7f.1/a.png",
        "https://0/a.png",
        "https://169.254.43518/latest/meta-data",
        "https://[::ffff:127.0.0.1]/a.png",
        "https://224.0.0.1/a.png",
    ],
)
async def test_other_spellings_of_internal_addresses_are_refused(
    router: respx.MockRouter, url: str
) -> None:
    """The guard decides on the address the resolver makes of the host, not its text."""
    answer(router, url)
    anything = router.route(method="GET").respond(200, content=PNG)
    async with client() as flux:
        with pytest.raises(InvalidResponseError, match="private or local network"):
            await flux.generate("a cat")
    assert anything.call_count == 0


async def test_a_name_that_resolves_inside_is_refused(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def rebinding(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(_downloads, "_lookup", rebinding)
    answer(router, "https://cdn.example/a.png")
    anything = router.route(method="GET").respond(200, content=PNG)
    async with client() as flux:
        with pytest.raises(InvalidResponseError, match=r"resolves to 10\.0\.0\.7"):
            await flux.generate("a cat")
    assert anything.call_count == 0


async def test_the_download_goes_to_the_address_checked(
    router: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lookup: the request is sent to the checked address, named for TLS and Host."""
    answers = iter([PUBLIC, "127.0.0.1"])  # a rebinding DNS's second answer is never asked

    async def rebinding(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(_downloads, "_lookup", rebinding)
    answer(router, "https://cdn.example/a.png")
    pinned = router.get(f"https://{PUBLIC}/a.png").respond(200, content=PNG)
    async with client() as flux:
        image = await flux.generate("a cat")
    assert image.data == PNG
    sent = pinned.calls.last.request
    assert sent.headers["host"] == "cdn.example"
    assert sent.extensions["sni_hostname"] == "cdn.example"
