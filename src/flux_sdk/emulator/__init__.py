"""A local stand-in for the Dataoorts and Baseten FLUX.1 [schnell] services.

``EmulatorApp`` is a plain ASGI 3 application (standard library only) that speaks both
providers' wire formats on their real paths, so the SDK, its examples and its users'
own code can run end to end with no API key, no network and no cost. It doubles the
services, not flux_sdk: what it accepts and refuses follows the providers' documents.
Images are real PNG files, deterministic for the prompt, seed, steps and size.

In process, with no sockets at all:

```python
import httpx
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

transport = httpx.ASGITransport(app=EmulatorApp())
async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as http:
    response = await http.post(
        "/production/predict",
        headers={"Authorization": f"Api-Key {DEFAULT_API_KEY}"},
        json={"prompt": "a lighthouse at dawn"},
    )
```

Over real HTTP on loopback (needs ``pip install 'flux-sdk[emulator]'`` for uvicorn):

```bash
flux-sdk emulator --port 8787        # or: python -c "from flux_sdk.emulator import run; run()"
```

Dataoorts answers on ``POST /api/v1`` (``Authorization: Bearer KEY``); Baseten on
``POST /production/predict``, ``/development/predict``, ``/environments/{name}/predict``
and ``/deployment/{id}/predict`` (``Authorization: Api-Key KEY``); OpenAI-style images
on ``POST /v1/images/generations`` and DeepInfra's ``/v1/openai/images/generations``;
Together on ``POST /together/v1/images/generations`` (Bearer); Replicate on
``POST /v1/models/{owner}/{name}/predictions`` and its prediction URLs (a prediction
moves one state per poll, see ``ReplicateQueue``); Cloudflare Workers AI on
``POST /client/v4/accounts/{id}/ai/run/{model}`` (both ``Bearer KEY``); fal's queue on its
real paths (``POST /fal-ai/flux/schnell``, then the ``status_url``, ``response_url`` and
``cancel_url`` it returns) and fal.run's sync route under ``/fal-sync`` (``Authorization:
Key KEY``), a queued job moving one state per status poll (``QueueTiming``); Hugging
Face's router on ``POST /hf-inference/models/{model}`` and, passed on to those routes,
``/fal-ai/...``, ``/replicate/...`` and ``/nscale/...`` (``Bearer KEY``). The key is
``DEFAULT_API_KEY`` unless you pass ``api_key=``.

To test retries and timeouts, make it fail the way real providers do: a ``FaultPlan``
scripts ``Fault``s request by request, or injects them at a seeded random rate:

```python
from flux_sdk.emulator import EmulatorApp, Fault, FaultPlan

app = EmulatorApp(faults=FaultPlan([Fault.RATE_LIMIT, None, Fault.RESET], rate=0.3, seed=1))
app.faults.outage(Fault.UNAVAILABLE)  # every request 503 ...
app.faults.clear()                    # ... until cleared
app.faults.injected, app.faults.requests  # what happened so far: a Counter and a count
```

To measure clients against a service that fills up, a ``Capacity`` gives hosts replicas,
a service time distribution and a bounded queue (429 beyond it, or growing latency):

```python
from flux_sdk.emulator import Capacity, EmulatorApp

app = EmulatorApp(capacity=Capacity(replicas=4, median=1.0, spread=0.5, queue=8))
app.load["dataoorts"].max_in_service  # per host: requests, in service, queued, refused, ...
```

Transport-level faults (``RESET``, ``TRUNCATED``, ``STALL``, ``SLOW``) are only faithful
over a real server; ``Fault`` says what a client sees in each setting.
"""

from flux_sdk.emulator._app import DEFAULT_API_KEY, EmulatorApp
from flux_sdk.emulator._capacity import Capacity, Load, Sample
from flux_sdk.emulator._faults import ALL_FAULTS, Fault, FaultPlan, InjectedDisconnect
from flux_sdk.emulator._image import render_png
from flux_sdk.emulator._queue import QueueTiming
from flux_sdk.emulator._replicate_queue import ReplicateQueue
from flux_sdk.emulator._server import run, serve

__all__ = [
    "ALL_FAULTS",
    "DEFAULT_API_KEY",
    "Capacity",
    "EmulatorApp",
    "Fault",
    "FaultPlan",
    "InjectedDisconnect",
    "Load",
    "QueueTiming",
    "ReplicateQueue",
    "Sample",
    "render_png",
    "run",
    "serve",
]
