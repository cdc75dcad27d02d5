"""Capacity over a real loopback server, and from the command line."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

import flux_sdk.emulator
from flux_sdk import Baseten, Dataoorts, FluxClient, RateLimitError, Together
from flux_sdk.cli import main
from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp, Load, Sample
from flux_sdk.emulator._app import HOSTS
from flux_sdk.providers import Provider

from ._server import serve
from .test_emulator_capacity import CALLS, WAIT_HEADER

anyio_test = pytest.mark.anyio


class Gate:
    """A service time that lasts until the test opens the gate, so the test knows exactly
    which requests are in service. The server's loop waits for it in a worker thread."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._entered = threading.Semaphore(0)

    async def sleep(self, seconds: float) -> None:
        self._entered.release()
        await anyio.to_thread.run_sync(self.opened.wait)

    async def entered(self) -> None:
        """Wait until one more request has started its service time."""
        acquire = functools.partial(self._entered.acquire, timeout=10)
        assert await anyio.to_thread.run_sync(acquire), "no request reached a replica"


class Watch:
    """Wakes the test each time a host's load changes in the server's thread."""

    def __init__(self, load: Load) -> None:
        self._changed = threading.Condition()
        load.on_change = self._notify

    def _notify(self, sample: Sample) -> None:
        with self._changed:
            self._changed.notify_all()

    async def until(self, condition: Callable[[], bool]) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(condition, timeout=10)

        assert await anyio.to_thread.run_sync(wait), "the server never got there"


async def post(http: httpx.AsyncClient, host: str) -> httpx.Response:
    call = CALLS[host]
    return await http.post(call.path, headers=call.headers, json=call.body)


@anyio_test
@pytest.mark.parametrize("host", list(CALLS))
async def test_a_full_host_answers_its_own_429_with_retry_after(host: str) -> None:
    gate = Gate()
    app = EmulatorApp(
        default_size=32, capacity=Capacity(replicas=1, retry_after=0.25, sleep=gate.sleep)
    )
    with serve(app) as url:
        try:
            async with httpx.AsyncClient(base_url=url) as http, anyio.create_task_group() as tg:
                tg.start_soon(post, http, host)
                await gate.entered()
                refused = await post(http, host)
                assert refused.status_code == 429
                assert refused.headers[WAIT_HEADER.get(host, "retry-after")] == "0.25"
                error = refused.json()
                if host == "dataoorts":
                    assert error["errors"][0]["code"] == 3040
                elif host == "openai":
                    assert error["error"]["code"] == "rate_limit_exceeded"
                elif host == "together":
                    assert error["error"]["type"] == "dynamic_request_limited"
                else:
                    assert set(error) == {"error"}
                gate.opened.set()
        finally:
            gate.opened.set()
    assert (app.load[host].refused, app.load[host].served) == (1, 1)


@anyio_test
@pytest.mark.parametrize("host", ["dataoorts", "baseten", "together"])
async def test_the_sdk_reads_the_429_as_a_rate_limit_with_its_retry_after(host: str) -> None:
    gate = Gate()
    app = EmulatorApp(
        default_size=32, capacity=Capacity(replicas=1, retry_after=0.25, sleep=gate.sleep)
    )
    with serve(app) as url:
        provider: Provider
        if host == "dataoorts":
            provider = Dataoorts(DEFAULT_API_KEY, base_url=f"{url}/api/v1")
        elif host == "baseten":
            provider = Baseten(DEFAULT_API_KEY, base_url=url)
        else:
            provider = Together(DEFAULT_API_KEY, base_url=f"{url}/together")
        try:
            async with FluxClient(provider, max_retries=0) as flux, anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(flux.generate, "first", seed=1))
                await gate.entered()
                with pytest.raises(RateLimitError) as caught:
                    await flux.generate("second", seed=2)
                assert caught.value.retry_after == 0.25
                gate.opened.set()
        finally:
            gate.opened.set()


@anyio_test
async def test_never_more_than_replicas_at_once_over_a_real_server() -> None:
    """Real (tiny) service times and real concurrency: the bound holds throughout."""
    capacity = Capacity(replicas=2, median=0.01, spread=0.5, overflow="queue")
    app = EmulatorApp(default_size=32, capacity=capacity)
    statuses: list[int] = []
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as http, anyio.create_task_group() as tg:

            async def one() -> None:
                statuses.append((await post(http, "openai")).status_code)

            for _ in range(10):
                tg.start_soon(one)
    load = app.load["openai"]
    assert statuses == [200] * 10
    assert (load.requests, load.served, load.refused) == (10, 10, 0)
    assert load.in_service == load.queued == 0
    assert 1 <= load.max_in_service <= 2
    assert max(sample.in_service for sample in load.timeline) <= 2


