"""OpenTelemetry traces and metrics, used only when opentelemetry-api is installed.

Each ``generate`` is a span, and each HTTP request of it (a generate, or a queue host's
submit, polls and download) a child span. Attributes follow the GenAI semantic
conventions where one exists (``gen_ai.*``), and flux_sdk's own are under
``flux_sdk.``. Metrics: the call duration histogram (``gen_ai.client.operation.duration``),
and counters of images (``flux_sdk.images``) and of cost (``flux_sdk.cost``, USD).

The application configures the tracer and meter providers; without them the API's
no-op ones are used. This module is imported only when the package is there.
"""

from __future__ import annotations

import time
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.context import Context

from flux_sdk._version import __version__

if TYPE_CHECKING:
    from flux_sdk._base._errors import FluxError
    from flux_sdk._base._models import GeneratedImage
    from flux_sdk._pipeline._call import Call, Metering

__all__ = ["Tracer"]

_OPERATION = "generate_content"


class Tracer:
    """Spans and metrics for one client; see the module docstring."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self._tracer = tracer
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="flux_sdk call duration"
        )
        self._images = meter.create_counter(
            "flux_sdk.images", unit="{image}", description="images generated"
        )
        self._cost = meter.create_counter(
            "flux_sdk.cost", unit="USD", description="cost at most, maybe-billed included"
        )
        self._calls: dict[int, tuple[trace.Span, Token[Context], float]] = {}
        self._attempts: dict[int, trace.Span] = {}

    @classmethod
    def create(cls) -> Tracer:
        return cls(
            trace.get_tracer("flux_sdk", __version__), metrics.get_meter("flux_sdk", __version__)
        )

    def call_started(self, call: Call) -> None:
        provider = call.provider
        model = getattr(provider, "model", None)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": _OPERATION,
            "gen_ai.provider.name": provider.name,
            "gen_ai.output.type": "image",
        }
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
        if call.request.seed is not None:
            attributes["gen_ai.request.seed"] = call.request.seed
        if call.request.steps is not None:
            attributes["flux_sdk.request.steps"] = call.request.steps
        name = f"{_OPERATION} {model}" if isinstance(model, str) else _OPERATION
        span = self._tracer.start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        self._calls[id(call)] = (span, token, time.perf_counter())

    def attempt_started(self, call: Call, kind: str) -> None:
        span = self._tracer.start_span(
            f"{kind} {call.provider_name}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.provider.name": call.provider_name,
                "flux_sdk.step": kind,
                "flux_sdk.attempt": call.attempts + 1,
            },
        )
        self._attempts[id(call)] = span

    def attempt_ended(
        self,
        call: Call,
        kind: str,
        status: int | None,
        error: FluxError | None,
        billed: str,
        cost: float | None,
    ) -> None:
        span = self._attempts.pop(id(call), None)
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        span.set_attribute("flux_sdk.billed", billed)
        if cost is not None:
            span.set_attribute("flux_sdk.cost", cost)
        if error is not None:
            _failed(span, error)
        span.end()

    def call_ended(
        self,
        call: Call,
        meter: Metering,
        image: GeneratedImage | None,
        error: BaseException | None,
    ) -> None:
        entry = self._calls.pop(id(call), None)
        if entry is None:
            return
        span, token, start = entry
        host = image.provider if image is not None else call.provider_name
        span.set_attribute("gen_ai.provider.name", host)
        span.set_attribute("flux_sdk.attempts", meter.attempts)
        span.set_attribute("flux_sdk.billed", "yes" if image is not None else meter.billed)
        cost = meter.cost_usd
        if cost is not None:
            span.set_attribute("flux_sdk.cost", cost)
        if image is not None:
            span.set_attribute("flux_sdk.bytes", len(image.data))
            span.set_attribute("flux_sdk.cache_hit", meter.attempts == 0)
            if image.seed is not None:
                span.set_attribute("flux_sdk.response.seed", image.seed)
        if error is not None:
            _failed(span, error)
        context.detach(token)
        span.end()
        labels = {"gen_ai.operation.name": _OPERATION, "gen_ai.provider.name": host}
        if error is not None:
            labels["error.type"] = type(error).__name__
        self._duration.record(time.perf_counter() - start, labels)
        if image is not None and meter.attempts:
            self._images.add(1, {"gen_ai.provider.name": host})
        if cost:
            self._cost.add(cost, {"gen_ai.provider.name": host})


def _failed(span: trace.Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)[:200]))
