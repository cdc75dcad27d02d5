"""`Call`: one `generate` call, handed explicitly down the middleware chain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from flux_sdk._base._errors import InvalidRequestError
from flux_sdk._base._events import EventHook
from flux_sdk._base._models import GenerateRequest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from flux_sdk._base._errors import Billed, FluxError
    from flux_sdk._base._models import GeneratedImage, JsonValue
    from flux_sdk.providers._base import (
        Accepted,
        Ended,
        Flow,
        FlowProvider,
        Provider,
        Step,
        Wait,
    )

    from ._background import Background

    FlowItem = Step | Wait | Accepted | Ended

__all__ = ["Call", "Metering", "make_request"]


class Metering(Protocol):
    """What the steps, the client and the tracer ask of a call's meter. Declared here and
    implemented by `_meter.CallMeter`, so this lower layer never imports the spend one."""

    billed: Billed
    attempts: int

    @property
    def cost_usd(self) -> float | None: ...
    def before(self, call: Call, kind: str) -> None: ...
    def after(
        self, call: Call, kind: str, status: int | None, error: FluxError | None
    ) -> tuple[Billed, float | None]: ...
    def flow_ended(self, call: Call, error: BaseException | None) -> None: ...
    def withdrawn(self, call: Call, kind: str) -> None: ...
    def sending(self, call: Call) -> None: ...
    def interrupted(self, call: Call, kind: str) -> bool: ...
    def succeeded(self, call: Call, image: GeneratedImage) -> float | None: ...
    def failed(self, call: Call, error: FluxError) -> None: ...
    def ended(self, call: Call, error: BaseException) -> None: ...


class Call:
    """Everything about one `FluxClient.generate` call, in one object.

    Each middleware receives it and passes it on (``await call_next(call)``); nothing
    about a call travels anywhere else. A per-call middleware may replace ``request``
    (the provider's HTTP request is then built again from it); a per-attempt middleware
    sees the HTTP request about to be sent as ``http_request`` and may add headers to it.

    ``max_retries``, ``deadline`` and ``timeout`` are this call's effective settings (the
    client's, or the call's own overrides). ``attempts`` counts the HTTP requests sent so
    far, every one of them (retries, and a flow's polls and downloads); ``errors`` holds
    the failures among them, oldest first. ``job`` is set once a queue host accepted the
    job (`Accepted`).
    """

    __slots__ = (
        "_flow",
        "_request",
        "admit",
        "attempts",
        "background",
        "concurrency",
        "deadline",
        "errors",
        "failover",
        "held",
        "hosts",
        "job",
        "max_retries",
        "meter",
        "on_event",
        "origin",
        "provider",
        "step",
        "timeout",
    )

    def __init__(
        self,
        request: GenerateRequest,
        provider: Provider | FlowProvider,
        *,
        max_retries: int,
        deadline: float | None,
        timeout: httpx.Timeout,
        on_event: EventHook | None = None,
    ) -> None:
        self._request = request
        self.provider = provider
        self.max_retries = max_retries
        self.deadline = deadline
        self.timeout = timeout
        self.on_event = on_event
        self.attempts = 0
        # The concurrency limit in force for the latest attempt, for its event.
        self.concurrency: int | None = None
        self.errors: list[FluxError] = []
        self.hosts: list[str] = []  # the provider of each request sent, in order
        self.step: Step | None = None
        self.job: Accepted | None = None
        # True while another route could take the call: a host's failure then moves it
        # there instead of being retried here (unless the host asked for a retry).
        self.failover = False
        # Set by the router on a hedge's losing attempt: its job's cancel is handed to the
        # client's background group instead of holding up the winner.
        self.background: Background | None = None
        # Set by the router on a hedge: asked once, when its first request is about to be
        # sent (its slot held), whether the hedge may still be paid for.
        self.admit: Callable[[], bool] | None = None
        # A queue job's concurrency slots, by their limit's id: each limit's release,
        # called (with whether the flow ended with its image) when the flow ends.
        self.held: dict[int, Callable[[bool], Awaitable[None]]] | None = None
        # What this call spends (set by the client): budgets, the ledger, traces.
        self.meter: Metering | None = None
        # The URL of the first request: the provider's own host, for download checks.
        self.origin: httpx.URL | None = None
        # The provider's flow for the current request, started (so its first request is
        # built and checked) but not yet run; dropped when the request is replaced.
        self._flow: tuple[Flow, FlowItem] | None = None

    @property
    def provider_name(self) -> str:
        return self.provider.name

    @property
    def request(self) -> GenerateRequest:
        """What to generate. Assigning a new request drops the HTTP request built from
        the old one; it is checked against the provider's rules before it is sent."""
        return self._request

    @request.setter
    def request(self, request: GenerateRequest) -> None:
        if request is not self._request:
            self._request = request
            self.close_flow()

    @property
    def http_request(self) -> httpx.Request | None:
        """The HTTP request of the attempt in progress (None outside an attempt)."""
        return None if self.step is None else self.step.request

    def emit(self, kind: Any, **fields: Any) -> None:
        """Send one `FluxEvent` to the client's ``on_event`` hook, if it has one."""
        if self.on_event is not None:
            from flux_sdk._base._flux_event import FluxEvent

            self.on_event(
                FluxEvent(kind, provider=self.provider.name, request=self._request, **fields)
            )

    def close_flow(self) -> None:
        if self._flow is not None:
            self._flow[0].close()
            self._flow = None

    def __repr__(self) -> str:
        return (
            f"Call(provider={self.provider.name!r}, prompt={self._request.prompt[:40]!r}, "
            f"attempts={self.attempts}, errors={len(self.errors)})"
        )


def make_request(
    prompt_or_request: str | GenerateRequest,
    seed: int | None,
    steps: int | None,
    width: int | None,
    height: int | None,
    extra_body: dict[str, JsonValue] | None,
) -> GenerateRequest:
    """The request ``generate()``'s arguments describe, checked."""
    if extra_body is not None and not isinstance(extra_body, dict):
        raise InvalidRequestError(
            f"extra_body must be a dict of JSON values (got {type(extra_body).__name__})"
        )
    if isinstance(prompt_or_request, str):
        return GenerateRequest(
            prompt=prompt_or_request,
            seed=seed,
            steps=steps,
            width=width,
            height=height,
            extra_body=extra_body or {},
        )
    if not isinstance(prompt_or_request, GenerateRequest):
        raise InvalidRequestError(
            "generate() takes a prompt string or a GenerateRequest, "
            f"not {type(prompt_or_request).__name__}"
        )
    if seed is None and steps is None and width is None and height is None and not extra_body:
        return prompt_or_request
    changes: dict[str, Any] = {"extra_body": {**prompt_or_request.extra_body, **(extra_body or {})}}
    for field, value in (("seed", seed), ("steps", steps), ("width", width), ("height", height)):
        if value is not None:
            changes[field] = value
    return prompt_or_request.replace(**changes)
