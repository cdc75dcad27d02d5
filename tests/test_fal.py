"""The fal adapter: the exact requests of its flow, and how it reads every answer.

Flows are driven by hand here (each Step answered with a canned response), so these
tests are pure; tests/test_fal_emulator.py runs whole calls over loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

import flux_sdk
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    Fal,
    FluxError,
    FluxWarning,
    GeneratedImage,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    ServerError,
)
from flux_sdk.providers import Accepted, Ended, Step, Wait
from flux_sdk.providers._fal import POLLS

from ._images import image_bytes

KEY = "fal_SeCrEt-5e6f:7a8b9c0d1e2f3a4b"
RID = "80e732af-1111-4222-8333-944445555666"
SUBMIT = "https://queue.fal.run/fal-ai/flux/schnell"
JOB_URL = f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
JOB = {
    "status": "IN_QUEUE",
    "request_id": RID,
    "queue_position": 0,
    "response_url": JOB_URL,
    "status_url": f"{JOB_URL}/status",
    "cancel_url": f"{JOB_URL}/cancel",
}
CDN = "https://v3.fal.media/files/rabbit/a1b2c3.png"
PNG = image_bytes(size=4)
RESULT = {
    "images": [{"url": CDN, "width": 1024, "height": 1024, "content_type": "image/png"}],
    "timings": {"inference": 0.3},
    "seed": 42,
    "has_nsfw_concepts": [False],
    "prompt": "a red fox",
}
REQ = GenerateRequest(prompt="a red fox", seed=42)


def ok(body: Any = None, *, content: bytes | None = None, **headers: str) -> httpx.Response:
    if content is not None:
        return httpx.Response(200, content=content, headers=headers)
    return httpx.Response(200, json=body, headers=headers)


def status(state: str, **more: Any) -> httpx.Response:
    return ok({**JOB, "status": state, **more})


LIFE = [ok(JOB), status("IN_QUEUE"), status("IN_PROGRESS"), status("COMPLETED"), ok(RESULT)]


def drive(
    provider: Fal, answers: Iterable[httpx.Response], request: GenerateRequest = REQ
) -> tuple[GeneratedImage, list[Step | Wait | Accepted | Ended]]:
    """Run the flow, answering each Step with the next response; return the image and
    every item the flow yielded."""
    flow = provider.generate_flow(request)
    answers = iter(answers)
    seen: list[Step | Wait | Accepted | Ended] = []
    value: Any = None
    try:
        while True:
            item = flow.send(value)
            seen.append(item)
            value = None
            if isinstance(item, Step):
                response = next(answers)
                response.request = item.request
                value = item.parse(response)
    except StopIteration as done:
        return done.value, seen


def steps(seen: list[Any]) -> list[tuple[str, str, str]]:
    return [(s.kind, s.request.method, str(s.request.url)) for s in seen if isinstance(s, Step)]


def first(request: GenerateRequest = REQ, **options: Any) -> httpx.Request:
    item = next(Fal(KEY, **options).generate_flow(request))
    assert isinstance(item, Step)
    return item.request


def body_of(request: GenerateRequest, **options: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(first(request, **options).content)
    return loaded


# The request


def test_submit_is_a_keyed_post_to_the_queue() -> None:
    """Queue mode posts JSON to queue.fal.run/{model} with ``Authorization: Key``."""
    request = first()
    assert (request.method, str(request.url)) == ("POST", SUBMIT)
    assert request.headers["authorization"] == f"Key {KEY}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({"queue": False}, "https://fal.run/fal-ai/flux/schnell"),
        ({"model": "fal-ai/flux-1/schnell"}, "https://queue.fal.run/fal-ai/flux-1/schnell"),
        ({"base_url": "http://127.0.0.1:8787"}, "http://127.0.0.1:8787/fal-ai/flux/schnell"),
        (
            {"queue": False, "base_url": "https://proxy.example/fal/"},
            "https://proxy.example/fal/fal-ai/flux/schnell",
        ),
    ],
)
def test_urls(options: dict[str, Any], url: str) -> None:
    """The mode picks the host (fal.run or queue.fal.run); base_url replaces it."""
    assert str(first(**options).url) == url


def test_env_vars_supply_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("FAL_BASE_URL", "http://localhost:9000")
    request = next(Fal().generate_flow(REQ)).request  # type: ignore[union-attr]
    assert str(request.url) == "http://localhost:9000/fal-ai/flux/schnell"
    assert request.headers["authorization"] == f"Key {KEY}"


_SQUARE = {"width": 1024, "height": 1024}


@pytest.mark.parametrize(
    ("fields", "options", "expected"),
    [
        ({}, {}, {"image_size": _SQUARE}),
        ({"steps": 1, "seed": 0}, {}, {"image_size": _SQUARE, "num_inference_steps": 1, "seed": 0}),
        ({"steps": 12, "seed": 2**63 - 1}, {}, {"num_inference_steps": 12, "seed": 2**63 - 1}),
        ({"width": 768, "height": 1344}, {}, {"image_size": {"width": 768, "height": 1344}}),
        ({"width": 512}, {}, {"image_size": {"width": 512, "height": 1024}}),
        ({"height": 576}, {}, {"image_size": {"width": 1024, "height": 576}}),
        ({"extra_body": {"image_size": "landscape_4_3"}}, {}, {"image_size": "landscape_4_3"}),
        ({}, {"output_format": "png"}, {"image_size": _SQUARE, "output_format": "png"}),
        ({"extra_body": {"output_format": "jpeg"}}, {}, {"output_format": "jpeg"}),
        ({"extra_body": {"sync_mode": True, "num_images": 1}}, {}, {"sync_mode": True}),
        (
            {"extra_body": {"enable_safety_checker": False, "acceleration": "high"}},
            {},
            {"enable_safety_checker": False, "acceleration": "high"},
        ),
    ],
)
def test_body_is_exact(
    fields: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Each documented field as fal names it; a square 1024 unless a size is given."""
    body = body_of(GenerateRequest(prompt="a red fox", **fields), **options)
    assert body == {"prompt": "a red fox", "num_images": 1, "image_size": _SQUARE, **expected}
    assert first(GenerateRequest(prompt="a red fox", **fields), queue=False).content == (
        first(GenerateRequest(prompt="a red fox", **fields)).content
    )


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"steps": 12}, True),
        ({"steps": 13}, False),
        ({"width": 8192, "height": 1}, True),
        ({"extra_body": {"image_size": {"width": 14142, "height": 1}}}, True),
        ({"extra_body": {"image_size": {"width": 14143, "height": 1}}}, False),
    ],
)
def test_rules(fields: dict[str, Any], ok: bool) -> None:
    """Steps 1..12 and sides up to 14142 (flux_sdk's width and height stop at 8192),
    checked before sending, naming fal."""
    request = GenerateRequest(prompt="x", **fields)

    def check() -> None:
        Fal.rules.check(request, "fal")  # what the client checks before the flow starts
        first(request)

    if ok:
        check()
    else:
        with pytest.raises(InvalidRequestError, match="fal"):
            check()


