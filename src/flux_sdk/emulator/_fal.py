"""fal.ai's routes: the queue (queue.fal.run), the sync route (fal.run) and the CDN.

On the emulator's one origin the queue answers on its real paths:
``POST /fal-ai/flux/schnell`` submits; ``GET /fal-ai/flux/requests/{id}/status`` polls
(each poll moves the job one step along the app's ``QueueTiming``; with a ``Capacity``
the job holds a replica from submit to end and moves with time instead);
``GET /fal-ai/flux/requests/{id}`` is the result and ``PUT .../cancel`` cancels. As on
fal, those URLs drop the model's sub-path. fal.run's sync route answers under the prefix
``/fal-sync`` (``POST /fal-sync/fal-ai/flux/schnell``), since both hosts share this
origin. Images are served from ``/fal-media/files/{id}/image-{k}.png``, without a key,
as fal's CDN serves them. Both ``fal-ai/flux/schnell`` and ``fal-ai/flux-1/schnell``
are known.
"""

from __future__ import annotations

import re
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

from flux_sdk.emulator._asgi import Scope, Send, send_bytes, send_json
from flux_sdk.emulator._faults import BAD_BASE64, Canned, Fault, FaultPlan
from flux_sdk.emulator._host import Settings
from flux_sdk.emulator._queue import Job
from flux_sdk.emulator._request import (
    SEED_MAX,
    Overloaded,
    Reject,
    header,
    json_object,
    with_base64,
)
from flux_sdk.emulator._wire import Failure, FaultAnswers, check_key, draw

MODELS = frozenset({"fal-ai/flux/schnell", "fal-ai/flux-1/schnell"})
SYNC_PREFIX = "/fal-sync"
MEDIA_PREFIX = "/fal-media/files"
AUTH_ERROR = "No user found for Key ID and Secret"
_REQUESTS = re.compile(r"/(fal-ai/[A-Za-z0-9_.-]+)/requests/([0-9a-f-]{36})(/status|/cancel)?")
_FILE = re.compile(re.escape(MEDIA_PREFIX) + r"/([0-9a-f-]{36})/image-([0-3])\.png")
_PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_MAX_SIDE = 2048  # the emulator's own bound (fal's schema allows 14142): PNGs are drawn


def _failed(status: int, detail: str, error_type: str) -> Failure:
    """A failure fal marks with its error type, in the body and the headers."""
    headers = {"x-fal-error-type": error_type, "x-fal-retryable": "true"}
    return Failure(status, {"detail": detail, "error_type": error_type}, headers=headers)


# fal's error types for what the faults stand for (docs.fal.ai, request errors).
_FAULTS = FaultAnswers(
    {
        Fault.RATE_LIMIT: Failure(429, {"detail": "Too many concurrent requests"}),
        Fault.SERVER_ERROR: _failed(500, "Internal server error", "internal_error"),
        Fault.BAD_GATEWAY: _failed(
            502, "Incomplete response from the runner", "runner_incomplete_response"
        ),
        Fault.UNAVAILABLE: _failed(
            503, "No runner could be scheduled", "runner_scheduling_failure"
        ),
    },
    cut='{"images": [{"url": "data:image/png;base64,',
    broken={"images": [{"url": "data:image/png;base64," + BAD_BASE64}]},
)


