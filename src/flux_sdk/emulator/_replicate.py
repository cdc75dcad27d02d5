"""The Replicate routes: create a prediction, poll it, cancel it, fetch its output.

``POST /v1/models/{owner}/{name}/predictions`` (``Prefer: wait=N`` holds the answer
until the prediction ends or N seconds pass, as on Replicate),
``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``, all with
``Authorization: Bearer KEY``; errors as problem details (``{"title", "detail",
"status"}``), a 429 as ``{"detail"}`` with ``Retry-After``. The output URLs point at
``GET /delivery/{id}/out-{i}.png`` on the emulator's own origin, served without a key
as a CDN serves them. How predictions move is the app's ``ReplicateQueue``; with a
``Capacity`` a prediction holds a replica from create to end and moves with time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol, cast

from flux_sdk.emulator._asgi import Scope, Send, send_bytes
from flux_sdk.emulator._faults import Canned, Fault, FaultPlan
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._replicate_queue import Prediction, ReplicateQueue
from flux_sdk.emulator._request import SEED_MAX, SEED_MIN, Overloaded, Reject, header, int_field
from flux_sdk.emulator._wire import Failure, FaultAnswers, check_key, draw

MODEL = "black-forest-labs/flux-schnell"
_CREATE = re.compile(r"/v1/models/([^/]+/[^/]+)/predictions")
_PREDICTION = re.compile(r"/v1/predictions/([A-Za-z0-9]+)(/cancel)?")
_FILE = re.compile(r"/delivery/([A-Za-z0-9]+)/out-([0-3])\.png")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]-]{1,300}")
# The model's own table (cog-flux predict.py ASPECT_RATIOS), at one megapixel.
_SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
_CHOICES = {
    "aspect_ratio": tuple(_SIZES),
    "output_format": ("webp", "jpg", "png"),
    "megapixels": ("1", "0.25"),
}
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    422: "Input validation failed",
}
_PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str | None = None) -> dict[str, Any]:
    """A problem details body, Replicate's error shape."""
    return {"title": title, "detail": title if detail is None else detail, "status": status}


# A 429's body is a bare detail; a 200 of the wrong shape stands for broken base64.
_FAULTS = FaultAnswers(
    {
        Fault.RATE_LIMIT: Failure(
            429, {"detail": "Request was throttled. Expected available in 1 second."}
        ),
        Fault.SERVER_ERROR: Failure(500, _problem(500, "Internal server error"), _PROBLEM),
        Fault.BAD_GATEWAY: Failure(502, _problem(502, "Bad gateway"), _PROBLEM),
        Fault.UNAVAILABLE: Failure(503, _problem(503, "Service unavailable"), _PROBLEM),
    },
    cut='{"id": "',
    broken=b'{"id": null, "status": 5}',
)


class _WithQueue(Settings, Protocol):
    replicate: ReplicateQueue


