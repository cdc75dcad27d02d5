"""Each tenacity strategy of `Retry` on its own: one decision, one state, no network."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from tenacity import RetryCallState

import flux_sdk._policy._retry
from flux_sdk import (
    Dataoorts,
    FluxEvent,
    GenerateRequest,
    RateLimitError,
    Retry,
    RetryBudget,
    ServerError,
    TransportError,
)
from flux_sdk._pipeline._call import Call
from flux_sdk._policy._retry import (
    log_and_emit,
    retry_if_safe,
    stop_at_deadline,
    stop_at_limit,
    stop_before_retry,
    stop_without_budget,
    wait_backoff,
)
from flux_sdk.providers import Accepted
from flux_sdk.providers._base import StepKind

KEY = "sk-strategy-test-key"


def make_call(max_retries: int = 3, events: list[FluxEvent] | None = None) -> Call:
    hook = events.append if events is not None else None
    return Call(
        GenerateRequest(prompt="a fox"),
        Dataoorts(api_key=KEY),
        max_retries=max_retries,
        deadline=None,
        timeout=httpx.Timeout(5.0),
        on_event=hook,
    )


def failed(
    call: Call, error: BaseException, *, kind: StepKind = "generate", attempt: int = 1
) -> RetryCallState:
    """The state tenacity hands a strategy after attempt number ``attempt`` raised."""

    async def never() -> None:
        raise AssertionError("a strategy never runs the attempt")

    state = RetryCallState(retry_object=None, fn=None, args=(call, kind, never), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    try:
        raise error
    except BaseException as exc:
        state.set_exception((type(exc), exc, exc.__traceback__))
    return state


def server_error(**kwargs: Any) -> ServerError:
    return ServerError("boom", provider="dataoorts", status_code=500, **kwargs)


def rate_limited(after: float | None) -> RateLimitError:
    return RateLimitError("slow", provider="dataoorts", status_code=429, retry_after=after)


# retry=: may this failure be sent again at all?


def test_retry_if_safe_retries_a_retryable_error() -> None:
    assert retry_if_safe(Retry(), failed(make_call(), server_error()))


def test_retry_if_safe_never_retries_what_is_not_a_flux_error() -> None:
    # A cancellation or a bug in a middleware is not a failure of the host.
    assert not retry_if_safe(Retry(), failed(make_call(), KeyError("bug")))


def test_retry_if_safe_refuses_an_error_marked_not_retryable() -> None:
    assert not retry_if_safe(Retry(), failed(make_call(), server_error(retryable=False)))


def test_retry_if_safe_resubmits_only_a_job_provably_not_taken() -> None:
    call = make_call()
    assert not retry_if_safe(Retry(), failed(call, server_error(), kind="submit"))
    assert retry_if_safe(Retry(), failed(call, rate_limited(None), kind="submit"))
    refused = TransportError("no connect", provider="dataoorts", request_sent=False)
    assert retry_if_safe(Retry(), failed(call, refused, kind="submit"))


def test_retry_if_safe_honours_retry_maybe_billed_false() -> None:
    policy = Retry(retry_maybe_billed=False)
    assert not retry_if_safe(policy, failed(make_call(), server_error()))  # billed "maybe"
    assert retry_if_safe(policy, failed(make_call(), rate_limited(None)))  # billed "no"


def test_retry_if_safe_leaves_a_failover_call_to_the_next_route() -> None:
    call = make_call()
    call.failover = True
    assert not retry_if_safe(Retry(), failed(call, server_error()))
    # ... unless the host named a wait, or a job is already accepted here.
    assert retry_if_safe(Retry(), failed(call, rate_limited(1.0)))
    call.job = Accepted("job-1")
    assert retry_if_safe(Retry(), failed(call, server_error()))


def test_retry_if_safe_surfaces_a_retry_after_longer_than_it_waits() -> None:
    policy = Retry(max_retry_after=30)
    assert retry_if_safe(policy, failed(make_call(), rate_limited(30)))
    assert not retry_if_safe(policy, failed(make_call(), rate_limited(31)))


# wait=: how long before the next attempt?


def test_wait_backoff_waits_the_retry_after_the_host_asked_for() -> None:
    assert wait_backoff(Retry(), failed(make_call(), rate_limited(7.5))) == 7.5


def test_wait_backoff_doubles_up_to_the_cap_with_full_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flux_sdk._policy._retry, "_random", lambda: 1.0)
    policy = Retry(backoff=0.5, max_backoff=3.0)
    waits = [
        wait_backoff(policy, failed(make_call(), server_error(), attempt=n)) for n in (1, 2, 3, 4)
    ]
    assert waits == [0.5, 1.0, 2.0, 3.0]
    monkeypatch.setattr(flux_sdk._policy._retry, "_random", lambda: 0.25)
    assert wait_backoff(policy, failed(make_call(), server_error(), attempt=2)) == 0.25


# stop=: is it too late, too often or too costly to go again?


def test_stop_at_limit_counts_retries_not_attempts() -> None:
    call = make_call(max_retries=2)
    assert not stop_at_limit(Retry(), failed(call, server_error(), attempt=1))
    assert not stop_at_limit(Retry(), failed(call, server_error(), attempt=2))
    assert stop_at_limit(Retry(), failed(call, server_error(), attempt=3))
    assert stop_at_limit(Retry(), failed(make_call(max_retries=0), server_error(), attempt=1))


@pytest.mark.anyio
async def test_stop_at_deadline_when_the_wait_would_cross_it() -> None:
    state = failed(make_call(), server_error())
    state.upcoming_sleep = 5.0
    assert not stop_at_deadline(Retry(), state)  # no deadline at all
    with anyio.move_on_after(10.0):  # noqa: ASYNC100 - the strategy reads the deadline
        assert not stop_at_deadline(Retry(), state)
    with anyio.move_on_after(4.0):  # noqa: ASYNC100 - the strategy reads the deadline
        assert stop_at_deadline(Retry(), state)


def test_stop_without_budget_takes_a_token_only_when_there_is_one() -> None:
    policy = Retry(budget=RetryBudget(ratio=0.0, capacity=1.0))
    state = failed(make_call(), server_error())
    assert not stop_without_budget(policy, state)
    assert policy.budget.tokens == 0.0
    assert stop_without_budget(policy, state)


@pytest.mark.anyio
async def test_stop_before_retry_spends_no_token_on_a_retry_that_never_starts() -> None:
    policy = Retry(budget=RetryBudget(ratio=0.0, capacity=1.0))
    spent = failed(make_call(max_retries=1), server_error(), attempt=2)
    assert stop_before_retry(policy, spent)
    assert policy.budget.tokens == 1.0
    assert not stop_before_retry(policy, failed(make_call(), server_error()))
    assert policy.budget.tokens == 0.0


# before_sleep=: say why the request goes again.


def test_log_and_emit_logs_and_emits_the_retry(caplog: pytest.LogCaptureFixture) -> None:
    events: list[FluxEvent] = []
    call = make_call(events=events)
    state = failed(call, rate_limited(2.0), attempt=1)
    state.upcoming_sleep = 2.0
    with caplog.at_level("INFO", logger="flux_sdk"):
        log_and_emit(Retry(), state)
    assert "retrying dataoorts in 2.00 s after RateLimitError (HTTP 429) (retry 1 of 3)" in (
        caplog.text
    )
    (event,) = events
    assert event.kind == "retry"
    assert event.delay == 2.0
    assert isinstance(event.error, RateLimitError)
