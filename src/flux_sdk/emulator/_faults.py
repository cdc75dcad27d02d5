"""Fault injection: the emulator misbehaving the way real providers and networks do.

A ``FaultPlan`` decides, once per provider request, whether that request is answered
normally or with a ``Fault``. HTTP-level faults replace the answer with a canned one in
the provider's own error shape; transport-level faults (RESET, TRUNCATED, STALL, SLOW)
let the normal answer be computed, then damage it on its way out.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from flux_sdk.emulator._asgi import Message, Receive, Send, send_bytes


class Fault(str, enum.Enum):
    """One way a provider can fail a request; the value is a short name for CLIs and logs.

    What a client sees, over a real server (uvicorn) and in process (``httpx.ASGITransport``):

    - ``RATE_LIMIT``, ``SERVER_ERROR``, ``BAD_GATEWAY``, ``UNAVAILABLE``: HTTP 429, 500,
      502 or 503 with the provider's error body (a 429 also carries ``Retry-After``),
      the same in both settings.
    - ``RESET``: the status line, headers and half the body, then the connection drops.
      Over a server the client sees an incomplete body (``httpx.RemoteProtocolError``);
      in process the call raises ``InjectedDisconnect``.
    - ``TRUNCATED``: ``content-length`` declares 1 KiB more than the body sent, then the
      connection closes: ``httpx.RemoteProtocolError`` over a server, never a short body
      that looks whole; ``InjectedDisconnect`` in process.
    - ``STALL``: the status line and headers, then nothing for ``stall_seconds`` (the
      client's read timeout fires), then the normal body. It ends early if the client
      leaves. In process httpx enforces no timeouts: cancel the call to give up.
    - ``SLOW``: the normal body, ``slow_chunk`` bytes every ``slow_interval`` seconds.
      In process the whole drip happens before the response is returned.
    - ``INVALID_JSON``: 200 ``application/json`` whose body is cut-off JSON.
    - ``INVALID_BASE64``: 200, the provider's JSON shape, but the image field fails to
      decode even with a lenient base64 decoder.
    - ``HTML``: 200 ``text/html``, an error page such as a CDN or proxy serves.
    """

    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    RESET = "reset"
    TRUNCATED = "truncated"
    STALL = "stall"
    SLOW = "slow"
    INVALID_JSON = "invalid_json"
    INVALID_BASE64 = "invalid_base64"
    HTML = "html"


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)


class InjectedDisconnect(ConnectionError):
    """The app dropping a connection mid-response on purpose (``RESET``, ``TRUNCATED``).

    Raising is how an ASGI app makes its server close a connection. A server therefore
    sees this exception, never the client; in process (``httpx.ASGITransport``) it
    reaches the caller itself, an ``OSError`` as a real reset is. The emulator keeps it
    out of uvicorn's error log: it is a planned fault, not a crash.
    """

    def __init__(self, fault: Fault) -> None:
        super().__init__(f"emulator: injected {fault.name} fault, connection dropped")
        self.fault = fault


class FaultPlan:
    """Which requests get which fault: a script first, then a seeded random rate.

    Each provider request draws once (``draw``). During an ``outage`` every request gets
    that fault. Otherwise the next ``script`` entry is used (None answers normally);
    once the script is spent, a request is faulty with probability ``rate``, the fault
    chosen uniformly from ``kinds``. The draws come from ``random.Random(seed)``, so a
    run is reproducible. ``injected`` counts the faults drawn per kind and ``requests``
    every draw, so tests can assert what happened.

    ``retry_after`` (seconds) goes in a 429's ``Retry-After``; a fraction is sent as a
    decimal, which RFC 9110 does not allow but makes fast tests possible. ``STALL``
    waits ``stall_seconds``; ``SLOW`` sends ``slow_chunk`` bytes every ``slow_interval``
    seconds, so at the defaults a real-size image never finishes: it is there to test a
    total deadline, not a read timeout. These settings are read at each fault.

    The methods and ``draw`` take a lock: tests may re-arm a plan from their own thread
    while a server thread draws from it.
    """

    def __init__(
        self,
        script: Iterable[Fault | None] = (),
        *,
        rate: float = 0.0,
        kinds: Sequence[Fault] = ALL_FAULTS,
        seed: int = 0,
        retry_after: float = 1.0,
        stall_seconds: float = 30.0,
        slow_interval: float = 1.0,
        slow_chunk: int = 1,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be from 0 to 1, got {rate!r}")
        for name, value in [
            ("retry_after", retry_after),
            ("stall_seconds", stall_seconds),
            ("slow_interval", slow_interval),
        ]:
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if slow_chunk < 1:
            raise ValueError(f"slow_chunk must be at least 1 byte, got {slow_chunk!r}")
        self.kinds = tuple(Fault(kind) for kind in kinds)
        if not self.kinds:
            raise ValueError("kinds must name at least one Fault")
        self.rate = rate
        self.retry_after = retry_after
        self.stall_seconds = stall_seconds
        self.slow_interval = slow_interval
        self.slow_chunk = slow_chunk
        self.injected: collections.Counter[Fault] = collections.Counter()
        self.requests = 0
        self._script: collections.deque[Fault | None] = collections.deque()
        self._outage: Fault | None = None
        # Not for security: a seeded generator is the point, so runs can be replayed.
        self._random = random.Random(seed)  # noqa: S311
        self._lock = threading.Lock()
        self.extend(script)

    def extend(self, script: Iterable[Fault | None]) -> None:
        """Queue more scripted requests after those not yet used (None: answer normally)."""
        entries = [None if entry is None else Fault(entry) for entry in script]
        with self._lock:
            self._script.extend(entries)

    def outage(self, kind: Fault) -> None:
        """Give every request ``kind`` until ``clear``, whatever the script and rate say."""
        kind = Fault(kind)
        with self._lock:
            self._outage = kind

    def clear(self) -> None:
        """End an outage and drop the rest of the script; ``rate`` still applies after."""
        with self._lock:
            self._outage = None
            self._script.clear()

    def draw(self) -> Fault | None:
        """The fault for the next request, or None; the app calls it once per request."""
        with self._lock:
            self.requests += 1
            if self._outage is not None:
                fault: Fault | None = self._outage
            elif self._script:
                fault = self._script.popleft()
            elif self.rate and self._random.random() < self.rate:
                fault = self._random.choice(self.kinds)
            else:
                fault = None
            if fault is not None:
                self.injected[fault] += 1
            return fault


async def inject(
    fault: Fault,
    plan: FaultPlan,
    answer: Callable[[Send], Awaitable[None]],
    receive: Receive,
    send: Send,
    *,
    canned: Canned | None,
    headers: Mapping[str, str],
) -> None:
    """Answer one request with ``fault``; ``answer(send)`` gives the normal response.

    ``canned`` is the host's own answer for an HTTP-level fault (``Host.fault``); None
    means the fault is ``HTML`` or a transport-level one, which this function makes.
    """
    if canned is None and fault is Fault.HTML:
        canned = 200, _HTML_PAGE, "text/html; charset=utf-8", retry_after(fault, plan)
    if canned is not None:
        status, body, content_type, extra = canned
        await send_bytes(send, status, body, content_type, {**headers, **extra})
        return
    start, body = await _capture(answer)
    if fault is Fault.TRUNCATED:
        start["headers"] = [
            *[(k, v) for k, v in start["headers"] if k.lower() != b"content-length"],
            (b"content-length", str(len(body) + 1024).encode()),
        ]
    await send(start)
    if fault is Fault.RESET:
        await _send_part(send, body[: len(body) // 2])
        _raise_disconnect(fault)
    elif fault is Fault.TRUNCATED:
        await _send_part(send, body)
        _raise_disconnect(fault)
    elif fault is Fault.STALL:
        import anyio  # lazily: importing the emulator stays standard-library only

        if not await _unless_client_leaves(receive, lambda: anyio.sleep(plan.stall_seconds)):
            await send({"type": "http.response.body", "body": body})
    elif fault is Fault.SLOW:
        await _unless_client_leaves(receive, lambda: _drip(send, body, plan))
    else:  # pragma: no cover - every kind is handled above
        raise AssertionError(fault)


PNG_BASE64_START = "iVBORw0KGgoAAAANSUhEUgAA"
# One character past a multiple of four, then a stray "!": lenient decoders fail too.
BAD_BASE64 = PNG_BASE64_START + "A!"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>\n"
    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center>\n"
    b"<hr><center>edge-proxy</center></body></html>\n"
)

# A whole canned answer: status, body, content type and headers beyond the usual ones.
Canned = tuple[int, bytes, str, dict[str, str]]


def retry_after(fault: Fault, plan: FaultPlan) -> dict[str, str]:
    """``Retry-After`` for a 429, nothing for other faults."""
    return {"retry-after": seconds(plan.retry_after)} if fault is Fault.RATE_LIMIT else {}


def seconds(value: float) -> str:
    return f"{value:f}".rstrip("0").rstrip(".")  # 1.0 -> "1", 0.25 -> "0.25"


async def _capture(answer: Callable[[Send], Awaitable[None]]) -> tuple[Message, bytes]:
    """Run the normal handler into a buffer: its start message and its whole body."""
    start: Message = {}
    parts: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            parts.append(message.get("body", b""))

    await answer(keep)
    start["headers"] = list(start.get("headers", []))
    return start, b"".join(parts)


async def _send_part(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _drip(send: Send, body: bytes, plan: FaultPlan) -> None:
    import anyio

    chunk = plan.slow_chunk
    for offset in range(0, len(body), chunk):
        await anyio.sleep(plan.slow_interval)
        await _send_part(send, body[offset : offset + chunk])
    await send({"type": "http.response.body", "body": b""})


async def _unless_client_leaves(receive: Receive, work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work``, abandoned if the client disconnects first; True if it did."""
    import anyio

    left = False
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            nonlocal left
            # The body was read in full, so the next message can only be the disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            group.cancel_scope.cancel()

        group.start_soon(watch)
        await work()
        group.cancel_scope.cancel()
    return left


def _raise_disconnect(fault: Fault) -> None:
    # Idempotent: a logger never holds the same filter twice.
    logging.getLogger("uvicorn.error").addFilter(_not_injected)
    raise InjectedDisconnect(fault)


def _not_injected(record: logging.LogRecord) -> bool:
    """uvicorn logs the app's exception with a traceback; a planned drop is not a crash."""
    return not (record.exc_info and isinstance(record.exc_info[1], InjectedDisconnect))
