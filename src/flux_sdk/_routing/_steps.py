"""Running one call's flow: each step sent through the limits, retried by its kind.

This is the innermost per-call layer. It takes the provider's flow (a one-request
provider is a flow of one ``"generate"`` step), sends each `Step` as one attempt through
the per-attempt chain (rate limit, concurrency limit, your per-attempt middleware, the
I/O), retries it as its kind allows, sleeps through each `Wait`, and, once a job was
`Accepted`, cancels it on the host if the call is cancelled or runs out of time. A
queue job's concurrency slot is held from its accepted submit until the host reports
the job `Ended` or the flow ends (a queue host counts jobs, not requests; see
`_policy._hold`): the runner frees it here, on every way out, after the host was asked
to cancel a job given up on.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import anyio
import httpx

from flux_sdk._base._errors import FluxError, InvalidResponseError
from flux_sdk._base._events import logger
from flux_sdk._base._models import GeneratedImage
from flux_sdk._base._options import check_seconds
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptNext
from flux_sdk._policy._breaker import CircuitOpen
from flux_sdk._policy._hold import Held, release_ended, release_held
from flux_sdk._policy._retry import Retry
from flux_sdk._transport._http import Http
from flux_sdk._transport._redact import redact, redact_exception, secrets_of
from flux_sdk.providers._base import (
    Accepted,
    Ended,
    FlowProvider,
    Provider,
    Step,
    Wait,
    single_request_flow,
)

__all__ = ["StepRunner", "start_flow"]

_T = TypeVar("_T")
# A cancel request is sent after the caller has given up: it may take this long at most.
CANCEL_TIMEOUT = 10.0
# How fast the estimate of a host's job time follows new jobs, and how much earlier than
# a job seen ended at the first look it is guessed to have ended.
_JOB_WEIGHT = 0.2
_EARLIER = 0.97
# How long a lost job keeps its slot before any of the host's jobs was seen ended.
_JOB_UNKNOWN = 1.0
_PROVIDER_BUGS = (ValueError, TypeError, KeyError, IndexError, AttributeError, LookupError)


def start_flow(call: Call, flow_provider: bool) -> None:
    """Start the provider's flow for ``call.request`` up to its first item, so a request
    the provider cannot express fails before any middleware or I/O."""
    if call._flow is not None:
        return
    provider = call.provider
    if flow_provider:
        flow = cast(FlowProvider, provider).generate_flow(call.request)
    else:
        flow = single_request_flow(cast(Provider, provider), call.request)
    try:
        first = next(flow)
    except StopIteration as done:  # a flow that needs no request at all
        first = _Done(done.value)  # type: ignore[assignment]
    call._flow = (flow, first)


class _Done:
    def __init__(self, image: GeneratedImage) -> None:
        self.image = image


class StepRunner:
    """Runs flows for one client: its retry policy, its per-attempt chain, its I/O."""

    def __init__(
        self,
        *,
        retry: Retry,
        attempt_chain: Callable[[AttemptNext], AttemptNext],
        http: Http,
        flow_provider: bool,
    ) -> None:
        self.retry = retry
        self.http = http
        self.flow_provider = flow_provider
        self._send_chain = attempt_chain(self._send)
        # How long this host's jobs take from `Accepted` to `Ended` (from their flows'
        # waits, averaged): sent back for each `Accepted` (when to look first), and how
        # long a job the client lost track of keeps its slot.
        self.job_seconds: float | None = None
        self._seen_ended: float | None = None  # the waits until a job was seen ended
        # Told when a call's job ended on the host (its slot given back): the router
        # times a queue route's service by the slot, not by the result and download.
        self.on_ended: Callable[[Call], None] | None = None

    async def __call__(self, call: Call) -> GeneratedImage:
        return await self.run(call)

    async def run(self, call: Call, *, new_call: bool = True) -> GeneratedImage:
        """Run ``call``'s flow; ``new_call=False`` for another route's try at a call that
        the retry budget has already counted."""
        provider = call.provider
        if call._flow is None:
            provider.rules.check(call.request, provider.name)
            start_flow(call, self.flow_provider)
        assert call._flow is not None
        flow, item = call._flow
        call._flow = None
        if new_call:
            self.retry.budget.on_call()
        meter = call.meter
        ended: BaseException | None = None
        waited, last = 0.0, None  # the waits since the job was accepted, the latest
        try:
            while True:
                if isinstance(item, _Done):
                    image = item.image
                    break
                value: Any = None
                if isinstance(item, Step):
                    value = await self._step(call, item)
                elif isinstance(item, Wait):
                    seconds = check_seconds(item.seconds, _bug(call), "a flow's Wait")
                    call.emit("wait", attempt=call.attempts, delay=seconds)
                    await self.retry.sleep(seconds)
                    waited, last = waited + seconds, seconds
                elif isinstance(item, Accepted):
                    call.job = item
                    waited, last = 0.0, None
                    value = self.job_seconds  # when to look first (None: not known yet)
                elif isinstance(item, Ended):
                    if call.job is not None:  # nothing is left on the host to cancel
                        call.job = Accepted(call.job.job_id)
                        self._job_took(waited, None if last == waited else last)
                    if self.on_ended is not None:
                        self.on_ended(call)
                    await release_ended(call, item.ok)
                else:
                    raise _bug(call)(f"its flow yielded {type(item).__name__}")
                try:
                    item = _guard(call, functools.partial(flow.send, value), None)
                except StopIteration as done:
                    image = done.value
                    break
        except anyio.get_cancelled_exc_class() as exc:
            ended = exc
            if call.job is not None and call.job.cancel is not None:
                # The job's slot stays held until the host was asked to cancel it.
                held, call.held = call.held, None
                background = call.background
                cancel = functools.partial(self._cancel, call, call.job.cancel, held)
                if background is None or not background.spawn(cancel):
                    await cancel()
            raise
        except FluxError as exc:
            ended = exc
            exc.attempts = call.attempts
            exc.previous = tuple(e for e in call.errors if e is not exc)
            raise
        except BaseException as exc:
            ended = exc
            raise
        finally:
            flow.close()
            if meter is not None:  # a queue job is charged once it has ended
                meter.flow_ended(call, ended)
            if call.held and call.job is None and isinstance(ended, FluxError):
                await self._linger(call)
            if call.held:
                await release_held(call, ended is None)
        if not isinstance(image, GeneratedImage):
            raise _bug(call)(f"its flow returned {type(image).__name__}, not a GeneratedImage")
        if new_call:
            self.retry.budget.on_success()
        if image.attempts != call.attempts:
            image = _with_attempts(image, call.attempts)
        return image

    def _job_took(self, waited: float, last: float | None) -> None:
        """A job was seen ended after ``waited`` seconds of waits since its acceptance;
        ``last``, the final wait, when a poll before it found the job still running (so
        it ended within that wait: at its middle, as a guess). Seen ended at the first
        look, it may have ended well before: guess a little earlier, so the next first
        look comes sooner, until one finds a job still running."""
        took = waited * _EARLIER if last is None else waited - last / 2
        self.job_seconds = _averaged(self.job_seconds, took)
        self._seen_ended = _averaged(self._seen_ended, waited)

    async def _linger(self, call: Call) -> None:
        """A submit may have queued a job whose answer was lost (or broken): the host
        counts it until it ends, so its slot stays taken about as long as this host's
        jobs take to be seen ended (1 s before one was), unless that would reach the
        call's deadline; a cancel ends the wait."""
        seconds = self._seen_ended or _JOB_UNKNOWN
        if anyio.current_time() + seconds >= anyio.current_effective_deadline():
            return
        await self.retry.sleep(seconds)

    async def _step(self, call: Call, step: Step) -> Any:
        if call.origin is None:
            call.origin = step.request.url
        if step.kind == "download":  # _downloads loads with a flow's first download
            from flux_sdk._transport._downloads import check_download

            await check_download(step.request, call.origin, call.provider_name)
        self.http.prepare(step.request, call.timeout)
        call.step = step

        async def attempt() -> Any:
            call.step = step
            meter = call.meter
            if meter is not None:
                meter.before(call, step.kind)  # over the budget: raises, nothing sent
            call.attempts += 1
            start = time.perf_counter()
            response: httpx.Response | None = None
            try:
                response = await self._send_chain(call)
                value = _guard(call, lambda: step.parse(response), response)
            except CircuitOpen:
                call.attempts -= 1  # refused before sending: no attempt was made
                if meter is not None:
                    meter.withdrawn(call, step.kind)
                raise
            except FluxError as exc:
                exc.step = step.kind
                call.errors.append(exc)
                _attempted(call, step, start, getattr(exc, "status_code", None), exc)
                raise
            except BaseException:
                # Cancelled in flight the host may have started; cancelled while
                # waiting for a slot, nothing was sent and no attempt was made.
                if meter is not None and not meter.interrupted(call, step.kind):
                    call.attempts -= 1
                raise
            _attempted(call, step, start, response.status_code, None)
            return value

        try:
            return await self.retry.run(call, step.kind, attempt)
        finally:
            call.step = None

    async def _send(self, call: Call) -> httpx.Response:
        step = call.step
        assert step is not None
        if call.meter is not None:
            call.meter.sending(call)  # past the limits: the body may now reach the host
        budget = self.retry.budget
        budget.on_request_start()  # each request in flight can be refused and retried
        try:
            return await self._send_step(call, step)
        finally:
            budget.on_request_end()

    async def _send_step(self, call: Call, step: Step) -> httpx.Response:
        response = await self.http.send(step.request, call.provider_name)
        if step.kind != "download":
            return response
        from flux_sdk._transport._downloads import MAX_REDIRECTS, check_download, redirected

        for _ in range(MAX_REDIRECTS):
            target = redirected(response, call.provider_name)
            if target is None:
                return response
            await check_download(target, call.origin, call.provider_name)
            response = await self.http.send(self.http.prepare(target, None), call.provider_name)
        if redirected(response, call.provider_name) is None:
            return response
        raise InvalidResponseError(
            f"{call.provider_name} redirected a download more than {MAX_REDIRECTS} times",
            provider=call.provider_name,
            retryable=False,
        )

    async def _cancel(self, call: Call, request: httpx.Request, held: Held | None) -> None:
        """Best effort, shielded and bounded: the caller has already given up. Then
        the job's slots (``held``) are freed."""
        try:
            self.http.prepare(request, call.timeout)
            with anyio.move_on_after(CANCEL_TIMEOUT, shield=True):
                call.attempts += 1
                start = time.perf_counter()
                try:
                    response = await self.http.send(request, call.provider_name)
                except FluxError as exc:
                    logger.info("could not cancel the %s job: %s", call.provider_name, exc)
                    _attempted(call, "cancel", start, None, exc)
                    return
                _attempted(call, "cancel", start, response.status_code, None)
        finally:
            call.held = held
            await release_held(call, False)


