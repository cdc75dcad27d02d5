"""Traces and metrics through OpenTelemetry, exported to the SDK's in-memory readers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from flux_sdk import Emulator, FluxClient, FluxError, Retry
from flux_sdk._spend._otel import Tracer
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio


@pytest.fixture
def exported() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, Tracer]]:
    spans = InMemorySpanExporter()
    traces = TracerProvider()
    traces.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracer = Tracer(traces.get_tracer("flux_sdk"), meters.get_meter("flux_sdk"))
    yield spans, reader, tracer
    traces.shutdown()
    meters.shutdown()


def _client(app: EmulatorApp, tracer: Tracer) -> FluxClient:
    flux = FluxClient(
        Emulator(app=app), max_retries=Retry(3, sleep=Sleeps()), prices={"emulator": 0.0012}
    )
    flux._tracer = tracer  # the providers a test made, not the global ones
    return flux


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


async def test_a_call_is_a_span_with_a_child_per_attempt(
    exported: tuple[InMemorySpanExporter, InMemoryMetricReader, Tracer],
) -> None:
    spans, reader, tracer = exported
    app = EmulatorApp(faults=FaultPlan([Fault.SERVER_ERROR], retry_after=0))
    async with _client(app, tracer) as flux:
        image = await flux.generate("a red fox", seed=5, steps=2)
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.parent is None]
    attempts = [s for s in finished if s.parent is not None]
    assert call.name == "generate_content"
    assert call.attributes is not None
    assert call.attributes["gen_ai.provider.name"] == "emulator"
    assert call.attributes["gen_ai.request.seed"] == 5
    assert call.attributes["gen_ai.output.type"] == "image"
    assert call.attributes["flux_sdk.attempts"] == 2
    assert call.attributes["flux_sdk.bytes"] == len(image.data)
    assert call.attributes["flux_sdk.cost"] == pytest.approx(0.0024)
    assert [s.name for s in attempts] == ["generate emulator", "generate emulator"]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    assert [s.attributes["http.response.status_code"] for s in attempts if s.attributes] == [
        500,
        200,
    ]
    assert [s.attributes["flux_sdk.billed"] for s in attempts if s.attributes] == ["maybe", "yes"]
    metrics = _metrics(reader)
    assert metrics["flux_sdk.images"][0].value == 1
    assert metrics["flux_sdk.cost"][0].value == pytest.approx(0.0024)
    assert metrics["gen_ai.client.operation.duration"][0].count == 1


async def test_a_failed_call_marks_its_span(
    exported: tuple[InMemorySpanExporter, InMemoryMetricReader, Tracer],
) -> None:
    spans, reader, tracer = exported
    app = EmulatorApp(faults=FaultPlan([Fault.HTML] * 4))
    async with _client(app, tracer) as flux:
        with pytest.raises(FluxError):
            await flux.generate("a red fox")
    (call,) = [s for s in spans.get_finished_spans() if s.parent is None]
    assert call.status.status_code.name == "ERROR"
    assert call.attributes is not None
    assert call.attributes["error.type"] == "InvalidResponseError"
    assert call.attributes["flux_sdk.billed"] == "maybe"
    assert "flux_sdk.images" not in _metrics(reader)


def test_without_opentelemetry_nothing_is_imported() -> None:
    """The client checks for the package without importing it: installed, it is not
    imported; hidden (as if not installed), the client has no tracer at all."""
    import subprocess
    import sys

    check = (
        "import flux_sdk; client = flux_sdk.FluxClient(flux_sdk.Emulator()); "
        "print('opentelemetry' in sys.modules, 'flux_sdk._spend._otel' in sys.modules, "
        "client._tracer is not None)"
    )
    hide = "sys.modules['opentelemetry'] = None; "
    for code, expected in (("", "False False True"), (hide, "True False False")):
        out = subprocess.run(
            [sys.executable, "-c", "import sys; " + code + check],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split() == expected.split()


def test_the_tracer_is_made_once_the_application_has_imported_opentelemetry() -> None:
    """Installed but not yet imported: a first call costs no import (nothing could be
    traced anyway, no provider being set); once the application imports it, calls are
    traced. A fresh interpreter, so that nothing else has imported it already."""
    import subprocess
    import sys

    code = (
        "import sys, anyio, flux_sdk\n"
        "async def main():\n"
        "    async with flux_sdk.FluxClient(flux_sdk.Emulator()) as client:\n"
        "        await client.generate('a fox')\n"
        "        print('opentelemetry' in sys.modules, client._tracer._tracer is None)\n"
        "        import opentelemetry.trace\n"
        "        await client.generate('a fox')\n"
        "        print(type(client._tracer._tracer).__module__)\n"
        "anyio.run(main)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True", "flux_sdk._spend._otel"]
