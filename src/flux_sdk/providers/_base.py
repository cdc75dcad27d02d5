"""What a provider is: a data mapper the client drives, never a thing that does I/O.

A one-request host implements `Provider`: ``build_request`` turns a `GenerateRequest`
into an ``httpx.Request`` and ``parse_response`` turns the answer into a
`GeneratedImage`. A host that needs several round trips (submit, poll, download)
implements `FlowProvider`: a generator that yields what it needs next (a `Step` to send,
a `Wait`, an `Accepted` job, an `Ended` one) and is sent back what happened, as httpx's
``Auth.auth_flow`` is. The client owns time, retries, limits, events and cancellation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from flux_sdk._base._errors import InvalidRequestError
from flux_sdk._base._frozen import ByValue, Frozen
from flux_sdk._base._models import MAX_PROMPT_CHARS, MAX_SEED, GeneratedImage, GenerateRequest

__all__ = [
    "Accepted",
    "Ended",
    "Flow",
    "FlowProvider",
    "ParamRules",
    "Provider",
    "Step",
    "StepKind",
    "Wait",
]


@dataclass(frozen=True, slots=True, eq=False, repr=False)  # ByValue's: see _frozen
class ParamRules(ByValue):
    """The parameter ranges one provider (and model) accepts, checked before sending.

    Bounds are inclusive. ``size=None`` means the model takes no width or height;
    ``seed_supported=False`` that it takes no seed (its images cannot be reproduced).
    """

    prompt_chars: tuple[int, int] = (1, MAX_PROMPT_CHARS)
    steps: tuple[int, int] = (1, 50)
    seed: tuple[int, int] = (0, MAX_SEED)
    size: tuple[int, int] | None = (64, 2048)
    size_multiple: int = 1
    seed_supported: bool = True

    def check(self, request: GenerateRequest, provider: str) -> None:
        """Raise `InvalidRequestError` naming the first rule ``request`` breaks."""
        low, high = self.prompt_chars
        if not low <= len(request.prompt) <= high:
            raise InvalidRequestError(
                f"{provider} needs a prompt of {low} to {high} characters "
                f"(got {len(request.prompt)})",
                provider=provider,
            )
        _check_range(provider, "steps", request.steps, self.steps)
        if request.seed is not None and not self.seed_supported:
            raise InvalidRequestError(
                f"{provider} does not accept a seed for this model; leave it out",
                provider=provider,
            )
        _check_range(provider, "seed", request.seed, self.seed)
        for side in ("width", "height"):
            value = getattr(request, side)
            if value is None:
                continue
            if self.size is None:
                raise InvalidRequestError(
                    f"{provider} does not accept {side} for this model; leave it out",
                    provider=provider,
                )
            _check_range(provider, side, value, self.size)
            if value % self.size_multiple:
                raise InvalidRequestError(
                    f"{provider} needs {side} to be a multiple of {self.size_multiple} "
                    f"(got {value})",
                    provider=provider,
                )


def _check_range(provider: str, field: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise InvalidRequestError(
            f"{provider} needs {field} between {bounds[0]} and {bounds[1]} (got {value})",
            provider=provider,
        )


StepKind = Literal["generate", "submit", "poll", "download"]
"""What a request does, which decides when the client may send it again:

- ``"generate"``: one request that makes the image (a sync host): retried while its
  error is ``retryable``.
- ``"submit"``: puts a paid job in a queue: retried only when the error proves the job
  was not accepted (refused with 408, 429 or 503, or no byte of it was sent).
- ``"poll"`` and ``"download"``: idempotent reads: retried while ``retryable``.
"""


class Step(Frozen):
    """One HTTP request of a flow and how to read its answer.

    The client sends ``request`` (through the rate and concurrency limits, with the
    call's timeout), reads the body under the size cap, and calls ``parse`` with the
    response; what ``parse`` returns is sent back into the flow. ``parse`` raises a
    `FluxError` for a failed answer, and the client retries the step if ``kind`` allows.
    """

    __slots__ = __match_args__ = ("request", "parse", "kind")
    request: httpx.Request
    parse: Callable[[httpx.Response], Any]
    kind: StepKind

    def __init__(
        self,
        request: httpx.Request,
        parse: Callable[[httpx.Response], Any],
        kind: StepKind = "generate",
    ) -> None:
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "parse", parse)
        object.__setattr__(self, "kind", kind)


class Wait(Frozen):
    """Ask the client to wait ``seconds`` before the next step (a poll interval).

    The client sleeps holding no concurrency slot, and the call's deadline still applies.
    """

    __slots__ = __match_args__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        object.__setattr__(self, "seconds", seconds)


class Accepted(Frozen):
    """The host accepted a paid job: from now on the flow is never submitted again.

    ``cancel`` is the request that cancels the job on the host, if it has one: the client
    sends it (shielded, bounded in time) when the call is cancelled or its deadline passes.
    ``job_id`` is the host's id for the job, for logs and events.
    """

    __slots__ = __match_args__ = ("job_id", "cancel")
    job_id: str | None
    cancel: httpx.Request | None

    def __init__(self, job_id: str | None = None, cancel: httpx.Request | None = None) -> None:
        object.__setattr__(self, "job_id", job_id)
        object.__setattr__(self, "cancel", cancel)


class Ended(Frozen):
    """The host reports the accepted job ended (``ok``: without an error of its own).

    A queue host frees the job's worker then, not once its result and image are
    fetched, so the client gives back the job's concurrency slots at once; the result
    and the download still go through the rate limits, and no cancel is sent from now
    on (there is nothing left to cancel).
    """

    __slots__ = __match_args__ = ("ok",)
    ok: bool

    def __init__(self, ok: bool = True) -> None:
        object.__setattr__(self, "ok", ok)


Flow = Generator[Step | Wait | Accepted | Ended, Any, GeneratedImage]
"""A provider's conversation with the client: yields what it needs, returns the image.

A `Step` is answered with what its ``parse`` returned; an `Accepted` with how long this
host's recent jobs took from their acceptance to their end, in seconds (None until one
has ended), so a flow can look first when its job is likely done; a `Wait` and an
`Ended` with None.
"""


@runtime_checkable
class Provider(Protocol):
    """A host that answers one HTTP request with one image."""

    name: str
    rules: ParamRules

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        """The HTTP request that asks this host for ``request``'s image."""
        ...

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        """The image in ``response`` (its body already read), or raise a `FluxError`."""
        ...


@runtime_checkable
class FlowProvider(Protocol):
    """A host that needs several round trips (submit, poll, download) for one image."""

    name: str
    rules: ParamRules

    def generate_flow(self, request: GenerateRequest) -> Flow:
        """Yield each `Step`, `Wait` or `Accepted`; return the image at the end."""
        ...


def single_request_flow(provider: Provider, request: GenerateRequest) -> Flow:
    """A one-request provider as a flow of one ``"generate"`` step."""
    http_request = provider.build_request(request)
    parse = provider.parse_response
    image: GeneratedImage = yield Step(http_request, lambda response: parse(request, response))
    return image