def _averaged(known: float | None, new: float) -> float:
    return new if known is None else known + _JOB_WEIGHT * (new - known)


def _attempted(
    call: Call, step: Step | str, start: float, status: int | None, error: FluxError | None
) -> None:
    """Log and report one finished request: one DEBUG line, one event."""
    kind = step if isinstance(step, str) else step.kind
    elapsed = time.perf_counter() - start
    meter = call.meter
    billed, cost = ("no", 0.0) if meter is None else meter.after(call, kind, status, error)
    call.hosts.append(call.provider_name)
    if logger.isEnabledFor(logging.DEBUG):
        outcome = f"HTTP {status}" if error is None else f"{type(error).__name__}: {error}"
        logger.debug(
            "%s attempt %d (%s): %s in %.3f s",
            call.provider_name,
            call.attempts,
            kind,
            outcome,
            elapsed,
        )
    if call.on_event is not None:
        call.emit(
            "attempt",
            attempt=call.attempts,
            elapsed=elapsed,
            step=kind,
            status_code=status,
            error=error,
            billed=billed,
            cost=cost,
            concurrency=call.concurrency,
        )


def _guard(call: Call, step: Callable[[], _T], response: httpx.Response | None) -> _T:
    """Run provider code; a bug in it still surfaces as a FluxError."""
    try:
        return step()
    except (FluxError, StopIteration):
        raise
    except _PROVIDER_BUGS as exc:
        status = "" if response is None else f" (HTTP {response.status_code})"
        # The provider's exception may quote the body, and the body may echo the key.
        secrets = _secrets_of(response)
        raise InvalidResponseError(
            f"{call.provider_name} could not handle its response{status}: "
            f"{type(exc).__name__}: {redact(str(exc), secrets)}",
            provider=call.provider_name,
            status_code=None if response is None else response.status_code,
        ) from (exc if redact_exception(exc, secrets) else None)


def _secrets_of(response: httpx.Response | None) -> tuple[str, ...]:
    try:
        return () if response is None else secrets_of(response.request)
    except RuntimeError:  # a response made by middleware, without its request
        return ()


def _bug(call: Call) -> Callable[[str], InvalidResponseError]:
    def make(what: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{call.provider_name}: {what} (a bug in the provider)",
            provider=call.provider_name,
            retryable=False,
        )

    return make


def _with_attempts(image: GeneratedImage, attempts: int) -> GeneratedImage:
    return dataclasses.replace(image, attempts=attempts)
