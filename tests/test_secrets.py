"""API keys never show: not in reprs, errors, or logs, even when a server echoes them.

conftest.py checks the whole session the same way; these tests check the SDK's own
objects directly, and check that the session-wide watch itself can see a leak.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    Baseten,
    Dataoorts,
    FluxClient,
    FluxError,
    FluxEvent,
    GenerateRequest,
    ProviderError,
)
from flux_sdk.emulator import EmulatorApp

from ._reliability import LeakFilter, LeakHandler, SecretWatch
from ._server import serve

KEY = "sk-secrets-test-9d4e2b7a61f3c8"
LIGHTHOUSE = GenerateRequest(prompt="a lighthouse")


def dataoorts(url: str = "https://cloud.dataoorts.com/api/v1") -> Dataoorts:
    return Dataoorts(KEY, base_url=url)


def baseten(url: str = "https://model-abcd1234.api.baseten.co") -> Baseten:
    return Baseten(KEY, base_url=url)


PROVIDERS: dict[str, Callable[..., Dataoorts | Baseten]] = {
    "dataoorts": dataoorts,
    "baseten": baseten,
}


def shows_key(text: str, run: int = 8) -> bool:
    """Whether ``text`` holds the key, or any ``run`` characters of it in a row."""
    return any(KEY[i : i + run] in text for i in range(len(KEY) - run + 1))


def error_texts(error: FluxError) -> list[str]:
    texts = [str(error), repr(error), str(getattr(error, "body", ""))]
    texts += [str(getattr(error, "request_id", ""))]
    for earlier in error.previous:
        texts += error_texts(earlier)
    return texts


@pytest.mark.parametrize(
    "provider",
    [
        Dataoorts(KEY),
        Dataoorts(KEY, model="stabilityai/stable-diffusion-xl-base-1.0"),
        Dataoorts(KEY, base_url="http://127.0.0.1:8787/api/v1"),
        Baseten(KEY, "abcd1234"),
        Baseten(KEY, "abcd1234", deployment_id="q1w2e3"),
        Baseten(KEY, base_url="http://[::1]:9000"),
    ],
    ids=repr,
)
def test_reprs_of_providers_and_clients_never_show_the_key(provider: Dataoorts | Baseten) -> None:
    """Printing a provider or a client, or their key attribute, never prints the key."""
    client = FluxClient(provider)
    texts = [repr(provider), str(provider), repr(client), str(client)]
    texts += [repr(provider.api_key), str(provider.api_key), f"{provider.api_key}"]
    assert not any(shows_key(text) for text in texts), texts


# A server that echoes the credential back, as some error pages do


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers 401 quoting the Authorization header it got in its body, as some pages do.

    Not in a header: httpcore logs response headers verbatim at DEBUG, which the
    session-wide check would (rightly) report.
    """
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
    body = (
        b'{"error": "invalid credentials: ' + authorization.encode() + b'", '
        b'"errors": [{"code": 10000, "message": "bad key ' + authorization.encode() + b'"}]}'
    )
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with serve(echo_app) as url:
        yield url


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_a_server_echoing_the_key_gets_a_redacted_authentication_error(
    echo_url: str, name: str
) -> None:
    """A 401 whose body and headers quote the key gives an AuthenticationError without it."""
    url = f"{echo_url}/api/v1" if name == "dataoorts" else echo_url
    events: list[FluxEvent] = []
    async with FluxClient(PROVIDERS[name](url), on_event=events.append) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.generate("a lighthouse")
    texts = error_texts(caught.value) + [repr(event) for event in events]
    assert "invalid credentials" in str(caught.value) or "bad key" in str(caught.value)
    assert "**********" in caught.value.body  # the echo was there, and was blanked
    assert not any(shows_key(text) for text in texts), texts


@pytest.mark.parametrize("name", list(PROVIDERS))
@pytest.mark.parametrize(
    ("status", "content_type", "body", "headers"),
    [
        (401, "application/json", f'{{"error": "key {KEY} is revoked"}}', {}),
        (403, "application/json", f'{{"message": "no access for {KEY}"}}', {}),
        (400, "application/json", f'{{"detail": {{"message": "{KEY}"}}}}', {}),
        (422, "application/json", f'{{"errors": ["{KEY}", {{"message": "{KEY}"}}]}}', {}),
        (401, "text/plain", f"Unauthorized: Bearer {KEY}\nmore", {}),
        (500, "text/html", f"<html><body>{KEY}</body></html>", {}),
        (200, "application/json", f'{{"success": false, "errors": [{{"message": "{KEY}"}}]}}', {}),
        (200, "application/json", f'{{"error": "{KEY}"}}', {}),
        (200, "application/json", f'{{"result": {{"image_base64": "{KEY}"}}}}', {}),
        (200, "text/html", f"<p>{KEY}</p>", {}),
        (200, "application/json", f'{{"cut": "{KEY}', {}),
        (307, "text/plain", "", {"location": f"https://evil.example/?key={KEY}"}),
        (401, "application/json", "x" * 990 + KEY, {}),  # the key straddles the quote's cut
    ],
)
def test_every_error_path_blanks_an_echoed_key(
    name: str, status: int, content_type: str, body: str, headers: dict[str, str]
) -> None:
    """Whatever shape the echo takes, the FluxError's message, repr and body hide the key."""
    provider = PROVIDERS[name]()
    response = httpx.Response(
        status, headers={"content-type": content_type, **headers}, content=body.encode()
    )
    with pytest.raises(FluxError) as caught:
        provider.parse_response(LIGHTHOUSE, response)
    assert not any(shows_key(text) for text in error_texts(caught.value)), caught.value


