"""The retry layer: what is retried, how long it waits, and how much it may retry."""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from collections.abc import Generator
from typing import Any

import anyio
import httpx
import pytest
import respx

import flux_sdk._policy._retry
from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    Dataoorts,
    FluxClient,
    FluxError,
    FluxEvent,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    Retry,
    RetryBudget,
    ServerError,
    TransportError,
)

from ._images import image_bytes
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

KEY = "sk-retry-test-key"
URL = "https://cloud.dataoorts.com/api/v1"


OK = httpx.Response(
    200,
    json={
        "result": {"image_base64": base64.b64encode(image_bytes(size=2)).decode()},
        "success": True,
    },
)


async def run_calls(client: FluxClient, calls: int) -> list[FluxError]:
    """Run ``calls`` generates at once; the errors they raised."""
    errors: list[FluxError] = []

    async def one(i: int) -> None:
        try:
            await client.generate(f"prompt {i}")
        except FluxError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(calls):
            group.start_soon(one, i)
    return errors


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _client(sleeps: Sleeps, *, max_retries: int = 3, **kwargs: Any) -> FluxClient:
    retry = Retry(max_retries, sleep=sleeps, budget=kwargs.pop("budget", None))
    return FluxClient(Dataoorts(api_key=KEY), max_retries=retry, **kwargs)


def _fail_then_ok(router: respx.MockRouter, failure: Any, times: int = 1) -> respx.Route:
    outcomes = [failure] * times + [OK]
    return router.post(URL).mock(side_effect=outcomes)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    router: respx.MockRouter, sleeps: Sleeps, status: int
) -> None:
    """408, 409, 429 and 5xx are tried again, and the image says how many attempts it took."""
    route = _fail_then_ok(router, httpx.Response(status, json={"error": "busy"}), times=2)
    async with _client(sleeps) as client:
        image = await client.generate("a cat")
    assert route.call_count == 3
    assert image.attempts == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, BadRequestError),
        (422, BadRequestError),
    ],
)
async def test_fatal_statuses_are_never_retried(
    router: respx.MockRouter, sleeps: Sleeps, status: int, error: type[FluxError]
) -> None:
    """A refused request is sent exactly once: retrying cannot fix it and may cost money."""
    route = router.post(URL).respond(status, json={"error": "no"})
    async with _client(sleeps) as client:
        with pytest.raises(error) as caught:
            await client.generate("a cat")
    assert route.call_count == 1
    assert caught.value.attempts == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("incomplete body"),
        httpx.Response(200, text="<html>gateway</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, text="{not json", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"result": {"image_base64": "***"}}),
        httpx.Response(200, json={"success": False, "errors": [{"code": 3040, "message": "cap"}]}),
    ],
    ids=["connect", "read-timeout", "truncated", "html-200", "bad-json", "bad-b64", "capacity"],
)
async def test_transport_faults_and_transient_2xx_are_retried(
    router: respx.MockRouter, sleeps: Sleeps, failure: Any
) -> None:
    """Connection faults and 2xx answers without an image are retried, then succeed."""
    route = _fail_then_ok(router, failure)
    async with _client(sleeps) as client:
        image = await client.generate("a cat")
    assert route.call_count == 2
    assert image.attempts == 2


