"""The emulator's ASGI application: routes each request to the host module that owns it.

Each host (a wire format) lives in its own module; ``HOSTS`` lists them, first match
wins. The app reads the body, draws a fault, logs one line per request, and leaves
everything about the wire format to the host.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import Literal

from flux_sdk.emulator._asgi import (
    Message,
    Receive,
    Scope,
    Send,
    cloudflare_error,
    send_bytes,
    send_json,
)
from flux_sdk.emulator._baseten import Baseten
from flux_sdk.emulator._capacity import Capacity, Load, loads
from flux_sdk.emulator._cloudflare import CloudflareWorkersAI
from flux_sdk.emulator._dataoorts import Dataoorts
from flux_sdk.emulator._fal import Fal
from flux_sdk.emulator._faults import Fault, FaultPlan, InjectedDisconnect, inject
from flux_sdk.emulator._host import Host
from flux_sdk.emulator._huggingface import HuggingFaceRouter
from flux_sdk.emulator._openai import OpenAIImages
from flux_sdk.emulator._queue import Jobs, QueueTiming
from flux_sdk.emulator._replicate import Replicate
from flux_sdk.emulator._replicate_queue import ReplicateQueue
from flux_sdk.emulator._request import Overloaded, Reject, read_body
from flux_sdk.emulator._stats import STATS_PATH, HostStats, stats_json
from flux_sdk.emulator._together import Together

__all__ = ["DEFAULT_API_KEY", "HOSTS", "EmulatorApp", "logger"]

DEFAULT_API_KEY = "emulator-key"
# One line per host: a new wire format is a new module and one more entry here.
HOSTS: tuple[Host, ...] = (
    Dataoorts(),
    OpenAIImages(),
    Baseten(),
    Together(),
    Replicate(),
    CloudflareWorkersAI(),
    HuggingFaceRouter(),  # before Fal: the router's /fal-ai/fal-ai/... is not fal's
    Fal(),
)

# One INFO line per request: method, path, status, milliseconds. Never headers or keys.
logger = logging.getLogger("flux_sdk.emulator")


class EmulatorApp:
    """An ASGI 3 app that answers like Dataoorts, Baseten, Replicate and Cloudflare
    Workers AI do, with stand-in images.

    It also answers OpenAI's Images API shape on ``POST /v1/images/generations`` (and
    DeepInfra's ``/v1/openai/images/generations``), for the `OpenAIImages` provider and
    for OpenAI-style clients measured against the same images, and Together's own shape
    on ``POST /together/v1/images/generations`` (see ``_together``).

    It is a test double of the services, not of flux_sdk: anything that speaks their
    wire formats (our SDK, plain httpx, curl) can run end to end with no key and no
    network. Images come from ``render_png``, so equal requests give equal bytes.

    ``faults`` makes it misbehave the way real providers do (see ``FaultPlan``); it is
    kept as ``app.faults``, which tests may re-arm or replace while the app serves. A
    fault is decided once the request body has been read and before the key and the
    body are checked, since a real outage does not care whether a request was valid.
    Requests refused before that (unknown path, wrong method, body over 1 MiB) are
    never faulted, and a request given no fault is answered exactly as without a plan.

    fal's queue, sync route and CDN answer too (see ``_fal``). A queued job moves one
    state per status poll as ``queue`` says (a ``QueueTiming``: by default one poll
    queued, one running, then completed; ``in_progress=None`` never completes), so a
    test drives a job's whole life without sleeping; ``app.jobs`` holds the jobs.
    ``capacity`` gives hosts limits (see ``Capacity``): one ``Capacity`` gives each host
    its own replicas and queue with those settings, a mapping of host name to
    ``Capacity`` limits only the hosts it names. ``app.load[name]`` is each limited
    host's ``Load``, with its counters. A request is admitted once its body has been
    read; the fault, if any, is drawn when its service time is over. On a queue host
    (fal, Replicate) with a ``Capacity`` a job holds a replica from its submit to its
    end, which comes with time; its polls, result, cancel and downloads hold none and
    draw no fault, so faults are drawn once per job, on its submit.

    ``GET /_emulator/stats`` answers the counters by host as JSON (see ``_stats``);
    ``app.stats[name]`` holds them.

    Each request is logged at INFO on the ``flux_sdk.emulator`` logger (method, path,
    status, milliseconds); ``serve`` and ``run`` print those lines to stderr.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        dataoorts_response: Literal["json", "raw"] = "json",
        image_bytes: int | None = None,
        default_size: int = 1024,
        faults: FaultPlan | None = None,
        replicate: ReplicateQueue | None = None,
        cloudflare_daily_images: int | None = None,
        queue: QueueTiming | None = None,
        capacity: Capacity | Mapping[str, Capacity] | None = None,
    ) -> None:
        self.api_key = api_key
        self.dataoorts_response = dataoorts_response
        self.image_bytes = image_bytes
        self.default_size = default_size
        self.faults = FaultPlan() if faults is None else faults
        # Replicate's predictions and how they move; Cloudflare's daily allocation.
        self.replicate = ReplicateQueue() if replicate is None else replicate
        self.cloudflare_daily_images = cloudflare_daily_images
        self.cloudflare_images_served = 0
        self.queue = QueueTiming() if queue is None else queue
        self.jobs = Jobs()
        self.requests_seen = 0
        self.load: dict[str, Load] = loads(capacity, (h.name for h in HOSTS))
        self.stats = {h.name: HostStats() for h in HOSTS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._logged(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # refused: HTTP only

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request and log its line, whatever happens to it."""
        if not logger.isEnabledFor(logging.INFO):
            await self._handle(scope, receive, send)
            return
        started = time.perf_counter()
        status = "-"

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        outcome = ""
        try:
            await self._handle(scope, receive, send_and_note)
        except InjectedDisconnect as exc:
            outcome = f" ({exc.fault.name}: connection dropped)"
            raise
        except Exception as exc:
            outcome = f" (failed: {type(exc).__name__})"
            raise
        finally:
            if status == "-" and not outcome:
                outcome = " (the client left first)"
            elapsed = (time.perf_counter() - started) * 1000
            # The path is escaped: it is the only free text a client puts in the line.
            path = json.dumps(str(scope["path"]))[1:-1][:200]
            logger.info("%s %s %s %.1f ms%s", scope["method"], path, status, elapsed, outcome)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request and read its body; then answer it, or inject the fault drawn."""
        self.requests_seen += 1
        request_id = f"emu-{self.requests_seen:06d}"
        headers = {"x-request-id": request_id}
        path: str = scope["path"]
        if path == STATS_PATH and scope["method"] == "GET":
            counters = stats_json(self.stats, self.load)
            await send_bytes(send, 200, counters, "application/json", headers)
            return
        host = next((h for h in HOSTS if h.matches(path)), None)
        if host is None:
            await send_json(send, 404, cloudflare_error(7000, "No route for that URI"), headers)
            return
        headers.update(host.response_headers(request_id))
        try:
            methods: tuple[str, ...] = getattr(host, "methods", ("POST",))
            if scope["method"] not in methods:
                headers["allow"] = ", ".join(methods)
                raise Reject(
                    405, f"Method {scope['method']} not allowed, use {headers['allow']}", code=7001
                )
            body = await read_body(scope, receive)
        except Reject as exc:
            await host.refuse(send, exc, headers)
            return
        if body is None:
            return  # the client went away; nobody is left to answer
        self.stats[host.name].requests += 1
        load = self.load.get(host.name)
        kind = _holds(host, scope)
        faulted = load is None or kind != "nothing"
        work = functools.partial(self._serve, host, scope, body, headers, receive, send, faulted)
        if load is None or kind != "request":
            await work()
        else:
            await load.serve(work, host, receive, send, headers)

    async def _serve(
        self,
        host: Host,
        scope: Scope,
        body: bytes,
        headers: Mapping[str, str],
        receive: Receive,
        send: Send,
        faulted: bool = True,
    ) -> None:
        """Answer one admitted request, or inject the fault drawn for it (if ``faulted``)."""
        answer = functools.partial(self._answer, host, scope, body, headers)
        fault = self.faults.draw() if faulted else None
        if fault is None:
            await answer(send)
            return
        stats = self.stats[host.name]
        stats.faults[fault.value] += 1
        canned = host.fault(fault, self.faults)
        replaced = canned is not None or fault is Fault.HTML  # the model's answer is lost
        if replaced and fault is not Fault.RATE_LIMIT and _holds(host, scope) == "request":
            # A sync host's fault comes after its service time: the model ran, the host
            # charges, and the client can only say "maybe". (A transport fault's answer
            # is made, and so billed, by _answer before it is damaged on the way out.)
            stats.bill(body)
        await inject(fault, self.faults, answer, receive, send, canned=canned, headers=headers)

    async def _answer(
        self, host: Host, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        """The service working normally: the host checks the key and body, then answers."""
        stats = self.stats[host.name]
        status = 0

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await host.answer(self, scope, body, headers, noted)
        except Overloaded:
            canned_status, canned, content_type, extra = self.load[host.name].overloaded(host)
            await send_bytes(send, canned_status, canned, content_type, {**headers, **extra})
            return
        except Reject as exc:
            stats.served += 1
            await host.refuse(send, exc, headers)
            return
        stats.served += 1
        if 200 <= status < 300 and _holds(host, scope) != "nothing":
            stats.bill(body)


def _holds(host: Host, scope: Scope) -> str:
    """What a request holds on a host with a ``Capacity``: ``"job"`` (a queue submit: a
    replica until the job ends), ``"request"`` (a replica for one service time) or
    ``"nothing"`` (a poll, result, cancel or download)."""
    holds = getattr(host, "holds", None)
    return "request" if holds is None else str(holds(scope["method"], scope["path"]))


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up, but answering lets uvicorn's default lifespan="auto" start cleanly.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
