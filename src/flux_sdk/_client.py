"""`FluxClient`: validates, runs the middleware chain, and does the only I/O."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

import httpx
from pydantic import JsonValue

from ._batch import Batch, BatchIterator, BatchProgress, SavedImage
from ._connections import Connections
from ._errors import (
    ConfigError,
    FluxError,
    InvalidRequestError,
    InvalidResponseError,
    RequestTimeout,
    TransportError,
)
from ._events import Call, EventHook, FluxEvent, current_call
from ._middleware import ConcurrencyLimit, Deadline, Middleware, RateLimit, chain
from ._models import GeneratedImage, GenerateRequest
from ._provider import FlowProvider, Provider
from ._retry import Retry
from ._version import __version__

__all__ = ["DEFAULT_TIMEOUT", "FluxClient"]

logger = logging.getLogger("flux_sdk")

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Per attempt. Generation takes about a second, but Baseten holds a request while it
scales a model up from zero, so reads get two minutes."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An error body is only quoted, so reading more than this would be waste.
_ERROR_BODY_LIMIT = 64 * 1024
_DROP_ON_REBUILD = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})

_T = TypeVar("_T")


class FluxClient:
    """Generates images through one provider; use it as ``async with FluxClient(...)``.

    Every call runs through a chain of middleware, outermost first::

        Deadline -> Retry -> RateLimit -> ConcurrencyLimit -> your middleware -> provider

    The deadline is outermost so retries cannot outlive the caller's budget; the rate and
    concurrency limits sit inside retry so every attempt is counted and a backoff sleep
    holds no slot; your own middleware sees each attempt. ``max_retries``,
    ``max_concurrency`` and ``rate_limit`` take a number, or a configured `Retry`,
    `ConcurrencyLimit` or `RateLimit` (to tune backoff, or to share a limit between
    clients). ``timeout`` bounds each attempt, ``deadline`` the whole call.

    It owns its connections: one single-connection ``httpx.AsyncClient`` per request in
    flight, made as concurrency first needs them (httpcore's pool costs more per request
    the more connections it holds; see ``_connections.py``), so no request ever waits for
    a connection. Pass ``http_client`` to use your own client instead; it is used for
    every request and left open. A body over ``max_response_bytes`` is refused without
    being read.
    ``on_event`` receives a `FluxEvent` per attempt, retry, success and failure.
    """

    def __init__(
        self,
        provider: Provider | FlowProvider,
        *,
        max_retries: int | Retry = 3,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        max_concurrency: int | ConcurrencyLimit = 16,
        rate_limit: float | RateLimit | None = None,
        middleware: Sequence[Middleware] = (),
        on_event: EventHook | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not isinstance(provider, (Provider, FlowProvider)):
            raise ConfigError(
                f"{provider!r} is not a provider: it needs name, rules, and either "
                "build_request and parse_response, or generate_flow"
            )
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ConfigError(
                f"max_response_bytes must be a positive integer (got {max_response_bytes!r})"
            )
        try:
            self.retry = max_retries if isinstance(max_retries, Retry) else Retry(max_retries)
            self.concurrency = (
                max_concurrency
                if isinstance(max_concurrency, ConcurrencyLimit)
                else ConcurrencyLimit(max_concurrency)
            )
            self.rate_limit = (
                rate_limit
                if rate_limit is None or isinstance(rate_limit, RateLimit)
                else RateLimit(rate_limit)
            )
            self.deadline = Deadline(deadline)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.provider = provider
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_response_bytes = max_response_bytes
        self.on_event = on_event
        self._timeout_extension = self.timeout.as_dict()
        if http_client is None:
            self._connections = Connections(_single_connection_clients(self.timeout))
            headers = _OUR_HEADERS
        else:
            self._connections = Connections(shared=http_client)
            headers = http_client.headers
        # Requests come from the provider, not from http_client.build_request, so the
        # client's default headers (User-Agent, a user's own) are merged in here.
        self._default_headers = list(headers.multi_items())
        self._closed = False
        self._flow = isinstance(provider, FlowProvider) and not isinstance(provider, Provider)
        # Why this order: see the class docstring.
        layers: list[Middleware] = [self.deadline, self.retry]
        if self.rate_limit is not None:
            layers.append(self.rate_limit)
        layers += [self.concurrency, *middleware]
        self.middleware: tuple[Middleware, ...] = tuple(layers)
        self._chain = chain(layers, self._call_provider)

    def __repr__(self) -> str:
        return f"FluxClient({self.provider!r})"

    async def __aenter__(self) -> FluxClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections it made (not a client passed in). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._connections.aclose()

    async def generate(
        self,
        prompt_or_request: str | GenerateRequest,
        *,
        seed: int | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        max_retries: int | None = None,
        deadline: float | None = None,
        timeout: float | httpx.Timeout | None = None,
        **extra: JsonValue,
    ) -> GeneratedImage:
        """Generate one image.

        Everything is checked before anything is sent: a bad value raises
        `InvalidRequestError`. Keyword arguments override the fields of a
        `GenerateRequest` passed in; unknown ones go into ``extra``. ``max_retries``,
        ``deadline`` and ``timeout`` override the client's for this call only.
        """
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")
        request = _make_request(prompt_or_request, seed, steps, width, height, extra)
        call = Call(self.provider.name, on_event=self.on_event)
        _call_options(call, max_retries, deadline, timeout)
        self.provider.rules.check(request, self.provider.name)
        if not self._flow:
            call.prebuilt = (request, self._build(request, call))
        token = current_call.set(call)
        start = time.perf_counter()
        try:
            image = await self._chain(request)
        except FluxError as exc:
            call.emit(
                FluxEvent(
                    "failure",
                    provider=call.provider,
                    attempt=max(call.attempts, 1),
                    elapsed=time.perf_counter() - start,
                    error=exc,
                )
            )
            raise
        finally:
            current_call.reset(token)
        elapsed = time.perf_counter() - start
        call.emit(
            FluxEvent("success", provider=call.provider, attempt=image.attempts, elapsed=elapsed)
        )
        return dataclasses.replace(image, elapsed=elapsed)

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = ...,
        keep_images: Literal[True] = ...,
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
    ) -> list[GeneratedImage | FluxError]: ...

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str],
        keep_images: Literal[False],
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
    ) -> list[SavedImage | FluxError]: ...

    @overload
    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = ...,
        keep_images: bool,
        on_progress: Callable[[BatchProgress], object] | None = ...,
        max_retries: int | None = ...,
    ) -> list[GeneratedImage | SavedImage | FluxError]: ...

    async def generate_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        keep_images: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_retries: int | None = None,
    ) -> (
        list[GeneratedImage | FluxError]
        | list[SavedImage | FluxError]
        | list[GeneratedImage | SavedImage | FluxError]
    ):
        """Generate an image for each item; results in input order.

        Items are prompts or `GenerateRequest`s. A failed item is its `FluxError` in the
        list and the others go on; the client's retries and limits apply to each, and at
        most ``max_concurrency`` run at once. With ``save_dir`` each image is written as
        it arrives (see the batch docs for names, ``manifest.jsonl`` and resuming), and
        ``keep_images=False`` keeps only a `SavedImage` record of each in memory.
        ``on_progress`` is called with a `BatchProgress` each time an item ends.
        ``max_retries`` overrides the client's for every item.
        """
        batch = self._batch(items, save_dir, keep_images, on_progress, max_retries)
        return cast("list[GeneratedImage | FluxError]", await batch.collect())

    def iter_many(
        self,
        items: Iterable[str | GenerateRequest],
        *,
        save_dir: str | os.PathLike[str] | None = None,
        keep_images: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_retries: int | None = None,
    ) -> BatchIterator:
        """Like `generate_many`, but hands over ``(index, result)`` as each item ends.

        Read the results inside ``async with client.iter_many(items) as results:`` with
        ``async for index, result in results:``. Each result can be written and dropped,
        so memory follows the concurrency limit, not the batch size. Leaving the block
        cancels the rest and waits for it to stop.
        """
        return self._batch(items, save_dir, keep_images, on_progress, max_retries).iterate()

    def _batch(
        self,
        items: Iterable[str | GenerateRequest],
        save_dir: str | os.PathLike[str] | None,
        keep_images: bool,
        on_progress: Callable[[BatchProgress], object] | None,
        max_retries: int | None,
    ) -> Batch:
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")

        async def generate(request: GenerateRequest, max_retries: int | None) -> GeneratedImage:
            return await self.generate(request, max_retries=max_retries)

        return Batch(
            generate,
            items,
            limit=self.concurrency.limit,
            save_dir=save_dir,
            keep_images=keep_images,
            on_progress=on_progress,
            max_retries=max_retries,
        )

    def _build(self, request: GenerateRequest, call: Call | None) -> httpx.Request:
        """The provider's HTTP request for ``request``, with our defaults: no I/O."""
        # Decided once in __init__: a runtime Protocol isinstance costs ~10 us a call.
        provider = cast(Provider, self.provider)
        http_request = self._with_defaults(provider.build_request(request))
        if call is not None and call.timeout is not None:
            http_request.extensions["timeout"] = call.timeout
        return http_request

    async def _call_provider(self, request: GenerateRequest) -> GeneratedImage:
        """The innermost call: one attempt at the provider."""
        call = current_call.get()
        if call is not None:
            call.attempts += 1
        start = time.perf_counter()
        try:
            image = await self._attempt(request, call)
        except FluxError as exc:
            self._attempted(call, start, getattr(exc, "status_code", None), exc, len_=None)
            raise
        self._attempted(call, start, 200, None, len_=len(image.data))
        return image

    async def _attempt(self, request: GenerateRequest, call: Call | None) -> GeneratedImage:
        if self._flow:
            self.provider.rules.check(request, self.provider.name)
            return await self._run_flow(request)
        provider = cast(Provider, self.provider)
        prebuilt = call.prebuilt if call is not None else None
        if prebuilt is not None and prebuilt[0] is request:
            http_request = prebuilt[1]
        else:
            self.provider.rules.check(request, self.provider.name)
            http_request = self._build(request, call)
        response = await self._send(http_request)
        parse = provider.parse_response
        return self._guard(lambda: parse(request, response), response)

    def _attempted(
        self,
        call: Call | None,
        start: float,
        status: int | None,
        error: FluxError | None,
        len_: int | None,
    ) -> None:
        """Log and report one finished attempt: one DEBUG line, one event."""
        elapsed = time.perf_counter() - start
        if logger.isEnabledFor(logging.DEBUG):
            if error is None:
                outcome = f"HTTP {status}, a {len_}-byte image"
            else:
                outcome = f"{type(error).__name__}: {error}"
            logger.debug(
                "%s attempt %d: %s in %.3f s",
                self.provider.name,
                call.attempts if call is not None else 1,
                outcome,
                elapsed,
            )
        if call is not None and call.on_event is not None:
            call.emit(
                FluxEvent(
                    "attempt",
                    provider=call.provider,
                    attempt=call.attempts,
                    elapsed=elapsed,
                    status_code=status,
                    error=error,
                )
            )

    async def _run_flow(self, request: GenerateRequest) -> GeneratedImage:
        flow = cast(FlowProvider, self.provider).generate_flow(request)
        try:
            http_request = self._guard(lambda: next(flow), None)
            while True:
                response = await self._send(self._with_defaults(http_request))
                http_request = self._guard(functools.partial(flow.send, response), response)
        except StopIteration as done:
            image: GeneratedImage = done.value
            return image
        finally:
            flow.close()

    def _with_defaults(self, http_request: httpx.Request) -> httpx.Request:
        """Add the client's default headers and timeout to a provider-built request."""
        for key, value in self._default_headers:
            if key not in http_request.headers:
                http_request.headers[key] = value
        http_request.extensions.setdefault("timeout", self._timeout_extension)
        return http_request

    def _guard(self, step: Callable[[], _T], response: httpx.Response | None) -> _T:
        """Run provider code; a bug in it still surfaces as a FluxError."""
        try:
            return step()
        except FluxError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            status = "" if response is None else f" (HTTP {response.status_code})"
            raise InvalidResponseError(
                f"{self.provider.name} could not handle its response{status}: "
                f"{type(exc).__name__}: {exc}",
                provider=self.provider.name,
                status_code=None if response is None else response.status_code,
            ) from exc

    async def _send(self, http_request: httpx.Request) -> httpx.Response:
        """Send one request and read its body, capped, into a new ``httpx.Response``."""
        name = self.provider.name
        accept = http_request.headers.get("accept-encoding")
        if accept is not None and accept != "gzip, deflate":
            # Never invite an encoding that _read_capped cannot inflate within the cap.
            http_request.headers["accept-encoding"] = _accepted_encodings(accept)
        http = self._connections.take()
        try:
            try:
                response = await http.send(http_request, stream=True, follow_redirects=False)
                try:
                    body = await self._read_capped(response)
                finally:
                    await response.aclose()
            finally:
                self._connections.give(http)
        except httpx.TimeoutException as exc:
            raise RequestTimeout(
                f"{name} did not answer in time ({_describe(exc)})", provider=name
            ) from exc
        except httpx.DecodingError as exc:
            raise InvalidResponseError(
                f"{name} sent a body that could not be decoded ({_describe(exc)})", provider=name
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"the connection to {name} at {http_request.url.host} failed ({_describe(exc)})",
                provider=name,
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"the connection to {name} at {http_request.url.host} failed ({_describe(exc)})",
                provider=name,
            ) from exc
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROP_ON_REBUILD]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=body,
            request=http_request,
            extensions=response.extensions,
        )

    async def _read_capped(self, response: httpx.Response) -> bytes:
        limit = self.max_response_bytes if response.is_success else _ERROR_BODY_LIMIT
        declared = response.headers.get("content-length", "")
        if response.is_success and declared.isdigit() and int(declared) > limit:
            raise self._too_large(f"declares {int(declared)} bytes")
        try:
            # A response built whole (a mock transport's) was read and decoded already.
            whole = response.content
        except httpx.ResponseNotRead:
            pass
        else:
            if len(whole) > limit and response.is_success:
                raise self._too_large(f"ran past {limit} bytes")
            return whole[:limit]
        # The body is read raw and inflated here, never past the room left under the cap:
        # httpx's own decoder inflates each chunk whole, so a few kilobytes of gzip arriving
        # together could become gigabytes before any check.
        layers = _inflaters(response.headers.get_list("content-encoding", split_commas=True))
        chunks: list[bytes] = []
        size = raw = 0
        # aclosing: leaving the loop early must still finalise httpx's generators (trio
        # reports any that are left for the garbage collector).
        stream = cast("AsyncGenerator[bytes, None]", response.aiter_raw())
        async with contextlib.aclosing(stream) as body:
            async for chunk in body:
                raw += len(chunk)
                size += _inflate(layers, chunk, limit - size, chunks)
                if size > limit or raw > limit:
                    if response.is_success:
                        raise self._too_large(f"ran past {limit} bytes")
                    break
        data = b"".join(chunks)
        return data if size <= limit else data[:limit]

    def _too_large(self, what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self.provider.name}'s response {what}, over the cap of "
            f"{self.max_response_bytes} bytes; raise FluxClient(max_response_bytes=...) "
            "if images this large are expected",
            provider=self.provider.name,
            retryable=False,
        )


