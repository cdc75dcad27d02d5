"""FluxClient: validation before I/O, the middleware chain, sending, and error mapping."""

from __future__ import annotations

import base64
import gzip
import logging
from collections.abc import Generator
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    Call,
    CallNext,
    ConfigError,
    Dataoorts,
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

from ._images import image_bytes

pytestmark = pytest.mark.anyio

KEY = "sk-test-4f9a-very-secret"
URL = "https://cloud.dataoorts.com/api/v1"


PNG = image_bytes(color=(10, 200, 30))
OK_JSON = {"result": {"image_base64": base64.b64encode(PNG).decode()}, "success": True}


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _client(**kwargs: Any) -> FluxClient:
    """A Dataoorts client; one attempt per call unless a test asks for retries."""
    return FluxClient(Dataoorts(api_key=KEY), **{"max_retries": 0, **kwargs})


async def test_generate_sends_one_request_and_returns_the_image(
    router: respx.MockRouter,
) -> None:
    """One call is one POST; the image comes back with its timing and attempt count."""
    route = router.post(URL).respond(200, json=OK_JSON, headers={"x-request-id": "r-1"})
    async with _client() as client:
        image = await client.generate("a green square", seed=7, steps=2)
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["user-agent"].startswith("flux-sdk-python/")
    assert sent.content == (
        b'{"model":"black-forest-labs/flux-1-schnell",'
        b'"data":{"prompt":"a green square","steps":2,"seed":7}}'
    )
    assert image.data == PNG
    assert image.media_type == "image/png"
    assert (image.seed, image.attempts, image.request_id) == (7, 1, "r-1")
    assert image.elapsed >= 0


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("x",), {}),  # Dataoorts wants 2+ characters
        (("a cat",), {"steps": 9}),
        (("a cat",), {"seed": -1}),
        (("a cat",), {"width": 512}),
        ((b"bytes prompt",), {}),
        ((None,), {}),
    ],
)
async def test_invalid_input_never_reaches_the_network(
    router: respx.MockRouter, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Bad input raises InvalidRequestError and sends nothing (so costs nothing)."""
    route = router.post(URL).respond(200, json=OK_JSON)
    async with _client() as client:
        with pytest.raises(InvalidRequestError):
            await client.generate(*args, **kwargs)
    assert route.call_count == 0


@pytest.mark.parametrize("typo", [{"deadine": 5}, {"prompt": "dup"}, {"prompt2": "x"}])
async def test_an_unknown_keyword_is_a_type_error_and_sends_nothing(
    router: respx.MockRouter, typo: dict[str, Any]
) -> None:
    """A typo in a keyword is caught by Python itself, never sent to the provider."""
    route = router.post(URL).respond(200, json=OK_JSON)
    async with _client() as client:
        with pytest.raises(TypeError, match="unexpected keyword"):
            await client.generate("a cat", **typo)
    assert route.call_count == 0


async def test_extra_body_fields_are_sent_unchanged(router: respx.MockRouter) -> None:
    """Provider-specific fields go in extra_body, merged over a request's own."""
    route = router.post(URL).respond(200, json=OK_JSON)
    request = GenerateRequest(prompt="a cat", extra_body={"tag": "a", "note": "n"})
    async with _client() as client:
        await client.generate(request, extra_body={"tag": "b"})
    assert b'"data":{"prompt":"a cat","tag":"b","note":"n"}' in route.calls.last.request.content


async def test_keyword_arguments_override_a_request_object(router: respx.MockRouter) -> None:
    """generate(request, seed=...) sends the request with that field replaced."""
    route = router.post(URL).respond(200, json=OK_JSON)
    request = GenerateRequest(prompt="a cat", seed=1, steps=2)
    async with _client() as client:
        image = await client.generate(request, seed=5)
    assert b'"seed":5' in route.calls.last.request.content
    assert image.request == request.replace(seed=5)


async def test_owned_http_client_is_closed_and_borrowed_one_is_not() -> None:
    """FluxClient closes the pool it made, and leaves a caller's own client open."""
    owned = _client()
    owned._http._connections.take()  # as a request would
    await owned.aclose()
    assert owned._http._connections.clients
    assert all(http.is_closed for http in owned._http._connections.clients)
    await owned.aclose()  # twice is fine

    async with httpx.AsyncClient() as http:
        async with _client(http_client=http):
            pass
        assert not http.is_closed


async def test_closed_client_refuses_with_a_flux_error() -> None:
    """A call on a closed client is a ConfigError, not an httpx RuntimeError."""
    client = _client()
    await client.aclose()
    with pytest.raises(ConfigError, match="closed"):
        await client.generate("a cat")


async def test_borrowed_client_headers_are_sent_and_redirects_not_followed(
    router: respx.MockRouter,
) -> None:
    """A caller's default headers reach the provider; a redirect is never followed."""
    route = router.post(URL).respond(307, headers={"location": "https://evil.example/steal"})
    evil = router.post("https://evil.example/steal").respond(200, json=OK_JSON)
    http = httpx.AsyncClient(headers={"x-team": "art"}, follow_redirects=True)
    async with http, _client(http_client=http) as client:
        with pytest.raises(ProviderError, match="never follows redirects") as caught:
            await client.generate("a cat")
    assert route.calls.last.request.headers["x-team"] == "art"
    assert evil.call_count == 0
    assert caught.value.retryable is False


async def test_timeout_applies_to_each_request(router: respx.MockRouter) -> None:
    """The client's timeout is carried on every request it sends."""
    route = router.post(URL).respond(200, json=OK_JSON)
    async with _client(timeout=httpx.Timeout(7.0, connect=2.0)) as client:
        await client.generate("a cat")
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}


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


@pytest.mark.parametrize("kwargs", [{"max_concurrency": 0}, {"max_response_bytes": -1}])
async def test_nonsense_limits_are_refused(kwargs: dict[str, Any]) -> None:
    """Limits below one are a ConfigError at construction."""
    with pytest.raises(ConfigError):
        _client(**kwargs)


async def test_debug_log_names_the_attempt_but_never_the_key(
    router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logging shows provider, status and time, and no secret."""
    router.post(URL).respond(401, json={"errors": [{"code": 10000, "message": f"bad {KEY}"}]})
    caplog.set_level(logging.DEBUG)
    async with _client() as client:
        with pytest.raises(ProviderError) as caught:
            await client.generate("a cat")
    lines = [r.getMessage() for r in caplog.records if r.name == "flux_sdk"]
    assert len(lines) == 1  # one DEBUG line per attempt
    assert lines[0].startswith(
        "dataoorts attempt 1 (generate): AuthenticationError: dataoorts answered HTTP 401"
    )
    everything = " ".join(r.getMessage() for r in caplog.records)
    everything += str(caught.value) + repr(caught.value) + caught.value.body + repr(client)
    assert KEY not in everything
