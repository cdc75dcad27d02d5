"""The emulator's ASGI application: Dataoorts, Baseten and OpenAI-style wire formats."""

from __future__ import annotations

import base64
import functools
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from flux_sdk.emulator._asgi import Receive, Scope, Send, cloudflare_error, send_bytes, send_json
from flux_sdk.emulator._faults import (
    _BAD_BASE64,
    _PNG_BASE64_START,
    Fault,
    FaultPlan,
    _seconds,
    inject,
)
from flux_sdk.emulator._image import render_png

_Default = TypeVar("_Default", int, None)

DEFAULT_API_KEY = "emulator-key"
DATAOORTS_MODEL = "black-forest-labs/flux-1-schnell"
MAX_BODY_BYTES = 1024 * 1024

_DATAOORTS_PATH = "/api/v1"
_OPENAI_PATH = "/v1/images/generations"
_BASETEN_PATH = re.compile(
    r"/(?:production|development|environments/[A-Za-z0-9_-]+|deployment/[A-Za-z0-9_-]+)/predict"
)
_BASETEN_AUTH_ERROR = "please check the api-key you provided"
# torch.Generator.manual_seed accepts this range; the emulator keeps to it for both hosts.
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1
# OpenAI's limit for its GPT image models; the DALL-E models take fewer characters.
_OPENAI_PROMPT_CHARS = 32000
_OPENAI_SIZE = re.compile(r"([0-9]{1,4})x([0-9]{1,4})")

# Which wire format a path speaks: it decides the shape of errors and canned faults.
_Host = Literal["dataoorts", "baseten", "openai"]