@pytest.mark.parametrize(
    ("extra", "fields", "options", "match"),
    [
        ({"num_inference_steps": 4}, {}, {}, r"use steps="),
        ({"seed": 1}, {}, {}, r"use seed="),
        ({"prompt": "x"}, {}, {}, r"use prompt="),
        ({"num_images": 4}, {}, {}, r"one image per call"),
        ({"image_size": "square_hd"}, {"width": 512}, {}, r"not both"),
        ({"image_size": "huge"}, {}, {}, r"image_size must be one of square_hd"),
        ({"image_size": {"width": 0, "height": 5}}, {}, {}, r"width must be an integer"),
        ({"image_size": {"width": 5}}, {}, {}, r"preset name or"),
        ({"output_format": "webp"}, {}, {}, r"output_format must be one of jpeg, png"),
        ({"output_format": "png"}, {}, {"output_format": "png"}, r"set on Fal"),
        ({"sync_mode": "yes"}, {}, {}, r"sync_mode must be true or false"),
        ({"guidance_scale": 25}, {}, {}, r"guidance_scale must be a number from 1 to 20"),
        ({"acceleration": "max"}, {}, {}, r"acceleration must be one of"),
    ],
)
def test_extra_body_fal_would_refuse_fails_before_sending(
    extra: dict[str, Any], fields: dict[str, Any], options: dict[str, Any], match: str
) -> None:
    request = GenerateRequest(prompt="x", extra_body=extra, **fields)
    with pytest.raises(InvalidRequestError, match=match) as caught:
        first(request, **options)
    assert caught.value.provider == "fal"


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_names_the_env_var(key: str | None) -> None:
    with pytest.raises(ConfigError, match="FAL_KEY"):
        Fal(key)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"model": "schnell"}, "not an endpoint id"),
        ({"model": "fal-ai/../admin"}, "not an endpoint id"),
        ({"model": "fal-ai/flux schnell"}, "not an endpoint id"),
        ({"output_format": "webp"}, "'jpeg' or 'png'"),
        ({"base_url": "http://fal.example"}, "plain http"),
        ({"base_url": "https://fal.example/?x=1"}, "query string"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Fal(KEY, **options)


def test_the_key_is_in_no_repr() -> None:
    provider = Fal(KEY)
    assert KEY not in repr(provider)
    assert "Key" not in repr(provider)
    assert repr(provider) == "Fal(url='https://queue.fal.run/fal-ai/flux/schnell', mode='queue')"


def test_the_registry_knows_fal() -> None:
    assert "fal" in flux_sdk.provider_names()
    made = flux_sdk.provider("fal", api_key=KEY, queue=False)
    assert isinstance(made, Fal)
    assert not made.queue


# The queue's life, one answer at a time


def test_a_job_is_submitted_polled_fetched_and_downloaded() -> None:
    """Only the URLs fal returned are used; the key goes to fal, never to its CDN."""
    image, seen = drive(Fal(KEY), [*LIFE, ok(content=PNG)])
    assert steps(seen) == [
        ("submit", "POST", SUBMIT),
        ("poll", "GET", f"{JOB_URL}/status"),
        ("poll", "GET", f"{JOB_URL}/status"),
        ("poll", "GET", f"{JOB_URL}/status"),
        ("poll", "GET", JOB_URL),
        ("download", "GET", CDN),
    ]
    requests = [s.request for s in seen if isinstance(s, Step)]
    assert all(r.headers["authorization"] == f"Key {KEY}" for r in requests[:-1])
    assert "authorization" not in requests[-1].headers
    assert [w.seconds for w in seen if isinstance(w, Wait)] == [0.25, 0.1, 0.1]
    (accepted,) = [a for a in seen if isinstance(a, Accepted)]
    assert accepted.job_id == RID
    assert accepted.cancel is not None
    assert (accepted.cancel.method, str(accepted.cancel.url)) == ("PUT", f"{JOB_URL}/cancel")
    assert accepted.cancel.headers["authorization"] == f"Key {KEY}"
    assert (image.data, image.seed, image.request_id) == (PNG, 42, RID)


def test_polls_wait_at_most_one_second() -> None:
    polls = [status("IN_PROGRESS")] * (len(POLLS) + 2)
    _, seen = drive(Fal(KEY), [ok(JOB), *polls, status("COMPLETED"), ok(RESULT), ok(content=PNG)])
    assert [w.seconds for w in seen if isinstance(w, Wait)] == [*POLLS, 1.0, 1.0, 1.0]


def test_the_seed_fal_chose_is_reported() -> None:
    """Without a seed, fal picks one and returns it: the image keeps it."""
    request = GenerateRequest(prompt="a red fox")
    image, _ = drive(Fal(KEY), [*LIFE[:-1], ok({**RESULT, "seed": 977}), ok(content=PNG)], request)
    assert image.seed == 977


def test_a_data_uri_is_decoded_without_a_download() -> None:
    """With sync_mode fal answers data URIs; they are decoded, nothing more is fetched."""
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    result = {**RESULT, "images": [{"url": uri}]}
    image, seen = drive(Fal(KEY), [*LIFE[:-1], ok(result)])
    assert image.data == PNG
    assert [s.kind for s in seen if isinstance(s, Step)][-1] == "poll"


def test_sync_mode_posts_once_then_downloads() -> None:
    image, seen = drive(Fal(KEY, queue=False), [ok(RESULT), ok(content=PNG)])
    assert steps(seen) == [
        ("generate", "POST", "https://fal.run/fal-ai/flux/schnell"),
        ("download", "GET", CDN),
    ]
    assert not any(isinstance(s, (Wait, Accepted)) for s in seen)
    assert image.data == PNG


@pytest.mark.parametrize(
    "job",
    [
        {k: v for k, v in JOB.items() if k != "status_url"},
        {**JOB, "cancel_url": "https://evil.example/cancel"},
        {**JOB, "response_url": "http://queue.fal.run/fal-ai/flux/requests/x"},
        {**JOB, "status_url": "https://queue.fal.run:8443/fal-ai/flux/requests/x/status"},
    ],
    ids=["missing", "other-host", "other-scheme", "other-port"],
)
def test_job_urls_off_fal_are_never_followed(job: dict[str, Any]) -> None:
    """The key goes only where it was first sent; such a job cannot be followed."""
    with pytest.raises(InvalidResponseError, match="cannot be followed") as caught:
        drive(Fal(KEY), [ok(job)])
    assert not caught.value.retryable


def test_an_undocumented_status_is_a_bad_answer_polled_again() -> None:
    with pytest.raises(InvalidResponseError, match="'PAUSED'") as caught:
        drive(Fal(KEY), [ok(JOB), status("PAUSED")])
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("error_type", "retryable"),
    [
        ("runner_disconnected", True),
        ("request_timeout", True),
        ("bad_request", False),
        (None, False),
    ],
)
def test_a_completed_job_can_carry_an_error(error_type: str | None, retryable: bool) -> None:
    """COMPLETED is not success: its error ends the call; the result is not fetched."""
    answers = [ok(JOB), status("COMPLETED", error="Runner went away", error_type=error_type)]
    with pytest.raises(ProviderError, match=r"fal failed the job .*Runner went away") as caught:
        drive(Fal(KEY), answers)
    assert caught.value.retryable is retryable
    assert caught.value.request_id == RID


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ({"images": []}, "without images"),
        ({"images": [{"width": 1}]}, "without images"),
        ({"images": [{"url": "data:image/png;base64,iVBOR!!"}]}, "not valid base64"),
        ({"images": [{"url": "data:image/png;base64,aGVsbG8="}]}, "not a PNG, JPEG or WebP"),
        ({"images": "nope"}, "unexpected shape"),
    ],
)
def test_results_without_a_usable_image(result: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidResponseError, match=match):
        drive(Fal(KEY, queue=False), [ok(result)])