class _Invalid(Reject):
    """fal's 422: FastAPI-style validation errors, ``{"detail": [{"loc", "msg", ...}]}``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, errors[0]["msg"])
        self.errors = errors


class Fal:
    """fal's queue, sync route and CDN for FLUX.1 [schnell], ``Authorization: Key KEY``."""

    name = "fal"
    methods = ("GET", "POST", "PUT")

    def matches(self, path: str) -> bool:
        return path.startswith(("/fal-ai/", SYNC_PREFIX + "/", MEDIA_PREFIX + "/"))

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {"x-fal-request-id": request_id}

    def holds(self, method: str, path: str) -> str:
        """What a request holds under a ``Capacity``: a submit its job's replica until
        the job ends, a sync call one for its service time, the rest nothing."""
        if path.startswith(SYNC_PREFIX + "/"):
            return "request"
        if method == "POST" and path.startswith("/fal-ai/") and not _REQUESTS.fullmatch(path):
            return "job"
        return "nothing"

    async def answer(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(MEDIA_PREFIX + "/"):  # the CDN: public, no key
            _allow(method, "GET")
            await send_bytes(send, 200, self._file(settings, path), "image/png", headers)
            return
        check_key(scope, settings, AUTH_ERROR, schemes=("key",))
        if path.startswith(SYNC_PREFIX + "/"):
            _allow(method, "POST")
            job = self._take(settings, path[len(SYNC_PREFIX) + 1 :], body)
            if job.error is not None:
                raise _Invalid(job.error)
            job.done = True
            await send_json(send, 200, self._result(settings, scope, job), headers)
            return
        found = _REQUESTS.fullmatch(path)
        if found is None:
            _allow(method, "POST")
            job = self._take(settings, path[1:], body)
            load = settings.load.get(self.name)
            if load is not None and load.admit_job(job.id) is None:
                raise Overloaded()
            await send_json(send, 200, self._status(scope, job, "IN_QUEUE"), headers)
            return
        known = settings.jobs.get(self.name, found[2])
        if known is None or known.app != found[1]:
            raise Reject(404, f"Request {found[2]} not found")
        job = known
        _settle(settings, job)
        if found[3] == "/status":
            _allow(method, "GET")
            await self._poll(settings, scope, job, headers, send)
        elif found[3] == "/cancel":
            _allow(method, "PUT")
            ended = job.done  # decided first; the replica is freed before the answer goes
            if not ended and self.name in settings.load:
                settings.load[self.name].cancel_job(job.id)
            await self._cancel(job, ended, headers, send)
            _settle(settings, job)
        else:
            _allow(method, "GET")
            await self._fetch(settings, scope, job, headers, send)

    def _take(self, settings: Settings, model: str, body: bytes) -> Job:
        """Accept a request for ``model``; bad input fails the job later, as on fal."""
        if model not in MODELS:
            raise Reject(404, f"Application '{model}' not found")
        request = json_object(body)
        error: list[dict[str, Any]] | None = None
        try:
            params = _params(request)
        except _Invalid as exc:
            params, error = {}, exc.errors
        app = "/".join(model.split("/")[:2])  # the queue's URLs drop the sub-path
        return settings.jobs.add(self.name, app, params, error=error)

    async def _poll(
        self, settings: Settings, scope: Scope, job: Job, headers: Mapping[str, str], send: Send
    ) -> None:
        timed = settings.load[self.name].job_state(job.id) if self.name in settings.load else None
        state = settings.jobs.poll(job, settings.queue) if timed is None else timed
        status = {"queued": "IN_QUEUE", "running": "IN_PROGRESS"}.get(state, "COMPLETED")
        answer = self._status(scope, job, status)
        if status == "IN_QUEUE":
            answer["queue_position"] = 0
        if status != "IN_QUEUE":
            answer["logs"] = [] if _with_logs(scope) else None
        if status == "COMPLETED":
            answer["metrics"] = {"inference_time": 0.01} if _failure(job) is None else {}
            failure = _failure(job)
            answer["error"] = None if failure is None else _summary(failure[1])
            answer["error_type"] = None if failure is None else failure[2]
        await send_json(send, 200, answer, headers)

    async def _cancel(self, job: Job, ended: bool, headers: Mapping[str, str], send: Send) -> None:
        if ended:
            await send_json(send, 400, {"status": "ALREADY_COMPLETED"}, headers)
            return
        job.cancelled = True
        await send_json(send, 202, {"status": "CANCELLATION_REQUESTED"}, headers)

    async def _fetch(
        self, settings: Settings, scope: Scope, job: Job, headers: Mapping[str, str], send: Send
    ) -> None:
        if not job.done:
            raise Reject(400, "Request is still in progress")
        failure = _failure(job)
        if failure is not None:
            status, detail, error_type = failure
            extra = {"x-fal-error-type": error_type} if error_type else {}
            await send_json(send, status, {"detail": detail}, {**headers, **extra})
            return
        await send_json(send, 200, self._result(settings, scope, job), headers)

    def _status(self, scope: Scope, job: Job, status: str) -> dict[str, Any]:
        base = f"{_origin(scope)}/{job.app}/requests/{job.id}"
        return {
            "status": status,
            "request_id": job.id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    def _result(self, settings: Settings, scope: Scope, job: Job) -> dict[str, Any]:
        p = job.params
        images = []
        for k in range(p["num_images"]):
            if p["sync_mode"]:
                png = self._png(settings, p, k)
                url = with_base64(b"data:image/png;base64,%s", png).decode("ascii")
            else:
                url = f"{_origin(scope)}{MEDIA_PREFIX}/{job.id}/image-{k}.png"
            size = {"width": p["width"], "height": p["height"]}
            images.append({"url": url, **size, "content_type": "image/png"})
        return {
            "images": images,
            "timings": {"inference": 0.01},
            "seed": p["seed"],
            "has_nsfw_concepts": [False] * len(images),
            "prompt": p["prompt"],
        }

    def _file(self, settings: Settings, path: str) -> bytes:
        found = _FILE.fullmatch(path)
        job = None if found is None else settings.jobs.get(self.name, found[1])
        if job is not None:
            _settle(settings, job)
        if job is None or not job.done or _failure(job) is not None:
            raise Reject(404, "File not found")
        assert found is not None
        if int(found[2]) >= job.params["num_images"]:
            raise Reject(404, "File not found")
        return self._png(settings, job.params, int(found[2]))

    @staticmethod
    def _png(settings: Settings, params: Mapping[str, Any], k: int) -> bytes:
        seed = params["seed"] + k
        return draw(
            settings, params["prompt"], seed, params["steps"], params["width"], params["height"]
        )

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        if isinstance(reject, _Invalid):
            await send_json(send, 422, {"detail": reject.errors}, headers)
        else:
            await send_json(send, reject.status, {"detail": reject.message}, headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        return _FAULTS.answer(fault, plan)


def _settle(settings: Settings, job: Job) -> None:
    """Mark a timed job (one taken under a ``Capacity``) done once its time is up."""
    load = settings.load.get(Fal.name)
    if load is not None and load.job_state(job.id) == "completed":
        job.done = True


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise Reject(405, "Method Not Allowed")


def _origin(scope: Scope) -> str:
    host = header(scope, b"host") or "127.0.0.1"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def _failure(job: Job) -> tuple[int, Any, str | None] | None:
    """How a completed job failed: its status, ``detail`` and ``error_type``; None if not."""
    if job.cancelled:
        return 499, "Request cancelled by the client", "client_cancelled"
    if job.error is not None:
        return 422, job.error, None
    return None


def _summary(detail: Any) -> str:
    """A failed job's ``error`` in its status: one line, as fal gives it."""
    if isinstance(detail, list):
        first = detail[0]
        return f"Unprocessable Entity: {'.'.join(first['loc'][1:])}: {first['msg']}"
    return str(detail)


def _params(request: Mapping[str, Any]) -> dict[str, Any]:
    """Check the body against fal's FLUX.1 [schnell] schema; raise ``_Invalid`` if not."""
    errors: list[dict[str, Any]] = []

    def bad(field: str, msg: str, kind: str) -> None:
        errors.append({"loc": ["body", field], "msg": msg, "type": kind})

    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        bad("prompt", "Field required" if prompt is None else "Input should be a string", "missing")
    width, height = _size(request.get("image_size", "landscape_4_3"), bad)
    steps = _int(request, "num_inference_steps", 4, 1, 12, bad)
    count = _int(request, "num_images", 1, 1, 4, bad)
    seed = _int(request, "seed", None, 0, SEED_MAX, bad)
    if request.get("output_format", "jpeg") not in ("jpeg", "png"):
        bad("output_format", "Input should be 'jpeg' or 'png'", "literal_error")
    sync = request.get("sync_mode", False)
    if not isinstance(sync, bool):
        bad("sync_mode", "Input should be a valid boolean", "bool_type")
    if errors:
        raise _Invalid(errors)
    assert isinstance(prompt, str)
    if seed is None:  # fal picks one and reports it; the emulator's is fixed by the prompt
        seed = zlib.crc32(prompt.encode())
    return {
        "prompt": prompt,
        "width": width,
        "height": height,
        "steps": steps,
        "num_images": count,
        "seed": seed,
        "sync_mode": sync,
    }


def _int(
    request: Mapping[str, Any], field: str, default: int | None, low: int, high: int, bad: Any
) -> Any:
    value = request.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bad(field, f"Input should be an integer from {low} to {high}", "int_range")
        return default
    return value


def _size(size: Any, bad: Any) -> tuple[int, int]:
    if isinstance(size, str):
        if size in _PRESETS:
            return _PRESETS[size]
        bad("image_size", f"Input should be one of {', '.join(_PRESETS)}", "literal_error")
        return 1, 1
    if isinstance(size, dict):
        sides = [size.get("width", 512), size.get("height", 512)]
        if all(not isinstance(s, bool) and isinstance(s, int) and 0 < s <= 14142 for s in sides):
            if max(sides) <= _MAX_SIDE:
                return sides[0], sides[1]
            bad("image_size", f"the emulator draws at most {_MAX_SIDE} pixels a side", "emulator")
            return 1, 1
    bad("image_size", "Input should be a preset name or {width, height} from 1 to 14142", "type")
    return 1, 1


def _with_logs(scope: Scope) -> bool:
    """``?logs=1`` (flux_sdk, fal's docs) or ``?logs=true`` (fal-client): logs wanted."""
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(value.strip().lower() in ("1", "true") for value in query.get("logs", ()))