@pytest.mark.anyio
async def test_debug_logging_of_a_failing_call_never_shows_the_key(
    echo_url: str, all_debug_logs: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG (httpx and httpcore too), a refused call logs no key."""
    provider = Dataoorts(KEY, base_url=f"{echo_url}/api/v1")
    async with FluxClient(provider, max_retries=2) as client:
        with pytest.raises(AuthenticationError):
            await client.generate("a lighthouse")
    names = {record.name.split(".")[0] for record in all_debug_logs.records}
    # The loggers that matter all spoke (httpcore only sends what flux_sdk's own lean
    # connections do not; they log httpx's line for each request).
    assert {"flux_sdk", "httpx"} <= names
    assert not shows_key(all_debug_logs.text)
    formatted = [logging.Formatter().format(record) for record in all_debug_logs.records]
    assert not any(shows_key(text) for text in formatted)


def test_a_bad_request_error_quoting_the_key_in_a_nested_field_is_blanked() -> None:
    """An error list mixing strings and objects is quoted without the key."""
    provider = PROVIDERS["baseten"]()
    response = httpx.Response(
        400, json={"errors": [{"message": f"token {KEY} malformed"}, f"raw {KEY}"]}
    )
    with pytest.raises(BadRequestError) as caught:
        provider.parse_response(LIGHTHOUSE, response)
    assert "malformed" in str(caught.value)
    assert not any(shows_key(text) for text in error_texts(caught.value))


# The session-wide watch in conftest.py


def test_the_session_watches_every_key_a_provider_or_emulator_is_given(
    secret_watch: SecretWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys passed as arguments, through the environment or to the emulator are all watched."""
    Dataoorts("sk-arg-given-4b1d77")
    Baseten(api_key="  sk-padded-key-90aa  ", model_id="abcd1234")
    monkeypatch.setenv("DATAOORTS_API_KEY", "sk-from-env-5e6f01")
    Dataoorts()
    EmulatorApp(api_key="emu-other-key-77c2")
    for key in ["sk-arg-given-4b1d77", "sk-padded-key-90aa", "sk-from-env-5e6f01"]:
        assert key in secret_watch.keys
    assert "emu-other-key-77c2" in secret_watch.keys


class Group(Exception):
    """Shaped like an ExceptionGroup (which Python 3.10 lacks): it holds ``exceptions``."""

    def __init__(self, *exceptions: BaseException) -> None:
        super().__init__("several errors")
        self.exceptions = exceptions


def test_the_watch_sees_a_key_in_a_log_record_an_exception_or_a_cause() -> None:
    """The checker behind the session check finds a key wherever it is, and blanks it."""
    watch = SecretWatch(["sk-watched-31c9aa", "abc"])  # "abc" is too short to watch
    logger = logging.getLogger("tests.secret_watch_demo")
    logger.propagate = False
    handler = LeakHandler(watch)
    logger.addHandler(handler)
    try:
        logger.debug("sending %s", "Bearer sk-watched-31c9aa")
        logger.warning("nothing to see here: abc")
    finally:
        logger.removeHandler(handler)
    try:
        try:
            raise KeyError("sk-watched-31c9aa")
        except KeyError as inner:
            raise Group(ProviderError("outer", status_code=500)) from inner
    except Group as group:
        watch.check_exception(Group(group))
    watch.check_exception(AssertionError("sk-watched-31c9aa"))  # a test's own assertion
    assert len(watch.leaks) == 3  # the DEBUG record, and the KeyError's str and repr
    assert watch.checked["log record"] == 2
    report = watch.report()
    assert "sk-watched-31c9aa" not in report
    assert "Bearer <API KEY>" in report


def test_the_log_filter_checks_every_record_but_passes_only_what_it_did_before() -> None:
    """httpx and httpcore run at DEBUG for the check without flooding other handlers."""
    watch = SecretWatch(["sk-filtered-8f8f8f"])
    leak_filter = LeakFilter(watch, pass_from=logging.WARNING)
    debug = logging.LogRecord(
        "httpcore.http11", logging.DEBUG, "", 0, "%s", ("sk-filtered-8f8f8f",), None
    )
    warning = logging.LogRecord("httpx", logging.WARNING, "", 0, "careful", (), None)
    assert leak_filter.filter(debug) is False
    assert leak_filter.filter(warning) is True
    assert len(watch.leaks) == 1


@pytest.mark.parametrize("name", list(PROVIDERS))
@pytest.mark.parametrize("status", [200, 401, 500])
def test_a_request_id_header_echoing_the_key_is_redacted(name: str, status: int) -> None:
    """The request id is quoted in errors and reprs, so an echoed key is blanked out."""
    provider = PROVIDERS[name]()
    response = httpx.Response(
        status,
        headers={"x-request-id": f"req-{KEY}", "content-type": "application/json"},
        content=b'{"unexpected": true}',
        request=provider.build_request(LIGHTHOUSE),
    )
    with pytest.raises(FluxError) as caught:
        provider.parse_response(LIGHTHOUSE, response)
    texts = error_texts(caught.value)
    assert not any(shows_key(text) for text in texts), texts
    assert "req-" in str(getattr(caught.value, "request_id", ""))