class Replicate:
    """Replicate's prediction API for ``black-forest-labs/flux-schnell``, and its CDN."""

    name = "replicate"
    methods = ("GET", "POST")

    def matches(self, path: str) -> bool:
        return any(route.fullmatch(path) for route in (_CREATE, _PREDICTION, _FILE))

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {}

    def holds(self, method: str, path: str) -> str:
        """Under a ``Capacity`` a create holds its prediction's replica until it ends;
        polls, cancels and downloads hold none."""
        return "job" if _CREATE.fullmatch(path) else "nothing"

    async def answer(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        queue = cast(_WithQueue, settings).replicate
        path: str = scope["path"]
        method: str = scope["method"]
        file = _FILE.fullmatch(path)
        if file is not None:
            if method != "GET":
                raise Reject(405, "Method not allowed")
            found_file = queue.get(file.group(1))
            if found_file is not None:
                _timed(settings, found_file)
            png = self._file(settings, found_file, int(file.group(2)))
            await send_bytes(send, 200, png, "image/png", headers)
            return
        check_key(scope, settings, "You did not pass a valid authentication token")
        origin = _origin(scope)
        create = _CREATE.fullmatch(path)
        if create is not None:
            if method != "POST":
                raise Reject(405, "Method not allowed")
            prediction, wait = self._create(queue, create.group(1), scope, body)
            load = settings.load.get(self.name)
            if load is not None and load.admit_job(prediction.id) is None:
                raise Overloaded()
            if wait is not None and load is None:
                # Under a Capacity the job moves with the host's clock: it is polled.
                await queue.hold(prediction, wait)
            await _send_prediction(send, 201, prediction, origin, headers)
            return
        found = _PREDICTION.fullmatch(path)
        assert found is not None  # matches() let only the three routes in
        pid, cancel = found.group(1), found.group(2) is not None
        if method != ("POST" if cancel else "GET"):
            raise Reject(405, "Method not allowed")
        done = queue.cancel(pid) if cancel else queue.poll(pid)
        if done is None:
            raise Reject(404, "The requested resource could not be found.")
        if cancel and self.name in settings.load and done.canceled:
            settings.load[self.name].cancel_job(pid)
        _timed(settings, done)
        await _send_prediction(send, 200, done, origin, headers)

    def _create(
        self, queue: ReplicateQueue, model: str, scope: Scope, body: bytes
    ) -> tuple[Prediction, int | None]:
        """The prediction made, and how long the answer may be held (``Prefer: wait``)."""
        if model != MODEL:
            raise Reject(404, f"The model {model} does not exist, or you cannot see it.")
        prefer = header(scope, b"prefer")
        hold: int | None = None
        if prefer is not None:
            wait = prefer.strip().removeprefix("wait").removeprefix("=")
            if prefer.strip() != "wait" and not (wait.isdigit() and 1 <= int(wait) <= 60):
                raise Reject(
                    400, f"Prefer must be 'wait' or 'wait=N' with N from 1 to 60: {prefer!r}"
                )
            hold = int(wait) if wait else 60
        try:
            request = json.loads(body)
        except ValueError:
            raise Reject(400, "The request body is not valid JSON") from None
        data = request.get("input") if isinstance(request, dict) else None
        if not isinstance(data, dict):
            raise Reject(422, "input is required and must be an object")
        _check_input(data)
        return queue.create(data), hold

    def _file(self, settings: Settings, prediction: Prediction | None, index: int) -> bytes:
        if prediction is None or prediction.status != "succeeded":
            raise Reject(404, "Not found")
        data = prediction.input
        if index >= (data.get("num_outputs") or 1):
            raise Reject(404, "Not found")
        width, height = _SIZES[data.get("aspect_ratio") or "1:1"]
        if data.get("megapixels", "1") == "0.25":
            width, height = width // 2, height // 2
        seed = data.get("seed")
        seed = None if seed is None else seed + index
        steps = data.get("num_inference_steps") or 4
        return draw(settings, data["prompt"], seed, steps, width, height)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        problem = _problem(reject.status, _TITLES.get(reject.status, "Error"), reject.message)
        body = json.dumps(problem).encode()
        await send_bytes(send, reject.status, body, _PROBLEM, headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        return _FAULTS.answer(fault, plan)


def _timed(settings: Settings, prediction: Prediction) -> None:
    """Under a ``Capacity``, set a prediction's place by time, not by polls counted."""
    load = settings.load.get(Replicate.name)
    state = None if load is None else load.job_state(prediction.id)
    if state is not None:
        steps = {"queued": 0, "running": prediction.starting}
        prediction.polls = steps.get(state, prediction.starting + prediction.processing)


def _check_input(data: Mapping[str, Any]) -> None:
    """The model's input schema; unknown fields are ignored, as Cog ignores them."""
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise Reject(422, "input.prompt is required and must be a string")
    int_field(data, "num_outputs", 1, 1, 4)
    int_field(data, "num_inference_steps", 4, 1, 4)
    int_field(data, "seed", None, SEED_MIN, SEED_MAX)
    int_field(data, "output_quality", 80, 0, 100)
    for key, choices in _CHOICES.items():
        if key in data and data[key] not in choices:
            raise Reject(422, f"input.{key} must be one of {', '.join(choices)}")
    for key in ("go_fast", "disable_safety_checker"):
        if key in data and not isinstance(data[key], bool):
            raise Reject(422, f"input.{key} must be a boolean")


def _origin(scope: Scope) -> str:
    """The origin the client used, so the URLs it gets back reach this same server."""
    host = header(scope, b"host") or ""
    if not _HOST.fullmatch(host):
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


async def _send_prediction(
    send: Send, status: int, prediction: Prediction, origin: str, headers: Mapping[str, str]
) -> None:
    state = prediction.status
    pid = prediction.id
    outputs = int(prediction.input.get("num_outputs") or 1)
    seed = prediction.input.get("seed")
    body = {
        "id": pid,
        "model": MODEL,
        "version": "hidden",
        "input": prediction.input,
        "logs": "" if seed is None else f"Using seed: {seed}\n",
        "output": (
            [f"{origin}/delivery/{pid}/out-{i}.png" for i in range(outputs)]
            if state == "succeeded"
            else None
        ),
        "data_removed": False,
        "error": prediction.error if state == "failed" else None,
        "status": state,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "urls": {
            "get": f"{origin}/v1/predictions/{pid}",
            "cancel": f"{origin}/v1/predictions/{pid}/cancel",
            "web": f"https://replicate.com/p/{pid}",
        },
    }
    await send_bytes(send, status, json.dumps(body).encode(), "application/json", headers)