def test_an_nsfw_flag_warns() -> None:
    result = {**RESULT, "has_nsfw_concepts": [True]}
    with pytest.warns(FluxWarning, match="NSFW"):
        drive(Fal(KEY, queue=False), [ok(result), ok(content=PNG)])


# Errors


def refused(status: int, body: Any, **headers: str) -> FluxError:
    response = httpx.Response(status, json=body, headers=headers)
    with pytest.raises(FluxError) as caught:
        drive(Fal(KEY, queue=False), [response])
    return caught.value


def test_validation_errors_are_listed() -> None:
    detail = [
        {"loc": ["body", "num_inference_steps"], "msg": "Input should be <= 12", "type": "x"},
        {"loc": ["body", "image_size", "width"], "msg": "Input should be > 0", "type": "y"},
    ]
    error = refused(422, {"detail": detail}, **{"x-fal-request-id": "req-9"})
    assert isinstance(error, BadRequestError)
    assert not error.retryable
    assert str(error) == (
        "fal answered HTTP 422: num_inference_steps: Input should be <= 12; "
        "image_size.width: Input should be > 0 (request id req-9)"
    )
    assert error.request_id == "req-9"


def test_a_string_detail_and_its_error_type() -> None:
    error = refused(504, {"detail": "Request timed out", "error_type": "request_timeout"})
    assert isinstance(error, ServerError)
    assert error.retryable
    assert str(error) == "fal answered HTTP 504: Request timed out (request_timeout)"