class _Reject(Exception):
    """A request the service refuses: the status, the message and a Cloudflare error code."""

    def __init__(
        self, status: int, message: str, code: int = 5006, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param  # the offending field, for OpenAI-style errors


class EmulatorApp:
    """An ASGI 3 app that answers like Dataoorts and Baseten do, with stand-in images.

    It also answers OpenAI's Images API shape on ``POST /v1/images/generations``, so
    OpenAI-style clients (openai-python among them) can be measured against the same
    images; that route is a benchmark peer, not a provider of flux_sdk.

    It is a test double of the services, not of flux_sdk: anything that speaks their
    wire formats (our SDK, plain httpx, curl) can run end to end with no key and no
    network. Images come from ``render_png``, so equal requests give equal bytes.

    ``faults`` makes it misbehave the way real providers do (see ``FaultPlan``); it is
    kept as ``app.faults``, which tests may re-arm or replace while the app serves. A
    fault is decided once the request body has been read and before the key and the
    body are checked, since a real outage does not care whether a request was valid.
    Requests refused before that (unknown path, wrong method, body over 1 MiB) are
    never faulted, and a request given no fault is answered exactly as without a plan.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        dataoorts_response: Literal["json", "raw"] = "json",
        image_bytes: int | None = None,
        default_size: int = 1024,
        faults: FaultPlan | None = None,
    ) -> None:
        self.api_key = api_key
        self.dataoorts_response = dataoorts_response
        self.image_bytes = image_bytes
        self.default_size = default_size
        self.faults = FaultPlan() if faults is None else faults
        self.requests_seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # refused: HTTP only

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request and read its body; then answer it, or inject the fault drawn."""
        self.requests_seen += 1
        request_id = f"emu-{self.requests_seen:06d}"
        headers = {"x-request-id": request_id}
        path: str = scope["path"]
        host: _Host
        if path == _DATAOORTS_PATH:
            host = "dataoorts"
        elif path == _OPENAI_PATH:
            host = "openai"
        elif _BASETEN_PATH.fullmatch(path):
            host = "baseten"
            headers["x-baseten-request-id"] = request_id
        else:
            await send_json(send, 404, cloudflare_error(7000, "No route for that URI"), headers)
            return
        try:
            if scope["method"] != "POST":
                headers["allow"] = "POST"
                raise _Reject(405, f"Method {scope['method']} not allowed, use POST", code=7001)
            body = await _read_body(scope, receive)
        except _Reject as exc:
            await _refuse(send, exc, host, headers)
            return
        if body is None:
            return  # the client went away; nobody is left to answer
        answer = functools.partial(self._answer, scope, body, host, headers)
        fault = self.faults.draw()
        if fault is None:
            await answer(send)
            return
        # inject() knows the Dataoorts and Baseten error shapes; OpenAI's are made here.
        canned = _openai_fault(fault, self.faults) if host == "openai" else None
        if canned is not None:
            status, content, content_type, extra = canned
            await send_bytes(send, status, content, content_type, {**headers, **extra})
        else:
            baseten = host == "baseten"
            await inject(
                fault, self.faults, answer, receive, send, baseten=baseten, headers=headers
            )

    async def _answer(
        self, scope: Scope, body: bytes, host: _Host, headers: dict[str, str], send: Send
    ) -> None:
        """The service working normally: check the key and the body, then send the image."""
        try:
            if host == "baseten":
                _check_key(scope, self.api_key, ("api-key", "bearer"))
                await send_bytes(send, 200, self._baseten(body), "application/json", headers)
            elif host == "openai":
                _check_key(scope, self.api_key, ("bearer",))
                await send_bytes(send, 200, self._openai(body), "application/json", headers)
            else:
                _check_key(scope, self.api_key, ("bearer",))
                content, content_type = self._dataoorts(body)
                await send_bytes(send, 200, content, content_type, headers)
        except _Reject as exc:
            await _refuse(send, exc, host, headers)

    def _dataoorts(self, body: bytes) -> tuple[bytes, str]:
        request = _json_object(body)
        if "model" not in request or "data" not in request:
            raise _Reject(400, "Error: the body needs the properties 'model' and 'data'")
        if request["model"] != DATAOORTS_MODEL:
            raise _Reject(400, f"No such model {request['model']!r}", code=5007)
        data = request["data"]
        if not isinstance(data, dict):
            raise _Reject(400, "Error: Type mismatch of '/data', 'object' expected")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not 2 <= len(prompt) <= 2048:
            raise _Reject(
                400, "Error: oneOf at '/prompt' not met, need a string of 2 to 2048 characters"
            )
        steps = _int_field(data, "steps", 4, 1, 8, status=400)
        seed = data.get("seed")
        if isinstance(seed, str) and seed.isascii() and seed.isdigit() and len(seed) <= 20:
            data = {**data, "seed": int(seed)}  # the seed document quotes it: '12345'
        seed = _int_field(data, "seed", None, 0, _SEED_MAX, status=400)
        size = self.default_size  # this model takes no width or height
        png = render_png(
            prompt, seed=seed, steps=steps, width=size, height=size, target_bytes=self.image_bytes
        )
        if self.dataoorts_response == "raw":
            return png, "image/png"
        envelope = (
            b'{"result": {"image_base64": "%s"}, "success": true, "errors": [], "messages": []}'
        )
        return _with_base64(envelope, png), "application/json"

    def _baseten(self, body: bytes) -> bytes:
        request = _json_object(body)
        prompt = request.get("prompt")
        if not isinstance(prompt, str):
            # Faithful to the real model: truss-examples' flux/schnell calls prompt.split()
            # unguarded, so a missing prompt crashes the model and Baseten answers 500.
            raise _Reject(500, f"'{type(prompt).__name__}' object has no attribute 'split'")
        prompt2 = request.get("prompt2")
        if prompt2 is not None and not isinstance(prompt2, str):
            raise _Reject(422, "'prompt2' must be a string")
        # Type-checked, then ignored: schnell forces guidance_scale to 0.0.
        guidance = request.get("guidance_scale", 0.0)
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float, type(None))):
            raise _Reject(422, "'guidance_scale' must be a number")
        # Seed 0 (like a missing seed) means "random" to the real model; the emulator stays
        # deterministic and treats 0 like any other seed.
        seed = _int_field(request, "seed", None, _SEED_MIN, _SEED_MAX)
        steps = _int_field(request, "num_inference_steps", 4, 1, 50)
        width = _int_field(request, "width", self.default_size, 64, 2048, multiple=16)
        height = _int_field(request, "height", self.default_size, 64, 2048, multiple=16)
        max_words = _int_field(request, "max_sequence_length", 256, 1, 512)
        # The model truncates the prompt to max_sequence_length whitespace-separated words.
        words = prompt.split()
        if len(words) > max_words:
            prompt = " ".join(words[:max_words])
        if prompt2 is not None:
            prompt = f"{prompt}\x00{prompt2}"
        # The real model answers JPEG; PNG is fine because clients must sniff the format.
        png = render_png(
            prompt,
            seed=seed,
            steps=steps,
            width=width,
            height=height,
            target_bytes=self.image_bytes,
        )
        return _with_base64(b'{"data": "%s"}', png)

    def _openai(self, body: bytes) -> bytes:
        """OpenAI's ``ImagesResponse``: ``{"created", "data": [{"b64_json"} or {"url"}]}``.

        Steps are fixed at 4 and ``seed`` (not an OpenAI field; send it as extra body) is
        read as on Dataoorts, so a prompt and seed give the same PNG as the Dataoorts
        route. Image ``k`` of ``n`` uses seed ``seed + k`` (no seed: None, then ``k``).
        """
        request = _json_object(body)
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Reject(400, "'prompt' must be a non-empty string", param="prompt")
        if len(prompt) > _OPENAI_PROMPT_CHARS:
            raise _Reject(
                400,
                f"'prompt' is too long: {len(prompt)} characters, "
                f"the maximum is {_OPENAI_PROMPT_CHARS}",
                param="prompt",
            )
        model = request.get("model")
        if model is not None and not isinstance(model, str):
            raise _Reject(400, "'model' must be a string", param="model")
        n = _int_field(request, "n", 1, 1, 10, status=400)
        seed = _int_field(request, "seed", None, 0, _SEED_MAX, status=400)
        width, height = self._openai_size(request.get("size"))
        response_format = request.get("response_format")
        if response_format is None:
            response_format = "b64_json"  # what the GPT image models always answer
        if response_format not in ("b64_json", "url"):
            raise _Reject(
                400,
                f"'response_format' must be 'b64_json' or 'url', got {response_format!r}",
                param="response_format",
            )
        # Only DALL-E 3 rewrites prompts; the emulator "revises" it to itself.
        revised = (
            b', "revised_prompt": ' + json.dumps(prompt).encode()
            if (model or "").startswith("dall-e-3")
            else b""
        )
        # A data: URL stands in for a hosted one: it never expires and needs no second route.
        if response_format == "b64_json":
            template = b'{"b64_json": "%s"' + revised + b"}"
        else:
            template = b'{"url": "data:image/png;base64,%s"' + revised + b"}"
        items = []
        for k in range(n):
            png = render_png(
                prompt,
                seed=seed + k if seed is not None else (k or None),
                steps=4,
                width=width,
                height=height,
                target_bytes=self.image_bytes,
            )
            items.append(_with_base64(template, png))
        created = str(int(time.time())).encode()
        return b"".join((b'{"created": ', created, b', "data": [', b", ".join(items), b"]}"))

    def _openai_size(self, size: object) -> tuple[int, int]:
        if size is None or size == "auto":
            return self.default_size, self.default_size
        match = _OPENAI_SIZE.fullmatch(size) if isinstance(size, str) else None
        if match is None or not all(64 <= int(side) <= 2048 for side in match.groups()):
            raise _Reject(
                400,
                f"'size' must be 'auto' or 'WIDTHxHEIGHT' with sides 64 to 2048, got {size!r}",
                param="size",
            )
        return int(match[1]), int(match[2])