_OUR_HEADERS = httpx.Headers({"User-Agent": f"flux-sdk-python/{__version__}"})
# An idle connection is dropped after 4 s: servers commonly close theirs after 5 s
# (uvicorn's default, and httpx's own expiry), and a request sent on a connection the
# server is closing at that moment fails although the server never saw it.
_ONE_CONNECTION = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=4.0)


def _single_connection_clients(timeout: httpx.Timeout) -> Callable[[], httpx.AsyncClient]:
    """A maker of the clients `Connections` hands out: one connection each, one TLS
    context between them (loading the CA certificates costs milliseconds each time)."""
    tls = httpx.create_ssl_context()

    def make() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=timeout, limits=_ONE_CONNECTION, headers=_OUR_HEADERS, verify=tls
        )

    return make


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _make_request(
    prompt_or_request: str | GenerateRequest,
    seed: int | None,
    steps: int | None,
    width: int | None,
    height: int | None,
    extra: dict[str, Any],
) -> GenerateRequest:
    if isinstance(prompt_or_request, str):
        return GenerateRequest(
            prompt=prompt_or_request,
            seed=seed,
            steps=steps,
            width=width,
            height=height,
            extra=extra,
        )
    if not isinstance(prompt_or_request, GenerateRequest):
        raise InvalidRequestError(
            "generate() takes a prompt string or a GenerateRequest, "
            f"not {type(prompt_or_request).__name__}"
        )
    if seed is None and steps is None and width is None and height is None and not extra:
        return prompt_or_request
    changes: dict[str, Any] = {"extra": {**prompt_or_request.extra, **extra}}
    for field, value in (("seed", seed), ("steps", steps), ("width", width), ("height", height)):
        if value is not None:
            changes[field] = value
    return prompt_or_request.replace(**changes)


