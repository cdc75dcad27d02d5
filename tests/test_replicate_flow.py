"""A Replicate prediction's whole life with respx: create, waits, polls, cancel, download."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import respx

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    FluxClient,
    FluxEvent,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    Replicate,
    RequestTimeout,
    Retry,
    ServerError,
)

from ._images import image_bytes
from ._replicate import CANCEL, CREATE, GET, KEY, prediction
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

OUT = "https://replicate.delivery/xezq/abc/out-0.webp"
WEBP = image_bytes("WEBP", size=3)


def answer(status: str, code: int = 200, **more: Any) -> httpx.Response:
    return httpx.Response(code, json=prediction(status, **more))


DONE = answer("succeeded", output=[OUT])


# The flow, with respx


def host(
    router: respx.MockRouter,
    *,
    create: list[Any] | None = None,
    polls: list[Any] | None = None,
    download: list[Any] | None = None,
) -> dict[str, respx.Route]:
    image = httpx.Response(200, content=WEBP, headers={"content-type": "image/webp"})
    return {
        "create": router.post(CREATE).mock(side_effect=create or [answer("starting", 201)]),
        "poll": router.get(GET).mock(side_effect=polls or [DONE]),
        "download": router.get(OUT).mock(side_effect=download or [image]),
        "cancel": router.post(CANCEL).mock(return_value=answer("canceled")),
    }


def client(clock: Sleeps, **options: Any) -> FluxClient:
    return FluxClient(
        Replicate(KEY, poll_interval=0.25), max_retries=Retry(3, sleep=clock), **options
    )


async def test_a_prediction_runs_create_polls_and_download(router: respx.MockRouter) -> None:
    routes = host(router, polls=[answer("starting"), answer("processing"), DONE])
    clock = Sleeps()
    events: list[FluxEvent] = []
    async with client(clock, on_event=events.append) as flux:
        image = await flux.generate("a fox", seed=3)
    assert (image.data, image.media_type, image.request_id) == (WEBP, "image/webp", "p1")
    assert [r.call_count for r in routes.values()] == [1, 3, 1, 0]
    assert clock.delays == [0.25, 0.25, 0.25]
    assert [e.step for e in events if e.kind == "attempt"] == [
        "submit",
        "poll",
        "poll",
        "poll",
        "download",
    ]
    assert routes["poll"].calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in routes["download"].calls.last.request.headers


async def test_a_create_that_waited_to_the_end_needs_no_poll(router: respx.MockRouter) -> None:
    """With Prefer: wait the create may answer a finished prediction: straight to the image."""
    output = {"output": OUT}  # a single URL rather than a list is read too
    routes = host(router, create=[answer("succeeded", 201, **output)])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert (routes["poll"].call_count, routes["download"].call_count) == (0, 1)


async def test_a_processing_answer_that_holds_the_output_is_done(
    router: respx.MockRouter,
) -> None:
    """Replicate's Prefer: wait may answer `processing` with the output already in it;
    the official run() returns it then, so no poll is sent (each poll costs a request)."""
    routes = host(router, create=[answer("processing", 201, output=[OUT])])
    clock = Sleeps()
    async with client(clock) as flux:
        image = await flux.generate("a fox")
    assert (image.data, image.request_id) == (WEBP, "p1")
    assert [r.call_count for r in routes.values()] == [1, 0, 1, 0]
    assert clock.delays == []


def data_uri(data: bytes, media_type: str = "image/webp") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "string"])
async def test_a_data_uri_output_is_decoded_not_downloaded(
    router: respx.MockRouter, as_list: bool
) -> None:
    """replicate-python decodes an output that is a data: URI (its helpers.py); so does
    flux_sdk, with the same checks as fal's data URIs, and fetches nothing."""
    uri = data_uri(WEBP)
    done = answer("succeeded", 201, output=[uri] if as_list else uri)
    routes = host(router, create=[done])
    async with client(Sleeps()) as flux:
        image = await flux.generate("a fox")
    assert (image.data, image.media_type, image.request_id) == (WEBP, "image/webp", "p1")
    assert [r.call_count for r in routes.values()] == [1, 0, 0, 0]


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ("data:image/png;base64,@@not base64@@", "not valid base64"),
        (data_uri(b"<html>an error page</html>", "image/png"), "image"),
    ],
    ids=["bad-base64", "not-an-image"],
)
async def test_a_bad_data_uri_output_is_an_invalid_response(
    router: respx.MockRouter, output: str, match: str
) -> None:
    host(router, create=[answer("succeeded", 201, output=[output])])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match=match) as caught:
            await flux.generate("a fox")
    assert caught.value.provider == "replicate"


