"""`Emulator`: the real client and a real host's wire format, answered in process.

Also the provider ``transport`` hook it relies on, and the error messages that say what
to do next (a refused key names its variable, an HTML page says what it is).
"""

from __future__ import annotations

import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    Baseten,
    ConfigError,
    Dataoorts,
    Emulator,
    FluxClient,
    FluxEvent,
    InvalidRequestError,
    InvalidResponseError,
    RateLimitError,
    provider,
)
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan, render_png

pytestmark = pytest.mark.anyio


async def test_generates_the_emulators_picture_with_no_key_and_no_socket() -> None:
    """`FluxClient(Emulator())` is the whole first hour: no key, no server, a real PNG."""
    async with FluxClient(Emulator()) as client:
        image = await client.generate("a tiny astronaut", seed=7)
    assert image.provider == "emulator"
    assert image.request_id == "emu-000001"
    assert image.data == render_png("a tiny astronaut", seed=7, steps=4, width=1024, height=1024)


async def test_errors_name_the_emulator_not_the_host_it_speaks() -> None:
    """The user chose "emulator": a rule it breaks says so, and what to do."""
    async with FluxClient(Emulator()) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await client.generate("a cat", width=512)
    assert str(caught.value) == "emulator does not accept width for this model; leave it out"
    assert caught.value.provider == "emulator"


async def test_baseten_host_takes_sizes() -> None:
    """``host="baseten"`` speaks Baseten's format, with its rules (multiples of 16)."""
    async with FluxClient(Emulator(host="baseten")) as client:
        image = await client.generate("a lighthouse", seed=3, width=512, height=256)
        with pytest.raises(InvalidRequestError, match="emulator needs width to be a multiple"):
            await client.generate("a lighthouse", width=500)
    assert image.data == render_png("a lighthouse", seed=3, steps=4, width=512, height=256)


def test_unknown_host_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the emulator speaks 'dataoorts' or 'baseten'"):
        Emulator(host="openai")  # type: ignore[arg-type]


async def test_a_given_app_is_the_one_that_answers_and_retries_work_through_it() -> None:
    """A FaultPlan on your own app: the client retries the 429 as it would a real one."""
    app = EmulatorApp(faults=FaultPlan([Fault.RATE_LIMIT], retry_after=0.0))
    events: list[FluxEvent] = []
    async with FluxClient(Emulator(app=app), on_event=events.append) as client:
        image = await client.generate("a cat", seed=1)
    assert image.attempts == 2
    assert app.requests_seen == 2
    assert [e.status_code for e in events if e.kind == "attempt"] == [429, 200]


async def test_one_provider_serves_clients_one_after_another() -> None:
    """Closing a client must not close the provider's transport: it is only borrowed."""
    emulator = Emulator()
    for seed in (1, 2):
        async with FluxClient(emulator) as client:
            image = await client.generate("a cat", seed=seed)
        assert image.seed == seed
    assert emulator.app.requests_seen == 2


async def test_an_http_client_passed_in_wins_over_the_providers_transport() -> None:
    """``http_client=`` is the caller's explicit choice: every request goes through it."""
    seen: list[httpx.Request] = []
    app = EmulatorApp()
    inner = httpx.ASGITransport(app=app)

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await inner.handle_async_request(request)

    emulator = Emulator()
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
        FluxClient(emulator, http_client=http) as client,
    ):
        await client.generate("a cat")
    assert len(seen) == 1
    assert (app.requests_seen, emulator.app.requests_seen) == (1, 0)


def test_a_transport_that_is_not_one_is_a_config_error() -> None:
    emulator = Emulator()
    emulator.transport = "http://127.0.0.1"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="emulator's transport must be an httpx"):
        FluxClient(emulator)


def test_the_registry_makes_it_by_name() -> None:
    made = provider("emulator", host="baseten")
    assert isinstance(made, Emulator)
    assert repr(made) == "Emulator(host='baseten')"


# Errors that say what to do next


@pytest.mark.parametrize(
    ("make", "variable"),
    [
        (lambda: Dataoorts("sk-wrong", base_url="http://127.0.0.1/api/v1"), "DATAOORTS_API_KEY"),
        (lambda: Baseten("sk-wrong", base_url="http://127.0.0.1"), "BASETEN_API_KEY"),
    ],
)
async def test_a_refused_key_names_the_variable_it_comes_from(make: object, variable: str) -> None:
    transport = httpx.ASGITransport(app=EmulatorApp())
    async with (
        httpx.AsyncClient(transport=transport) as http,
        FluxClient(make(), http_client=http) as client,  # type: ignore[operator]
    ):
        with pytest.raises(AuthenticationError) as caught:
            await client.generate("a cat")
    message = str(caught.value)
    assert f"check the key in the {variable} environment variable" in message
    assert "sk-wrong" not in message


@pytest.mark.parametrize("host", ["dataoorts", "baseten"])
async def test_an_html_page_with_200_says_what_it_is(host: str) -> None:
    """Content type, an excerpt, the request id and the likely cause, in one message."""
    app = EmulatorApp(faults=FaultPlan([Fault.HTML]))
    async with FluxClient(Emulator(host=host, app=app), max_retries=0) as client:  # type: ignore[arg-type]
        with pytest.raises(InvalidResponseError) as caught:
            await client.generate("a cat")
    message = str(caught.value)
    assert message.startswith("emulator ")
    assert "text/html" in message
    assert "<!DOCTYPE html>" in message
    assert "(request id emu-000001)" in message
    assert "check the base URL" in message
    assert caught.value.request_id == "emu-000001"


async def test_a_rate_limit_names_the_emulator() -> None:
    app = EmulatorApp(faults=FaultPlan([Fault.RATE_LIMIT], retry_after=0.0))
    async with FluxClient(Emulator(app=app), max_retries=0) as client:
        with pytest.raises(RateLimitError, match=r"^emulator answered HTTP 429"):
            await client.generate("a cat")