def test_the_error_type_header_is_read() -> None:
    error = refused(
        503, {"detail": "No runner"}, **{"x-fal-error-type": "runner_scheduling_failure"}
    )
    assert "(runner_scheduling_failure)" in str(error)


@pytest.mark.parametrize(
    ("status", "hint", "retryable"),
    [(400, "true", True), (503, "false", False), (500, "TRUE", True), (503, "maybe", True)],
)
def test_x_fal_retryable_decides_when_present(status: int, hint: str, retryable: bool) -> None:
    error = refused(status, {"detail": "x"}, **{"x-fal-retryable": hint})
    assert error.retryable is retryable


def test_a_wrong_key_is_an_authentication_error() -> None:
    error = refused(401, {"detail": "No user found for Key ID and Secret"})
    assert isinstance(error, AuthenticationError)
    assert "No user found" in str(error)


def test_an_echoed_key_is_redacted() -> None:
    error = refused(401, {"detail": f"bad key {KEY}"})
    assert KEY not in str(error)
    assert KEY not in getattr(error, "body", "")


def test_errors_on_poll_and_download_are_decoded_the_same_way() -> None:
    with pytest.raises(ServerError, match="runner") as caught:
        drive(Fal(KEY), [ok(JOB), httpx.Response(502, json={"detail": "runner died"})])
    assert caught.value.retryable
    with pytest.raises(BadRequestError, match="404: gone"):
        drive(Fal(KEY, queue=False), [ok(RESULT), httpx.Response(404, text="gone")])