def _call_options(
    call: Call,
    max_retries: int | None,
    deadline: float | None,
    timeout: float | httpx.Timeout | None,
) -> None:
    """Check and record one call's overrides of the client's knobs."""
    if max_retries is not None:
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise InvalidRequestError(
                f"max_retries must be a non-negative integer (got {max_retries!r})"
            )
        call.max_retries = max_retries
    if deadline is not None:
        call.deadline = _seconds("deadline", deadline)
    if timeout is not None:
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(_seconds("timeout", timeout))
        call.timeout = timeout.as_dict()


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidRequestError(f"{name} must be a positive number of seconds (got {value!r})")
    return float(value)


# Bounded decoding of compressed bodies, for FluxClient._read_capped.

_INFLATE_STEP = 64 * 1024
# Each layer holds a 32 KiB window; urllib3 stops at five layers too.
_MAX_ENCODING_LAYERS = 5
_DECODED_HERE = frozenset({"gzip", "x-gzip", "deflate", "identity"})


class _Inflater:
    """One gzip or deflate layer of a body, inflated at most ``_INFLATE_STEP`` bytes a call."""

    def __init__(self, coding: str) -> None:
        import zlib

        deflate = coding == "deflate"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS if deflate else zlib.MAX_WBITS | 16)
        # "deflate" means zlib-wrapped, but some servers send raw deflate, as httpx and
        # browsers allow: the input is kept until the 2-byte zlib header has been checked,
        # so a body that fails that check can be read again as raw deflate.
        self._head: bytes | None = b"" if deflate else None
        self.tail = b""

    def inflate(self, data: bytes) -> bytes:
        """Up to ``_INFLATE_STEP`` bytes out of ``data``; input left over goes to ``tail``."""
        import zlib

        try:
            out = self._zlib.decompress(data, _INFLATE_STEP)
        except zlib.error as exc:
            if self._head is None:
                raise httpx.DecodingError(str(exc)) from exc
            data, self._head = self._head + data, None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.inflate(data)
        if self._head is not None:
            self._head += data
            if len(self._head) >= 2:
                self._head = None  # the header passed: this is zlib-wrapped deflate
        self.tail = self._zlib.unconsumed_tail
        return out


