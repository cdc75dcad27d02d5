"""How the fal adapter reads a queue's life, one answer at a time, and every error.

Flows are driven by hand here (each Step answered with a canned response), so these
tests are pure; tests/test_fal_emulator.py runs whole calls over loopback.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    Fal,
    FluxError,
    FluxWarning,
    GenerateRequest,
    InvalidResponseError,
    ProviderError,
    ServerError,
)
from flux_sdk.providers import Accepted, Step, Wait
from flux_sdk.providers._fal import POLLS

from ._fal import CDN, KEY, PNG, RESULT, SUBMIT, ok, steps
from ._flows import drive

RID = "80e732af-1111-4222-8333-944445555666"
JOB_URL = f"https://queue.fal.run/fal-ai/flux/requests/{RID}"
JOB = {
    "status": "IN_QUEUE",
    "request_id": RID,
    "queue_position": 0,
    "response_url": JOB_URL,
    "status_url": f"{JOB_URL}/status",
    "cancel_url": f"{JOB_URL}/cancel",
}


def status(state: str, **more: Any) -> httpx.Response:
    return ok({**JOB, "status": state, **more})


LIFE = [ok(JOB), status("IN_QUEUE"), status("IN_PROGRESS"), status("COMPLETED"), ok(RESULT)]


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