@anyio_test
async def test_a_client_that_disconnects_while_queued_gives_up_its_place() -> None:
    gate = Gate()
    app = EmulatorApp(default_size=32, capacity=Capacity(replicas=1, queue=1, sleep=gate.sleep))
    load = app.load["dataoorts"]
    watch = Watch(load)
    answers: list[int] = []
    with serve(app) as url:
        try:
            async with httpx.AsyncClient(base_url=url) as http, anyio.create_task_group() as tg:

                async def answered() -> None:
                    answers.append((await post(http, "dataoorts")).status_code)

                tg.start_soon(answered)
                await gate.entered()
                scope = anyio.CancelScope()

                async def leaves() -> None:
                    with scope:
                        await post(http, "dataoorts")

                tg.start_soon(leaves)
                await watch.until(lambda: load.queued == 1)
                scope.cancel()  # the client closes its connection
                await watch.until(lambda: load.abandoned == 1)
                assert load.queued == 0
                tg.start_soon(answered)  # finds the place free: queued, not refused
                await watch.until(lambda: load.queued == 1)
                gate.opened.set()
        finally:
            gate.opened.set()
    assert answers == [200, 200]
    assert (load.refused, load.abandoned, load.served) == (0, 1, 2)


# The command line


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[EmulatorApp]:
    """Apps `flux-sdk emulator` would have served (the server itself is not started)."""
    apps: list[EmulatorApp] = []

    def run(app: EmulatorApp, **options: Any) -> None:
        apps.append(app)

    monkeypatch.setattr(flux_sdk.emulator, "run", run)
    return apps


def test_the_cli_builds_the_capacity_asked_for(
    served: list[EmulatorApp], capsys: pytest.CaptureFixture[str]
) -> None:
    options = "--replicas 2 --service-time 0.5 --service-spread 0.3 --queue 3 --overflow queue"
    more = "--tail 0.1 --tail-factor 5 --service-seed 9 --retry-after 0.5"
    assert main(["emulator", *options.split(), *more.split()]) == 0
    (app,) = served
    expected = Capacity(
        replicas=2,
        median=0.5,
        spread=0.3,
        queue=3,
        overflow="queue",
        tail=0.1,
        tail_factor=5.0,
        seed=9,
        retry_after=0.5,
    )
    assert set(app.load) == {host.name for host in HOSTS}
    assert all(load.capacity == expected for load in app.load.values())
    banner = capsys.readouterr().err
    assert "Capacity of every host, each its own: 2 replicas, service time 0.5 s" in banner


def test_the_cli_limits_only_the_hosts_named(served: list[EmulatorApp]) -> None:
    assert main(["emulator", "--replicas", "1", "--capacity-hosts", "openai,baseten"]) == 0
    assert set(served[0].load) == {"openai", "baseten"}
    assert served[0].load["openai"].capacity == Capacity(replicas=1)
    assert main(["emulator"]) == 0
    assert served[1].load == {}


def test_a_capacity_option_without_replicas_is_a_usage_error(
    served: list[EmulatorApp], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", "--queue", "3"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "flux-sdk: error: --queue needs --replicas N: the capacity model is off without it\n"
    )
    assert served == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--replicas", "0", "must be at least 1 (got 0)"),
        ("--service-time", "nan", "must be zero or more seconds"),
        ("--service-spread", "-1", "must be a number >= 0"),
        ("--queue", "-1", "must be at least 0"),
        ("--overflow", "drop", "invalid choice"),
        ("--tail", "1.5", "must be from 0 to 1"),
        ("--tail-factor", "0.5", "must be a number >= 1"),
        ("--capacity-hosts", "openai,nohost", "unknown host 'nohost'; choose from dataoorts"),
    ],
)
def test_bad_capacity_values_exit_2_naming_the_option(
    option: str,
    value: str,
    message: str,
    served: list[EmulatorApp],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["emulator", "--replicas", "2", option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flux-sdk emulator: error: argument {option}: ")
    assert message in err
    assert err.count("\n") == 1
    assert served == []


def test_the_cli_lists_the_queue_hosts_and_limits_fal(
    served: list[EmulatorApp], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", "--port", "8790", "--replicas", "16", "--capacity-hosts", "fal"]) == 0
    assert set(served[0].load) == {"fal"}
    banner = capsys.readouterr().err
    assert "fal:       FAL_BASE_URL=http://127.0.0.1:8790\n" in banner
    assert "Replicate: Replicate(base_url='http://127.0.0.1:8790')\n" in banner
    assert "Counters:  http://127.0.0.1:8790/_emulator/stats" in banner
