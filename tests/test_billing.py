"""Billing classes: every failure says whether the host may have charged, per provider;
and retries that do not pay twice for the same mistake."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flux_sdk import (
    Baseten,
    CloudflareWorkersAI,
    Dataoorts,
    Fal,
    FluxClient,
    FluxError,
    FluxEvent,
    InvalidResponseError,
    OpenAIImages,
    ProviderError,
    Replicate,
    Retry,
    ServerError,
    Together,
    TransportError,
)
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan

from ._server import serve
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

ACCOUNT = "0123456789abcdef0123456789abcdef"
Factory = Callable[[str, str], Any]
PROVIDERS: dict[str, Factory] = {
    "dataoorts": lambda url, key: Dataoorts(key, base_url=f"{url}/api/v1"),
    "baseten": lambda url, key: Baseten(key, base_url=url),
    "together": lambda url, key: Together(key, base_url=f"{url}/together"),
    "openai": lambda url, key: OpenAIImages(f"{url}/v1", api_key=key),
    "cloudflare": lambda url, key: CloudflareWorkersAI(key, ACCOUNT, base_url=f"{url}/client/v4"),
    "replicate": lambda url, key: Replicate(key, base_url=url, poll_interval=0.01),
    "fal": lambda url, key: Fal(key, base_url=url),
}
QUEUES = {"replicate", "fal"}  # a submit is settled only when its job ends


def make(name: str, url: str, key: str = DEFAULT_API_KEY) -> Any:
    return PROVIDERS[name](url, key)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[EmulatorApp, str]]:
    app = EmulatorApp(faults=FaultPlan(retry_after=0))
    with serve(app) as url:
        yield app, url


async def _outcome(provider: Any, retries: int = 0, **options: Any) -> tuple[Any, list[FluxEvent]]:
    events: list[FluxEvent] = []
    async with FluxClient(
        provider,
        max_retries=Retry(retries, sleep=Sleeps()),
        on_event=events.append,
        prices={provider.name: 0.002},
        **options,
    ) as flux:
        try:
            return await flux.generate("a fox"), events
        except FluxError as exc:
            return exc, events


@pytest.mark.parametrize("name", list(PROVIDERS))
@pytest.mark.parametrize(
    ("fault", "billed"),
    [
        (None, "yes"),
        (Fault.RATE_LIMIT, "no"),
        (Fault.SERVER_ERROR, "maybe"),
        (Fault.BAD_GATEWAY, "maybe"),
        (Fault.HTML, "maybe"),
    ],
)
async def test_each_outcome_says_whether_it_was_billed(
    host: tuple[EmulatorApp, str], name: str, fault: Fault | None, billed: str
) -> None:
    app, url = host
    app.faults.clear()
    app.faults.extend([fault])
    result, events = await _outcome(make(name, url))
    (first,) = [e for e in events if e.kind == "attempt"][:1]
    # An accepted queue job may still fail: its submit stays "maybe" until it ends.
    assert first.billed == ("maybe" if billed == "yes" and name in QUEUES else billed)
    assert first.cost == (0.0 if billed == "no" else 0.002)
    assert first.request is not None
    assert first.request.prompt == "a fox"
    end = events[-1]
    if billed == "yes":
        assert not isinstance(result, FluxError)
        assert result.cost == pytest.approx(0.002)
        assert (end.kind, end.billed) == ("success", "yes")
        assert end.cost == pytest.approx(0.002)
    else:
        assert isinstance(result, FluxError)
        assert result.billed == billed
        assert (end.kind, end.billed) == ("failure", billed)
        assert result.cost == (0.0 if billed == "no" else pytest.approx(0.002))


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_a_wrong_key_is_not_billed(host: tuple[EmulatorApp, str], name: str) -> None:
    _, url = host
    result, _ = await _outcome(make(name, url, "wrong-key"))
    assert isinstance(result, ProviderError)
    assert result.status_code in (401, 403)
    assert (result.billed, result.cost) == ("no", 0.0)


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_a_refused_connection_is_not_billed(name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        result, events = await _outcome(make(name, url))
    assert isinstance(result, TransportError)
    assert result.request_sent is False
    assert result.billed == "no"
    assert [e.billed for e in events if e.kind == "attempt"] == ["no"]


async def test_a_draining_baseten_replica_is_not_billed(host: tuple[EmulatorApp, str]) -> None:
    app, url = host
    app.faults.clear()
    app.faults.extend([Fault.UNAVAILABLE])
    result, _ = await _outcome(make("baseten", url))
    assert isinstance(result, ServerError)
    assert result.status_code == 503
    assert "draining" in result.body
    assert result.billed == "no"


def test_classes_of_errors_without_a_host() -> None:
    assert TransportError("reset", request_sent=True).billed == "maybe"
    assert TransportError("refused", request_sent=False).billed == "no"
    assert ProviderError("bad", status_code=422).billed == "no"
    assert ProviderError("model failed", status_code=200).billed == "maybe"
    assert ProviderError("gone", status_code=503, body="busy").billed == "maybe"
    assert InvalidResponseError("html").billed == "maybe"
    assert ProviderError("aborted", status_code=200, billed="no").billed == "no"


async def test_a_failed_call_is_billed_as_its_worst_attempt(
    host: tuple[EmulatorApp, str],
) -> None:
    """A 500 (maybe) then a 429 (no): the call still may have been billed once."""
    app, url = host
    app.faults.clear()
    app.faults.extend([Fault.SERVER_ERROR, Fault.RATE_LIMIT])
    result, events = await _outcome(make("dataoorts", url), retries=1)
    assert isinstance(result, FluxError)
    assert [e.billed for e in events if e.kind == "attempt"] == ["maybe", "no"]
    assert result.previous[0].billed == "maybe"
    assert result.billed == "maybe"
    assert result.cost == pytest.approx(0.002)


# Retries by class


async def test_maybe_billed_failures_are_not_retried_when_asked(
    host: tuple[EmulatorApp, str],
) -> None:
    app, url = host
    app.faults.clear()
    app.faults.extend([Fault.SERVER_ERROR, None])
    events: list[FluxEvent] = []
    retry = Retry(3, sleep=Sleeps(), retry_maybe_billed=False)
    async with FluxClient(
        make("dataoorts", url), max_retries=retry, on_event=events.append
    ) as flux:
        with pytest.raises(ServerError) as caught:
            await flux.generate("a fox")
    assert caught.value.attempts == 1
    app.faults.clear()
    app.faults.extend([Fault.RATE_LIMIT, None])  # refused, not billed: retried
    async with FluxClient(make("dataoorts", url), max_retries=retry) as flux:
        image = await flux.generate("a fox")
    assert image.attempts == 2


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        (Fault.SERVER_ERROR, 2),  # may pass on another try
        (Fault.HTML, 2),  # a proxy's page: transient
        (Fault.INVALID_JSON, 2),  # cut off on the way: transient
    ],
)
async def test_transient_failures_are_retried(
    host: tuple[EmulatorApp, str], fault: Fault, attempts: int
) -> None:
    app, url = host
    app.faults.clear()
    app.faults.extend([fault, None])
    result, _ = await _outcome(make("dataoorts", url), retries=3)
    assert not isinstance(result, FluxError)
    assert result.attempts == attempts


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"detail": "bad size"}, 422, id="a 4xx about the request"),
        pytest.param({"error": "prompt is required"}, 200, id="a model error from the input"),
        pytest.param({"data": 5}, 200, id="the same wrong shape every time"),
    ],
)
async def test_errors_that_would_repeat_are_not_retried(body: dict[str, Any], status: int) -> None:
    """Served by a host that answers the same every time: one request, no second bill."""
    import json

    sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        sent.append(1)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    with serve(app) as url:
        result, _ = await _outcome(Baseten(DEFAULT_API_KEY, base_url=url), retries=3)
    assert isinstance(result, FluxError)
    assert not result.retryable
    assert len(sent) == 1