async def test_json_calls_accept_json_and_the_download_accepts_images(
    router: respx.MockRouter,
) -> None:
    routes = host(router, polls=[DONE])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    for name in ("create", "poll"):
        assert routes[name].calls.last.request.headers["accept"] == "application/json"
    assert routes["download"].calls.last.request.headers["accept"].startswith("image/")


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500), httpx.Response(429, json={"detail": "throttled"}), httpx.ReadError("x")],
    ids=["500", "429", "reset"],
)
async def test_failed_polls_are_retried_without_a_second_create(
    router: respx.MockRouter, failure: Any
) -> None:
    routes = host(router, polls=[failure, failure, DONE])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert (routes["create"].call_count, routes["poll"].call_count) == (1, 3)


async def test_a_throttled_create_is_sent_again_but_a_500_is_not(router: respx.MockRouter) -> None:
    throttled = httpx.Response(
        429, json={"detail": "Request was throttled."}, headers={"retry-after": "0"}
    )
    routes = host(router, create=[throttled, answer("succeeded", 201, output=[OUT])])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert routes["create"].call_count == 2
    routes["create"].mock(side_effect=[httpx.Response(500), answer("starting", 201)])
    async with client(Sleeps()) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a fox")
    assert routes["create"].call_count == 3  # one more: the 500 may hide a created prediction


@pytest.mark.parametrize(
    ("last", "match"),
    [
        (answer("failed", error="All generated images contained NSFW content."), "failed: All"),
        (answer("canceled"), "canceled on Replicate"),
        (answer("aborted"), "not charged"),
        (answer("succeeded", output=[]), "safety checker"),
        (answer("exploded"), "'exploded'"),
    ],
)
async def test_a_prediction_that_ended_without_an_image_is_not_created_again(
    router: respx.MockRouter, last: httpx.Response, match: str
) -> None:
    routes = host(router, polls=[answer("processing"), last])
    async with client(Sleeps()) as flux:
        with pytest.raises(ProviderError, match=match) as caught:
            await flux.generate("a fox")
    assert not caught.value.retryable
    assert caught.value.request_id == "p1"
    assert (routes["create"].call_count, routes["download"].call_count) == (1, 0)


@pytest.mark.parametrize(
    ("code", "body", "error", "match"),
    [
        (
            401,
            {"title": "Unauthenticated", "detail": "You did not pass a valid token"},
            AuthenticationError,
            "valid token",
        ),
        (
            422,
            {"title": "Input validation failed", "detail": "input.seed: bad"},
            BadRequestError,
            "input.seed",
        ),
        (429, {"detail": "Request was throttled."}, RateLimitError, "throttled"),
    ],
)
async def test_create_errors_are_decoded(
    router: respx.MockRouter, code: int, body: dict[str, Any], error: type[Exception], match: str
) -> None:
    host(router, create=[httpx.Response(code, json=body)] * 4)
    async with client(Sleeps()) as flux:
        with pytest.raises(error, match=match):
            await flux.generate("a fox")


async def test_a_status_url_on_another_host_gets_no_token(router: respx.MockRouter) -> None:
    """urls.get elsewhere than the API is refused: the token is sent to the API only."""
    elsewhere = {"id": "p1", "status": "starting", "urls": {"get": "https://evil.example/p1"}}
    host(router, create=[httpx.Response(201, json=elsewhere)])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match="sends your token nowhere else"):
            await flux.generate("a fox")


async def test_a_body_of_the_wrong_shape_is_an_invalid_response(router: respx.MockRouter) -> None:
    host(router, create=[httpx.Response(201, json={"status": "starting"})])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match="unexpected shape"):
            await flux.generate("a fox")


async def test_the_deadline_cancels_the_prediction(router: respx.MockRouter) -> None:
    routes = host(router, polls=[answer("processing")] * 10_000)
    flux = FluxClient(Replicate(KEY, poll_interval=0.01), deadline=0.2)
    async with flux:
        with pytest.raises(RequestTimeout):
            await flux.generate("a fox")
    assert (routes["create"].call_count, routes["cancel"].call_count) == (1, 1)
    assert routes["cancel"].calls.last.request.headers["authorization"] == f"Bearer {KEY}"