def _int_field(
    obj: Mapping[str, Any],
    key: str,
    default: _Default,
    low: int,
    high: int,
    *,
    multiple: int = 1,
    status: int = 422,
) -> int | _Default:
    """Read an optional integer (``null`` means absent; a bool is not an integer)."""
    value = obj.get(key)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
        or value % multiple
    ):
        rule = f"an integer from {low} to {high}" + (
            f", a multiple of {multiple}" if multiple > 1 else ""
        )
        raise _Reject(status, f"'{key}' must be {rule}, got {value!r}", param=key)
    return value


def _with_base64(template: bytes, png: bytes) -> bytes:
    # Base64 never needs JSON escaping; skipping json.dumps halves the cost of a 2 MB reply.
    before, after = template.split(b"%s")
    return b"".join((before, base64.b64encode(png), after))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise _Reject(400, "the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _Reject(400, "the request body must be a JSON object")
    return parsed


def _check_key(scope: Scope, api_key: str, schemes: tuple[str, ...]) -> None:
    scheme, _, key = _header(scope, b"authorization").partition(" ")
    # compare_digest: a habit worth keeping even for a test server's fixed key.
    if scheme.lower() in schemes and hmac.compare_digest(key.strip().encode(), api_key.encode()):
        return
    message = _BASETEN_AUTH_ERROR if "api-key" in schemes else "Authentication error"
    raise _Reject(401, message, code=10000)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body, across every ``http.request`` message; None if the client left."""
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:  # a chunked body declares no length up front
            raise _Reject(413, f"request body over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse(send: Send, exc: _Reject, host: _Host, headers: Mapping[str, str]) -> None:
    error: dict[str, Any]
    if host == "baseten":
        error = {"error": exc.message}
    elif host == "openai":
        if exc.status == 401:
            error = _openai_error("Incorrect API key provided.", code="invalid_api_key")
        elif exc.status >= 500:
            error = _openai_error(exc.message, kind="server_error")
        else:
            error = _openai_error(exc.message, param=exc.param)
    else:
        error = cloudflare_error(exc.code, exc.message)
    await send_json(send, exc.status, error, headers)


def _openai_error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# The messages are the emulator's own, in the shape OpenAI uses for these statuses.
_OPENAI_FAULTS = {
    Fault.RATE_LIMIT: (429, "Rate limit reached for images per minute", "requests"),
    Fault.SERVER_ERROR: (500, "The server had an error while processing your request", None),
    Fault.BAD_GATEWAY: (502, "Bad gateway", None),
    Fault.UNAVAILABLE: (503, "The server is overloaded or not ready yet", None),
}


def _openai_fault(fault: Fault, plan: FaultPlan) -> tuple[int, bytes, str, dict[str, str]] | None:
    """An HTTP-level fault in OpenAI's shapes; None leaves it to ``inject`` (HTML, transport)."""
    extra = {"retry-after": _seconds(plan.retry_after)} if fault is Fault.RATE_LIMIT else {}
    if fault in _OPENAI_FAULTS:
        status, message, kind = _OPENAI_FAULTS[fault]
        code = "rate_limit_exceeded" if fault is Fault.RATE_LIMIT else None
        error = _openai_error(message, kind=kind or "server_error", code=code)
        return status, json.dumps(error).encode(), "application/json", extra
    if fault is Fault.INVALID_JSON:  # cut off after the start of the image
        cut = '{"created": 0, "data": [{"b64_json": "' + _PNG_BASE64_START
        return 200, cut.encode(), "application/json", extra
    if fault is Fault.INVALID_BASE64:
        obj = {"created": 0, "data": [{"b64_json": _BAD_BASE64}]}
        return 200, json.dumps(obj).encode(), "application/json", extra
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up, but answering lets uvicorn's default lifespan="auto" start cleanly.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
