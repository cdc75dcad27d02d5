"""`FluxClient`: validates, runs the middleware chain, and does the only I/O."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx
from pydantic import JsonValue

from ._errors import (
    ConfigError,
    FluxError,
    InvalidRequestError,
    InvalidResponseError,
    RequestTimeout,
    TransportError,
)
from ._models import GeneratedImage, GenerateRequest
from ._provider import FlowProvider, Provider
from ._version import __version__

__all__ = ["DEFAULT_TIMEOUT", "CallNext", "FluxClient", "Middleware"]

logger = logging.getLogger("flux_sdk")

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
"""Per attempt. Generation takes about a second, but Baseten holds a request while it
scales a model up from zero, so reads get two minutes."""
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An error body is only quoted, so reading more than this would be waste.
_ERROR_BODY_LIMIT = 64 * 1024
_DROP_ON_REBUILD = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})

_T = TypeVar("_T")

CallNext = Callable[[GenerateRequest], Awaitable[GeneratedImage]]
Middleware = Callable[[GenerateRequest, CallNext], Awaitable[GeneratedImage]]
"""``async def middleware(request, call_next) -> GeneratedImage``, as in Starlette."""

# The HTTP request built (and so validated) in generate(), handed to the innermost call
# without a second build. A middleware that swaps the GenerateRequest gets a fresh one.
_prebuilt: ContextVar[tuple[GenerateRequest, httpx.Request] | None] = ContextVar(
    "flux_sdk_prebuilt", default=None
)


class FluxClient:
    """Generates images through one provider; use it as ``async with FluxClient(...)``.

    It owns one ``httpx.AsyncClient`` (sized for ``max_concurrency`` connections) unless
    you pass ``http_client``, which it uses and leaves open. ``timeout`` bounds each
    attempt; a response body over ``max_response_bytes`` is refused without being read.
    ``middleware`` runs outermost first around the provider call.
    """

    def __init__(
        self,
        provider: Provider | FlowProvider,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        max_concurrency: int = 16,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        if not isinstance(provider, (Provider, FlowProvider)):
            raise ConfigError(
                f"{provider!r} is not a provider: it needs name, rules, and either "
                "build_request and parse_response, or generate_flow"
            )
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be a positive integer (got {max_concurrency!r})"
            )
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ConfigError(
                f"max_response_bytes must be a positive integer (got {max_response_bytes!r})"
            )
        self.provider = provider
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_response_bytes = max_response_bytes
        self._timeout_extension = self.timeout.as_dict()
        self._owns_http = http_client is None
        if http_client is None:
            limits = httpx.Limits(
                max_connections=max_concurrency, max_keepalive_connections=max_concurrency
            )
            http_client = httpx.AsyncClient(
                timeout=self.timeout,
                limits=limits,
                headers={"User-Agent": f"flux-sdk-python/{__version__}"},
            )
        self._http = http_client
        # Requests come from the provider, not from http_client.build_request, so the
        # client's default headers (User-Agent, a user's own) are merged in here.
        self._default_headers = list(http_client.headers.multi_items())
        self._closed = False
        self._flow = isinstance(provider, FlowProvider) and not isinstance(provider, Provider)
        call: CallNext = self._call_provider
        for layer in reversed(middleware):
            call = _wrap(layer, call)
        self._chain = call

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
        """Close the connection pool (unless it was passed in). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def generate(
        self,
        prompt_or_request: str | GenerateRequest,
        *,
        seed: int | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        **extra: JsonValue,
    ) -> GeneratedImage:
        """Generate one image.

        Everything is checked before anything is sent: a bad value raises
        `InvalidRequestError`. Keyword arguments override the fields of a
        `GenerateRequest` passed in; unknown ones go into ``extra``.
        """
        if self._closed:
            raise ConfigError("this FluxClient is closed; create a new one")
        request = _make_request(prompt_or_request, seed, steps, width, height, extra)
        self.provider.rules.check(request, self.provider.name)
        token = _prebuilt.set(None if self._flow else (request, self._build(request)))
        start = time.perf_counter()
        try:
            image = await self._chain(request)
        finally:
            _prebuilt.reset(token)
        return dataclasses.replace(image, elapsed=time.perf_counter() - start)

    def _build(self, request: GenerateRequest) -> httpx.Request:
        """The provider's HTTP request for ``request``, with our defaults: no I/O."""
        assert isinstance(self.provider, Provider)
        return self._with_defaults(self.provider.build_request(request))

    async def _call_provider(self, request: GenerateRequest) -> GeneratedImage:
        """The innermost call: one attempt at the provider."""
        if self._flow:
            self.provider.rules.check(request, self.provider.name)
            return await self._run_flow(request)
        assert isinstance(self.provider, Provider)
        prebuilt = _prebuilt.get()
        if prebuilt is not None and prebuilt[0] is request:
            http_request = prebuilt[1]
        else:
            self.provider.rules.check(request, self.provider.name)
            http_request = self._build(request)
        response = await self._send(http_request)
        parse = self.provider.parse_response
        return self._guard(lambda: parse(request, response), response)

    async def _run_flow(self, request: GenerateRequest) -> GeneratedImage:
        assert isinstance(self.provider, FlowProvider)
        flow = self.provider.generate_flow(request)
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
        start = time.perf_counter()
        try:
            response = await self._http.send(http_request, stream=True, follow_redirects=False)
            try:
                body = await self._read_capped(response)
            finally:
                await response.aclose()
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
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s %s -> HTTP %d, %d bytes in %.3f s",
                name,
                http_request.method,
                http_request.url,
                response.status_code,
                len(body),
                time.perf_counter() - start,
            )
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
        chunks: list[bytes] = []
        size = 0
        # aclosing: leaving the loop early must still finalise httpx's generators (trio
        # reports any that are left for the garbage collector).
        stream = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
        async with contextlib.aclosing(stream) as body:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    if response.is_success:
                        raise self._too_large(f"ran past {limit} bytes")
                    chunks.append(chunk[: len(chunk) - (size - limit)])
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self.provider.name}'s response {what}, over the cap of "
            f"{self.max_response_bytes} bytes; raise FluxClient(max_response_bytes=...) "
            "if images this large are expected",
            provider=self.provider.name,
            retryable=False,
        )


def _wrap(layer: Middleware, call_next: CallNext) -> CallNext:
    async def call(request: GenerateRequest) -> GeneratedImage:
        return await layer(request, call_next)

    return call


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
