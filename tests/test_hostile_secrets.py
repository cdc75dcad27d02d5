"""A hostile server echoes the API key back, in every place and encoding it can.

Each answer comes from a raw loopback socket (tests/_hostile.py) that puts the key in
a malformed status line, a header, a malformed chunk, or an error body (literal,
JSON-escaped with ``\\/`` and ``\\uXXXX``, percent-encoded, base64 of ``Bearer key``).
Whatever the transport (httpx's, and AiohttpTransport on asyncio), the key must not
appear in the error's str or repr, its body or request id, its cause chain or printed
traceback, the events, or any DEBUG record of flux_sdk, httpx or httpcore.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from flux_sdk import (
    DEFAULT_TIMEOUT,
    AiohttpTransport,
    Dataoorts,
    FluxClient,
    FluxError,
    FluxEvent,
    Retry,
)
from flux_sdk._transport._logfilter import FILTER, LOGGERS, set_log_redaction
from flux_sdk.providers import excerpt, redact

from ._hostile import hostile_server

pytestmark = pytest.mark.anyio

# A "/" and a "+": JSON may escape the first as "\/", URLs and base64 treat both apart.
KEY = "sk-hostile/9d4e+2b7a61f3c8"
BEARER = f"Bearer {KEY}"


def encodings(key: str = KEY) -> dict[str, str]:
    """Every form of the key a server might send back, as the server would write it."""
    return {
        "literal": key,
        "json": json.dumps(key)[1:-1].replace("/", "\\/"),
        "json-u": "".join(f"\\u{ord(c):04x}" for c in key),
        "json-U-mixed": "".join(f"\\u{ord(c):04X}" if i % 2 else c for i, c in enumerate(key)),
        "percent": urllib.parse.quote(key, safe=""),
        "percent-lower": "".join(f"%{ord(c):02x}" if not c.isalnum() else c for c in key),
        "base64-bearer": base64.b64encode(f"Bearer {key}".encode()).decode(),
        "base64-key": base64.b64encode(key.encode()).decode(),
        "base64url-basic": base64.urlsafe_b64encode(f"user:{key}".encode()).decode(),
    }


def leaks(text: str) -> list[str]:
    """The encodings of the key found in ``text``, or any 8 characters of it in a row."""
    found = [name for name, form in encodings().items() if form in text]
    found += [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in text]
    return found


def _status_line(head: bytes) -> bytes:
    return f"HTTP/1.1 2x0 {KEY}\r\nContent-Length: 0\r\n\r\n".encode()


def _reason_phrase(head: bytes) -> bytes:
    return f"HTTP/1.1 503 {KEY}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


def _headers(head: bytes) -> bytes:
    return (
        "HTTP/1.1 500 Internal Server Error\r\n"
        f"X-Request-Id: {KEY}\r\nX-Echo: {BEARER}\r\nContent-Type: text/{KEY}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()


def _bad_header(head: bytes) -> bytes:
    return f"HTTP/1.1 200 OK\r\nX-Echo {KEY}\r\nContent-Length: 0\r\n\r\n".encode()


def _bad_chunk(head: bytes) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n{KEY}\r\n"
    ).encode()


def _json_body(head: bytes) -> bytes:
    forms = encodings()
    body = (
        '{"error": "bad key ' + forms["json"] + '", "also": "' + forms["json-u"] + '", '
        '"mixed": "' + forms["json-U-mixed"] + '", "url": "?k=' + forms["percent"] + '", '
        '"auth": "' + forms["base64-bearer"] + '", "basic": "' + forms["base64url-basic"] + '"}'
    ).encode()
    return (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def _text_body(head: bytes) -> bytes:
    body = " ".join(encodings().values()).encode()
    return (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    "status-line": _status_line,
    "reason-phrase": _reason_phrase,
    "headers": _headers,
    "bad-header": _bad_header,
    "bad-chunk": _bad_chunk,
    "json-body": _json_body,
    "text-body": _text_body,
}


@asynccontextmanager
async def flux(url: str, transport: str, events: list[FluxEvent]) -> AsyncIterator[FluxClient]:
    async def no_sleep(seconds: float) -> None:
        pass

    provider = Dataoorts(KEY, base_url=url)
    retry = Retry(1, sleep=no_sleep)
    if transport == "httpx":
        async with FluxClient(provider, max_retries=retry, on_event=events.append) as client:
            yield client
        return
    http = httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
    async with (
        http,
        FluxClient(provider, max_retries=retry, on_event=events.append, http_client=http) as client,
    ):
        yield client


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_an_echoed_key_shows_nowhere(
    answer: str,
    transport: str,
    anyio_backend: str,
    all_debug_logs: pytest.LogCaptureFixture,
) -> None:
    """Wherever the server puts the key and however it encodes it, it shows nowhere."""
    if transport == "aiohttp" and anyio_backend != "asyncio":
        pytest.skip("AiohttpTransport runs on asyncio only")
    events: list[FluxEvent] = []
    async with (
        hostile_server(ANSWERS[answer]) as server,
        flux(server.url, transport, events) as client,
    ):
        with pytest.raises(FluxError) as caught:
            await client.generate("a lighthouse at dusk")
    error = caught.value
    assert len(server.heads) == error.attempts >= 1  # it did talk to the hostile server
    texts = [
        str(error),
        repr(error),
        str(getattr(error, "body", "")),
        str(getattr(error, "request_id", "")),
        "".join(traceback.format_exception(error)),
        *(str(e) for e in error.previous),
        *(f"{event!r} {event.error}" for event in events),
        *(record.getMessage() for record in all_debug_logs.records),
    ]
    cause: BaseException | None = error
    while cause is not None:
        texts += [str(cause), repr(cause), *map(str, cause.args)]
        cause = cause.__cause__ or cause.__context__
    found = [(leaks(text), text[:300]) for text in texts if leaks(text)]
    assert not found
    # The DEBUG records really were captured: flux_sdk logs every attempt (and httpcore
    # every step of the requests it sends, which flux_sdk's lean connections do not use).
    names = {record.name for record in all_debug_logs.records}
    assert "flux_sdk" in names
    assert FILTER.holding == 0  # nothing is kept once the request is over


def test_redact_blanks_every_encoding_of_a_key() -> None:
    for name, form in encodings().items():
        text = redact(f"before {form} after", [KEY])
        assert not leaks(text), (name, text)
        assert text.startswith("before ")
        assert text.endswith(" after")


def test_redact_blanks_keys_of_every_printable_character() -> None:
    """Each of the characters an API key may hold, alone JSON- or %-escaped."""
    for code in range(0x21, 0x7F):
        key = f"ab{chr(code)}cd{chr(code)}ef"
        for form in encodings(key).values():
            assert key not in redact(form, [key])
            assert form not in redact(form, [key])


def test_excerpt_never_cuts_an_escaped_key_in_half() -> None:
    escaped = encodings()["json-u"]
    for start in range(40):
        body = ("x" * start + escaped).encode()
        assert not leaks(excerpt(body, [KEY], limit=start + 20))


def test_redaction_leaves_ordinary_text_alone() -> None:
    text = 'HTTP 500: {"error": "model is loading", "id": "req-123"}'
    assert redact(text, [KEY]) == text


def test_the_log_filter_is_installed_and_can_be_turned_off() -> None:
    """On by default on the loggers httpx and httpcore write to; one call removes it."""
    record = logging.LogRecord("httpcore.http11", logging.DEBUG, "", 0, "got %s", (KEY,), None)
    for name in LOGGERS:
        assert FILTER in logging.getLogger(name).filters
    FILTER.hold((KEY,))
    try:
        assert FILTER.filter(record) is True  # redacted, never dropped
        assert KEY not in record.getMessage()
        set_log_redaction(False)
        assert not any(FILTER in logging.getLogger(name).filters for name in LOGGERS)
    finally:
        FILTER.drop((KEY,))
        set_log_redaction(True)
    assert all(FILTER in logging.getLogger(name).filters for name in LOGGERS)
    untouched = logging.LogRecord("httpx", logging.INFO, "", 0, "HTTP %s", (KEY,), None)
    assert FILTER.filter(untouched)
    assert untouched.args == (KEY,)  # no request in flight: left alone