def _inflaters(codings: list[str]) -> list[_Inflater]:
    """The decoders for a ``Content-Encoding`` list, the last one applied first.

    Unknown codings pass through undecoded, as httpx does; br and zstd are refused
    because they were not asked for and cannot be inflated within a bound here.
    """
    layers = []
    for coding in reversed(codings):
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            layers.append(_Inflater(coding))
        elif coding in ("br", "zstd"):
            raise httpx.DecodingError(
                f"it is {coding}-encoded, which flux_sdk does not ask for or decode"
            )
    if len(layers) > _MAX_ENCODING_LAYERS:
        raise httpx.DecodingError(f"it has {len(layers)} layers of compression")
    return layers


def _inflate(layers: Sequence[_Inflater], data: bytes, room: int, out: list[bytes]) -> int:
    """Decode ``data`` through ``layers`` into ``out``; return how many bytes were added.

    It stops as soon as more than ``room`` bytes have come out, so whatever a body's
    compression ratio, ``out`` grows by at most ``room + _INFLATE_STEP`` bytes.
    """
    if not layers:
        out.append(data)
        return len(data)
    layer, rest = layers[0], layers[1:]
    produced = 0
    while True:
        piece = layer.inflate(data)
        data = layer.tail
        if piece:
            produced += _inflate(rest, piece, room - produced, out)
            if produced > room:
                return produced
        if not data and len(piece) < _INFLATE_STEP:
            # All input used and the output not full: nothing is pending inside zlib.
            return produced


def _accepted_encodings(value: str) -> str:
    """An ``Accept-Encoding`` value without the codings `_inflaters` refuses."""
    kept = [
        item.strip()
        for item in value.split(",")
        if item.split(";")[0].strip().lower() in _DECODED_HERE
    ]
    return ", ".join(kept) or "identity"
