"""FluxClient's sending: transport failures, body caps, middleware and third-party providers."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    Call,
    CallNext,
    ConfigError,
    Flow,
    FluxClient,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ParamRules,
    ProviderError,
    RequestTimeout,
    Step,
    TransportError,
)

from ._client import OK_JSON, PNG, URL, _client

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("exc", "error", "retryable"),
    [
        (httpx.ConnectError("refused"), TransportError, True),
        (httpx.ReadError("reset by peer"), TransportError, True),
        (httpx.RemoteProtocolError("peer closed connection mid-body"), TransportError, True),
        (httpx.ReadTimeout("slow"), RequestTimeout, True),
        (httpx.ConnectTimeout("slow"), RequestTimeout, True),
        (httpx.PoolTimeout("busy"), RequestTimeout, True),
    ],
)
async def test_transport_failures_become_flux_errors(
    router: respx.MockRouter, exc: Exception, error: type[Exception], retryable: bool
) -> None:
    """No httpx exception reaches the caller; each maps to a retryable FluxError."""
    router.post(URL).mock(side_effect=exc)
    async with _client() as client:
        with pytest.raises(error) as caught:
            await client.generate("a cat")
    assert caught.value.retryable is retryable  # type: ignore[attr-defined]
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


async def test_declared_oversize_body_is_refused_unread(router: respx.MockRouter) -> None:
    """A Content-Length over the cap is refused at once, and not retried."""
    router.post(URL).respond(200, content=b"x" * 2048, headers={"content-type": "image/png"})
    async with _client(max_response_bytes=1024) as client:
        with pytest.raises(InvalidResponseError, match="max_response_bytes") as caught:
            await client.generate("a cat")
    assert caught.value.retryable is False


async def test_streamed_oversize_body_is_cut_off(router: respx.MockRouter) -> None:
    """A body with no length that runs past the cap is refused too."""

    async def chunks() -> Any:
        for _ in range(10):
            yield b"y" * 512

    router.post(URL).respond(200, content=chunks(), headers={"content-type": "image/png"})
    async with _client(max_response_bytes=1024) as client:
        with pytest.raises(InvalidResponseError, match="ran past 1024 bytes"):
            await client.generate("a cat")


async def test_gzip_body_is_capped_after_decompression(router: respx.MockRouter) -> None:
    """The cap counts decoded bytes, so a small gzip body cannot inflate past it."""
    bomb = gzip.compress(b"\x00" * 100_000)
    router.post(URL).respond(
        200, content=bomb, headers={"content-type": "image/png", "content-encoding": "gzip"}
    )
    async with _client(max_response_bytes=50_000) as client:
        with pytest.raises(InvalidResponseError, match="over the cap"):
            await client.generate("a cat")


async def test_gzip_image_is_decoded(router: respx.MockRouter) -> None:
    """A gzip-encoded JSON answer decodes to the same image."""
    body = gzip.compress(httpx.Response(200, json=OK_JSON).content)
    router.post(URL).respond(
        200,
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    async with _client() as client:
        image = await client.generate("a cat")
    assert image.data == PNG


async def test_huge_error_body_still_gives_a_short_provider_error(
    router: respx.MockRouter,
) -> None:
    """An error page of megabytes is read only in part and quoted briefly."""
    router.post(URL).respond(502, content=b"<html>" + b"z" * 3_000_000)
    async with _client() as client:
        with pytest.raises(ProviderError) as caught:
            await client.generate("a cat")
    assert caught.value.status_code == 502
    assert len(caught.value.body) <= 1000


async def test_middleware_runs_outermost_first_and_can_change_the_request(
    router: respx.MockRouter,
) -> None:
    """Middleware wraps the provider call in list order and may rewrite the request."""
    route = router.post(URL).respond(200, json=OK_JSON)
    seen: list[str] = []

    async def outer(call: Call, call_next: CallNext) -> GeneratedImage:
        seen.append("outer")
        call.request = call.request.replace(seed=99)
        return await call_next(call)

    async def inner(call: Call, call_next: CallNext) -> GeneratedImage:
        seen.append(f"inner seed={call.request.seed}")
        return await call_next(call)

    async with _client(middleware=[outer, inner]) as client:
        image = await client.generate("a cat", seed=1)
    assert seen == ["outer", "inner seed=99"]
    assert b'"seed":99' in route.calls.last.request.content
    assert image.seed == 99


async def test_middleware_rewrite_is_checked_against_the_rules(
    router: respx.MockRouter,
) -> None:
    """A middleware cannot smuggle a request the provider would refuse past validation."""
    route = router.post(URL).respond(200, json=OK_JSON)

    async def too_many_steps(call: Call, call_next: CallNext) -> GeneratedImage:
        call.request = call.request.replace(steps=50)
        return await call_next(call)

    async with _client(middleware=[too_many_steps]) as client:
        with pytest.raises(InvalidRequestError, match="steps"):
            await client.generate("a cat")
    assert route.call_count == 0


async def test_middleware_can_answer_without_the_network(router: respx.MockRouter) -> None:
    """A caching middleware can return an image and skip the provider entirely."""
    route = router.post(URL).respond(500)
    cached = GeneratedImage.from_data(PNG, provider="cache", request=GenerateRequest(prompt="ab"))

    async def cache(call: Call, call_next: CallNext) -> GeneratedImage:
        return cached

    async with _client(middleware=[cache]) as client:
        image = await client.generate("a cat")
    assert image.data == PNG
    assert route.call_count == 0


class EchoProvider:
    """A third-party provider: one class, two pure methods, no flux_sdk base class."""

    name = "echo"
    rules = ParamRules()

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        return httpx.Request("POST", "https://echo.example/gen", json={"p": request.prompt})

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        payload = response.json()
        return GeneratedImage.from_data(
            base64.b64decode(payload["img"]), provider=self.name, request=request
        )


async def test_third_party_provider_works_like_a_built_in_one(
    router: respx.MockRouter,
) -> None:
    """Any object with name, rules, build_request and parse_response is a provider."""
    router.post("https://echo.example/gen").respond(200, json={"img": OK_JSON["result"]})
    router.routes.clear()
    router.post("https://echo.example/gen").respond(
        200, json={"img": base64.b64encode(PNG).decode()}
    )
    async with FluxClient(EchoProvider()) as client:
        image = await client.generate("a cat")
    assert image.provider == "echo"
    assert image.data == PNG


async def test_a_provider_parsing_bug_still_surfaces_as_a_flux_error(
    router: respx.MockRouter,
) -> None:
    """A third-party provider that trips on a body raises InvalidResponseError, not KeyError."""
    router.post("https://echo.example/gen").respond(200, json={"unexpected": True})
    async with FluxClient(EchoProvider(), max_retries=0) as client:
        with pytest.raises(InvalidResponseError, match="KeyError") as caught:
            await client.generate("a cat")
    assert isinstance(caught.value.__cause__, KeyError)


class SubmitThenFetch:
    """A two-round-trip host (submit, then download), written as a sans-I/O flow."""

    name = "two-step"
    rules = ParamRules()

    def generate_flow(self, request: GenerateRequest) -> Flow:
        submit = httpx.Request("POST", "https://two.example/jobs", json={"p": 1})
        url = yield Step(submit, lambda response: response.json()["image_url"], kind="submit")
        data = yield Step(httpx.Request("GET", url), lambda r: r.content, kind="download")
        return GeneratedImage.from_data(data, provider=self.name, request=request)


async def test_flow_provider_is_driven_request_by_request(router: respx.MockRouter) -> None:
    """A provider that needs several round trips stays pure: the client does the I/O."""
    router.post("https://two.example/jobs").respond(
        200, json={"image_url": "https://two.example/img/1"}
    )
    fetch = router.get("https://two.example/img/1").respond(
        200, content=PNG, headers={"content-type": "image/png"}
    )
    async with FluxClient(SubmitThenFetch()) as client:
        image = await client.generate("a cat")
    assert image.data == PNG
    assert fetch.calls.last.request.headers["user-agent"].startswith("flux-sdk-python/")


async def test_an_object_that_is_not_a_provider_is_refused() -> None:
    """Passing something that cannot build requests fails at construction, clearly."""
    with pytest.raises(ConfigError, match="not a provider"):
        FluxClient(object())  # type: ignore[arg-type]
