"""Routing against real wire formats: each route's requests and key reach only its own
host (in-process emulator, loopback HTTP, with and without ``http_client=``), and routes
that cannot be told apart are refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import anyio
import httpx
import pytest

from flux_sdk import ConfigError, Dataoorts, Emulator, FluxClient, GenerateRequest, Retry
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan
from flux_sdk.emulator._asgi import Receive, Scope, Send

from ._server import serve

pytestmark = pytest.mark.anyio


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


class Recording(EmulatorApp):
    """An emulator that keeps the Authorization header of every request it is sent."""

    def __init__(self, key: str, **options: Any) -> None:
        super().__init__(api_key=key, **options)
        self.authorizations: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.authorizations.append(headers.get(b"authorization", b"").decode())
        await super().__call__(scope, receive, send)


@contextmanager
def provider(kind: str, app: Recording, name: str) -> Iterator[Emulator | Dataoorts]:
    """The emulator in this process, or a real Dataoorts client of it over loopback."""
    if kind == "emulator":
        emulator = Emulator(app=app)
        emulator.name = name
        yield emulator
        return
    with serve(app) as url:
        dataoorts = Dataoorts(app.api_key, base_url=f"{url}/api/v1")
        dataoorts.name = name
        yield dataoorts


KINDS = ("emulator", "loopback")


@pytest.mark.parametrize("given", [False, True], ids=["own-connections", "http_client"])
@pytest.mark.parametrize("second", KINDS)
@pytest.mark.parametrize("first", KINDS)
async def test_each_route_sends_only_to_its_own_host_with_its_own_key(
    first: str, second: str, given: bool
) -> None:
    """The first host fails once (a 503) and the call moves on; the next call goes back
    to it. Every request each host saw carries its own key, and as many as its route
    sent: none of one route's requests reached the other's host."""
    one = Recording("key-of-host-one", faults=FaultPlan([Fault.UNAVAILABLE]))
    two = Recording("key-of-host-two")
    with ExitStack() as stack:
        providers = [
            stack.enter_context(provider(first, one, "one")),
            stack.enter_context(provider(second, two, "two")),
        ]
        http_client = httpx.AsyncClient() if given else None
        try:
            retry = Retry(3, sleep=no_sleep)
            async with FluxClient(providers, max_retries=retry, http_client=http_client) as flux:
                moved = await flux.generate("a cat")
                stayed = await flux.generate("a dog")
        finally:
            if http_client is not None:
                await http_client.aclose()
    assert (moved.hosts, stayed.hosts) == (("one", "two"), ("one",))
    assert len(one.authorizations) == 2
    assert len(two.authorizations) == 1
    assert all("key-of-host-one" in header for header in one.authorizations)
    assert all("key-of-host-two" in header for header in two.authorizations)


async def test_routes_with_one_name_are_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"both named 'emulator' \(Emulator.*and Emulator"):
        FluxClient([Emulator(), Emulator(host="baseten")])


class Borrowing:
    """A provider that carries another provider's transport."""

    def __init__(self, lender: Emulator) -> None:
        self.name = "borrowing"
        self.rules = lender.rules
        self.transport = lender.transport
        self._lender = lender

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        return self._lender.build_request(request)

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> Any:
        return self._lender.parse_response(request, response)


async def test_a_route_with_another_routes_transport_is_refused_naming_both() -> None:
    emulator = Emulator()
    with pytest.raises(ConfigError, match=r"borrowing carries the transport of emulator"):
        FluxClient([emulator, Borrowing(emulator)])
