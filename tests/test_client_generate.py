"""FluxClient.generate: validation before I/O, owned and borrowed HTTP clients, its log."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import ConfigError, GenerateRequest, InvalidRequestError, ProviderError

from ._client import KEY, OK_JSON, PNG, URL, _client

pytestmark = pytest.mark.anyio


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
