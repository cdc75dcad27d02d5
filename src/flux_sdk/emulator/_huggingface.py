"""Hugging Face's router: ``hf-inference`` itself, and the hosts it forwards to.

``POST /hf-inference/models/{owner}/{name}`` takes ``{"inputs", "parameters"}`` and
answers the image bytes. Under ``/fal-ai/``, ``/replicate/`` and ``/nscale/`` the router
checks the Hugging Face token (``Authorization: Bearer KEY``), then hands the rest of
the path to that host's own module with the host's own credential, as the real router
forwards with Hugging Face's key: ``/fal-ai/fal-ai/flux/schnell?_subdomain=queue`` is
fal's queue, without ``_subdomain=queue`` fal.run; ``/replicate/v1/...`` is Replicate;
``/nscale/v1/images/generations`` the OpenAI-style route. Those hosts answer in their
own shapes, with their own follow-up URLs (which a client moves under the prefix).
Together's route, ``/together/v1/images/generations``, is the Together module's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flux_sdk.emulator._asgi import Scope, Send, send_bytes, send_json
from flux_sdk.emulator._fal import SYNC_PREFIX
from flux_sdk.emulator._fal import Fal as FalHost
from flux_sdk.emulator._faults import PNG_BASE64_START, Canned, Fault, FaultPlan, seconds
from flux_sdk.emulator._host import Host, Settings
from flux_sdk.emulator._openai import OpenAIImages as OpenAIHost
from flux_sdk.emulator._replicate import Replicate as ReplicateHost
from flux_sdk.emulator._request import SEED_MAX, Reject, int_field, json_object
from flux_sdk.emulator._wire import Failure, FaultAnswers, check_key, draw

INFERENCE_PREFIX = "/hf-inference/models/"
MODELS = frozenset({"black-forest-labs/FLUX.1-schnell"})
AUTH_ERROR = "Invalid credentials in Authorization header"
# The router's window, as its IETF-draft headers describe it (huggingface_hub reads them).
WINDOW, QUOTA = 300, 500
# diffusers' Flux pipeline defaults to 28 steps; the emulator draws any count quickly.
DEFAULT_STEPS = 28
# The messages are the emulator's own, in the router's {"error": ...} shape. A 429 has
# no Retry-After: the window is in `ratelimit`. Broken base64 is text where image bytes go.
_FAULTS = FaultAnswers(
    {
        Fault.RATE_LIMIT: Failure(
            429, {"error": "You have exceeded the rate limit for Inference Providers"}
        ),
        Fault.SERVER_ERROR: Failure(500, {"error": "Internal Server Error"}),
        Fault.BAD_GATEWAY: Failure(502, {"error": "Bad Gateway"}),
        Fault.UNAVAILABLE: Failure(503, {"error": "Service Unavailable"}),
    },
    cut='{"error": "',
    broken=PNG_BASE64_START.encode(),
    broken_type="image/png",
    rate_limit=lambda plan: {"ratelimit": f'"api";r=0;t={seconds(plan.retry_after)}'},
)


class HuggingFaceRouter:
    """``router.huggingface.co``: ``hf-inference``, and fal, Replicate and nscale behind it."""

    name = "huggingface"
    methods = ("GET", "POST", "PUT")

    def __init__(self) -> None:
        # Each forwarded prefix, the host behind it and the scheme that host's key takes.
        self.hosts: dict[str, tuple[Host, str]] = {
            "/fal-ai": (FalHost(), "Key"),
            "/replicate": (ReplicateHost(), "Bearer"),
            "/nscale": (OpenAIHost(), "Bearer"),
        }

    def matches(self, path: str) -> bool:
        if path.startswith(INFERENCE_PREFIX):
            return len(path) > len(INFERENCE_PREFIX)
        # fal's own queue is /fal-ai/flux/...: only what the host behind would answer.
        prefix = "/" + path.split("/")[1]
        return prefix in self.hosts and self.hosts[prefix][0].matches(path[len(prefix) :])

    def response_headers(self, request_id: str) -> dict[str, str]:
        return {
            "ratelimit": f'"api";r={QUOTA - 1};t={WINDOW}',
            "ratelimit-policy": f'"fixed window";"api";q={QUOTA};w={WINDOW}',
        }

    async def answer(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        check_key(scope, settings, AUTH_ERROR)
        path: str = scope["path"]
        if path.startswith(INFERENCE_PREFIX):
            if scope["method"] != "POST":
                raise Reject(405, "Method Not Allowed")
            image = _inference(settings, path[len(INFERENCE_PREFIX) :], json_object(body))
            await send_bytes(send, 200, image, "image/png", headers)
            return
        prefix = "/" + path.split("/")[1]
        host, scheme = self.hosts[prefix]
        inner = _forwarded(scope, prefix, f"{scheme} {settings.api_key}")
        merged = {**headers, **host.response_headers(headers.get("x-request-id", ""))}
        try:
            await host.answer(settings, inner, body, merged, send)
        except Reject as exc:  # the router passes the host's own error through
            await host.refuse(send, exc, merged)

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        await send_json(send, reject.status, {"error": reject.message}, headers)

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        return _FAULTS.answer(fault, plan)


def _forwarded(scope: Scope, prefix: str, authorization: str) -> dict[str, Any]:
    """The request as the host behind ``prefix`` receives it from the router."""
    path = scope["path"][len(prefix) :]
    query: bytes = scope.get("query_string", b"")
    if prefix == "/fal-ai" and b"_subdomain=queue" not in query and "/requests/" not in path:
        path = SYNC_PREFIX + path  # fal.run's sync route, under its prefix on this origin
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
    headers.append((b"authorization", authorization.encode("latin-1")))
    return {**scope, "path": path, "raw_path": path.encode(), "headers": headers}


def _inference(settings: Settings, model: str, request: Mapping[str, Any]) -> bytes:
    """Check a text-to-image body as hf-inference reads it; the PNG it asks for."""
    if model not in MODELS:
        raise Reject(404, f"Model {model} does not exist")
    prompt = request.get("inputs")
    if not isinstance(prompt, str) or not prompt:
        raise Reject(400, "'inputs' must be a non-empty string")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise Reject(400, "'parameters' must be an object")
    side = settings.default_size
    steps = int_field(parameters, "num_inference_steps", DEFAULT_STEPS, 1, 100, status=400)
    seed = int_field(parameters, "seed", None, 0, SEED_MAX, status=400)
    width = int_field(parameters, "width", side, 64, 2048, status=400)
    height = int_field(parameters, "height", side, 64, 2048, status=400)
    return draw(settings, prompt, seed, steps, width, height)