async def test_a_reported_permanent_failure_is_not_retried(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """A 2xx envelope reporting a non-transient error code is raised after one attempt."""
    route = router.post(URL).respond(
        200, json={"success": False, "errors": [{"code": 5006, "message": "bad input"}]}
    )
    async with _client(sleeps) as client:
        with pytest.raises(ProviderError, match="bad input"):
            await client.generate("a cat")
    assert route.call_count == 1


async def test_last_error_carries_the_attempts_and_the_earlier_errors(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """After the last attempt the caller gets the last error, with every earlier one."""
    router.post(URL).mock(
        side_effect=[httpx.Response(500 + i, json={"error": f"failure {i}"}) for i in range(4)]
    )
    async with _client(sleeps) as client:
        with pytest.raises(ServerError) as caught:
            await client.generate("a cat")
    assert caught.value.status_code == 503
    assert "failure 3" in str(caught.value)
    assert caught.value.attempts == 4
    assert [e.status_code for e in caught.value.previous] == [500, 501, 502]  # type: ignore[attr-defined]


async def test_backoff_is_exponential_with_full_jitter_and_a_cap(
    router: respx.MockRouter, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waits grow 0.5, 1, 2, ... seconds, capped at 20, each a random part of that ceiling."""
    router.post(URL).respond(503)
    monkeypatch.setattr(flux_sdk._policy._retry, "_random", lambda: 1.0)
    async with _client(sleeps, max_retries=8, budget=RetryBudget(capacity=100)) as client:
        with pytest.raises(ServerError):
            await client.generate("a cat")
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]

    sleeps.delays.clear()
    monkeypatch.setattr(flux_sdk._policy._retry, "_random", lambda: 0.25)
    async with _client(sleeps, max_retries=3) as client:
        with pytest.raises(ServerError):
            await client.generate("a cat")
    assert sleeps.delays == [0.125, 0.25, 0.5]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ],
)
async def test_retry_after_is_honoured(
    router: respx.MockRouter, sleeps: Sleeps, headers: dict[str, str], expected: float
) -> None:
    """The wait the provider asks for replaces the backoff."""
    _fail_then_ok(router, httpx.Response(429, headers=headers))
    async with _client(sleeps) as client:
        await client.generate("a cat")
    assert sleeps.delays == [expected]


async def test_retry_after_as_an_http_date(router: respx.MockRouter, sleeps: Sleeps) -> None:
    """Retry-After given as a date is waited until that moment."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    _fail_then_ok(router, httpx.Response(503, headers={"retry-after": when}))
    async with _client(sleeps) as client:
        await client.generate("a cat")
    assert 25 <= sleeps.delays[0] <= 31


async def test_a_longer_demand_than_we_wait_raises_at_once(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """A Retry-After over 120 s is not slept through: RateLimitError comes back now."""
    route = router.post(URL).respond(429, headers={"retry-after": "121"})
    async with _client(sleeps) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.generate("a cat")
    assert route.call_count == 1
    assert caught.value.retry_after == 121
    assert sleeps.delays == []


async def test_per_call_max_retries_overrides_the_client(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """generate(..., max_retries=0) makes exactly one attempt."""
    route = router.post(URL).respond(503)
    async with _client(sleeps) as client:
        with pytest.raises(ServerError):
            await client.generate("a cat", max_retries=0)
        assert route.call_count == 1
        with pytest.raises(ServerError):
            await client.generate("a cat", max_retries=1)
    assert route.call_count == 3


async def test_a_retry_that_would_cross_the_deadline_is_not_started(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """With 1 s left, a 5 s Retry-After ends the call now rather than after the deadline."""
    route = router.post(URL).respond(503, headers={"retry-after": "5"})
    async with _client(sleeps, deadline=1.0) as client:
        with pytest.raises(ServerError):
            await client.generate("a cat")
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_total_outage_stays_within_the_retry_budget(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """200 calls against a dead provider make at most 1.2 x 200 + capacity attempts."""
    route = router.post(URL).respond(503)
    budget = RetryBudget(ratio=0.2, capacity=10)
    async with _client(sleeps, budget=budget, max_concurrency=16) as client:
        errors = await run_calls(client, 200)
    assert len(errors) == 200
    assert all(isinstance(e, ServerError) for e in errors)
    assert route.call_count <= 1.2 * 200 + 10
    assert route.call_count >= 200 + 10  # the capacity and the per-call share were used
    # Once the budget is spent, a failure surfaces after a single attempt.
    assert sum(1 for e in errors if e.attempts == 1) > 100


async def test_successes_refill_the_budget(router: respx.MockRouter, sleeps: Sleeps) -> None:
    """After a spent budget, successful calls make retries possible again."""
    budget = RetryBudget(ratio=0.0, capacity=2)
    route = router.post(URL).respond(503)
    async with _client(sleeps, budget=budget) as client:
        with pytest.raises(ServerError):
            await client.generate("a cat")  # 1 + 2 retries, budget now empty
        assert route.call_count == 3
        with pytest.raises(ServerError):
            await client.generate("a cat")
        assert route.call_count == 4  # no retry: the sack is empty
        route.side_effect = [OK, OK]
        await client.generate("a cat")
        await client.generate("a cat")
        route.side_effect = [httpx.Response(503), OK]
        image = await client.generate("a cat")
    assert image.attempts == 2


def test_budget_arithmetic() -> None:
    """The sack never holds more than its capacity and pays one token per retry."""
    budget = RetryBudget(ratio=0.5, capacity=2)
    assert budget.try_spend()
    assert budget.try_spend()
    assert not budget.try_spend()
    budget.on_call()
    assert not budget.try_spend()
    budget.on_call()
    assert budget.try_spend()
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 2
    with pytest.raises(ConfigError, match=">= 0"):
        RetryBudget(ratio=-1)


def test_budget_floor_is_the_deprecated_name_of_capacity() -> None:
    """Code written for the old name keeps working, with a warning that names the new one."""
    with pytest.warns(DeprecationWarning, match="capacity"):
        budget = RetryBudget(floor=3)
    assert budget.capacity == 3
    with pytest.warns(DeprecationWarning, match="capacity"):
        assert budget.floor == 3


async def test_events_and_logs_describe_each_attempt_and_retry(
    router: respx.MockRouter, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    """Users can count attempts, retries and outcomes from events, and read them in logs."""
    _fail_then_ok(router, httpx.Response(502, json={"error": "crashed"}), times=2)
    events: list[FluxEvent] = []
    caplog.set_level(logging.DEBUG, logger="flux_sdk")
    async with _client(sleeps, on_event=events.append) as client:
        await client.generate("a cat")
    kinds = [(e.kind, e.attempt, e.status_code) for e in events]
    assert kinds == [
        ("attempt", 1, 502),
        ("retry", 1, None),
        ("attempt", 2, 502),
        ("retry", 2, None),
        ("attempt", 3, 200),
        ("success", 3, None),
    ]
    assert events[1].delay == sleeps.delays[0]
    assert isinstance(events[1].error, ServerError)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 2
    assert "retrying dataoorts" in info[0]
    assert "ServerError (HTTP 502)" in info[0]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("attempt" in line for line in debug) == 3
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_failure_event_reports_the_final_error(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """A call that fails for good emits one failure event carrying its error."""
    router.post(URL).respond(401)
    events: list[FluxEvent] = []
    async with _client(sleeps, on_event=events.append) as client:
        with pytest.raises(AuthenticationError):
            await client.generate("a cat")
    assert [e.kind for e in events] == ["attempt", "failure"]
    assert isinstance(events[-1].error, AuthenticationError)


async def test_invalid_response_over_the_cap_is_not_retried(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """A body over the size cap would be too big again: one attempt, no retry."""
    route = router.post(URL).respond(
        200, content=b"x" * 5000, headers={"content-type": "image/png"}
    )
    async with _client(sleeps, max_response_bytes=1000) as client:
        with pytest.raises(InvalidResponseError):
            await client.generate("a cat")
    assert route.call_count == 1


async def test_retry_and_transport_errors_keep_their_type(
    router: respx.MockRouter, sleeps: Sleeps
) -> None:
    """A call that keeps failing to connect raises TransportError after max_retries + 1."""
    route = router.post(URL).mock(side_effect=httpx.ConnectError("refused"))
    async with _client(sleeps, max_retries=2) as client:
        with pytest.raises(TransportError) as caught:
            await client.generate("a cat")
    assert route.call_count == 3
    assert caught.value.attempts == 3