# Through the client: the download follows the same rules as every request


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "fetched"),
    [
        (CDN, True),
        ("https://10.1.2.3/files/a.png", False),
        ("http://v3.fal.media/files/a.png", False),
    ],
)
async def test_the_image_is_fetched_only_from_a_public_https_url_without_the_key(
    url: str, fetched: bool
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "fal.run":
            return httpx.Response(200, json={**RESULT, "images": [{"url": url}]})
        return httpx.Response(200, content=PNG)

    async def no_wait(seconds: float) -> None:
        pass

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    retry = flux_sdk.Retry(2, sleep=no_wait)
    async with (
        http,
        flux_sdk.FluxClient(Fal(KEY, queue=False), http_client=http, max_retries=retry) as client,
    ):
        if fetched:
            assert (await client.generate("a red fox")).data == PNG
        else:
            with pytest.raises(InvalidResponseError, match="will not fetch"):
                await client.generate("a red fox")
    assert len(seen) == (2 if fetched else 1)
    assert "authorization" not in seen[-1].headers or seen[-1].url.host == "fal.run"


def test_the_cli_chooses_fal(monkeypatch: pytest.MonkeyPatch) -> None:
    """--provider fal, and auto when FAL_KEY is the only key set."""
    import argparse

    from flux_sdk.cli._providers import choose_provider

    monkeypatch.setenv("FAL_KEY", KEY)
    for name in ("fal", "auto"):
        args = argparse.Namespace(provider=name, base_url="http://127.0.0.1:8787", model_id=None)
        chosen = choose_provider(args).provider
        assert isinstance(chosen, Fal)
        assert str(chosen.url) == "http://127.0.0.1:8787/fal-ai/flux/schnell"
