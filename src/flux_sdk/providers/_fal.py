"""fal.ai: FLUX.1 [schnell] through fal's queue (submit, poll, fetch) or its sync route.

Queue mode posts to ``https://queue.fal.run/{model}`` and then follows only the
``status_url``, ``response_url`` and ``cancel_url`` the submit answer returns: for a
model with a sub-path they drop that sub-path, so building them would be wrong. Sync
mode posts to ``https://fal.run/{model}``. Either way the result lists images by URL (a
CDN file, or a ``data:`` URI with ``sync_mode``), which the flow fetches or decodes.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_core import core_schema, to_json

from flux_sdk._base._errors import ConfigError, InvalidResponseError, ProviderError, warn
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import Accepted, Ended, Flow, ParamRules, Step, Wait
from ._base64 import decode_base64
from ._fal_wire import check_extra, fal_error, same_origin
from ._fields import is_model_path, request_fields
from ._wire import (
    check_base_url,
    json_shape,
    optional,
    parse_json,
    redact,
    request_id,
    resolve_api_key,
)

__all__ = ["POLLS", "POLL_FIRST", "POLL_MAX", "Fal", "poll_waits"]

# fal's schema: num_inference_steps 1..12; ImageSize width and height 1..14142 (fal's
# toolkit). Images per call are 1..4 on fal; flux_sdk asks for one (see the docs page).
RULES = ParamRules(steps=(1, 12), size=(1, 14142))
# The first poll after 0.25 s (schnell often finishes within one), then close together
# while a job is likely to end (fal's own client polls every 0.1 s), then every 1 s: a
# job seen done late holds its concurrency slot (and its host's replica) for nothing.
POLLS = (0.25, 0.1, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75)
POLL_FIRST = POLLS[0]
POLL_MAX = 1.0
# Once the client knows how long this host's jobs take: the first poll then, then
# closer still (that first look rarely misses by much), at most this long after submit.
POLLS_AFTER_EXPECTED = (0.05, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75)
EXPECTED_MAX = 5.0
# Without a width or height, flux_sdk asks for the square its other hosts draw; fal's
# own default is landscape_4_3 (1024x768). extra_body={"image_size": ...} overrides it.
DEFAULT_SIDE = 1024
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)+")
_STATES = frozenset({"IN_QUEUE", "IN_PROGRESS", "COMPLETED"})
# error_type values of a failed job whose cause is fal's infrastructure, not the input.
_TRANSIENT_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)

_STR = core_schema.str_schema()
_SUBMITTED = json_shape(
    {
        "request_id": optional(_STR),
        "status_url": optional(_STR),
        "response_url": optional(_STR),
        "cancel_url": optional(_STR),
    }
)
_STATUS = json_shape(
    {
        "status": optional(_STR),
        "queue_position": optional(core_schema.int_schema()),
        "error": optional(core_schema.any_schema()),
        "error_type": optional(_STR),
    }
)
_RESULT = json_shape(
    {
        "images": optional(
            core_schema.list_schema(
                core_schema.typed_dict_schema({"url": optional(_STR)}),
            )
        ),
        "seed": optional(core_schema.int_schema()),
        "has_nsfw_concepts": optional(core_schema.list_schema(core_schema.any_schema())),
    }
)


def poll_waits(expected: float | None) -> tuple[float, ...]:
    """The waits before each status poll of a job, given how long the host's recent jobs
    took (``expected``, from the client; None or 0: not known yet)."""
    if not expected or expected <= 0:
        return POLLS
    return (min(expected, EXPECTED_MAX), *POLLS_AFTER_EXPECTED)


@dataclass(frozen=True, slots=True)
class _Link:
    """An image fal stored on its CDN, still to be downloaded."""

    url: httpx.URL
    seed: int | None
    request_id: str | None


class Fal:
    """FLUX.1 [schnell] on fal.ai, by its queue (``queue=True``) or its sync route.

    The key falls back to ``FAL_KEY`` and is sent as ``Authorization: Key ...`` to fal's
    own host only, never to the CDN that serves the image. ``base_url`` (or
    ``FAL_BASE_URL``) replaces the host of the mode in use (``https://queue.fal.run``
    or ``https://fal.run``), for a proxy or the emulator. ``output_format`` (``"jpeg"``,
    fal's default, or ``"png"``) is sent when given; other fal fields go in
    ``extra_body`` and are checked before sending. When the call is cancelled or its
    deadline passes, the queued job is cancelled on fal (``PUT cancel_url``).
    """

    name = "fal"
    rules = RULES

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        *,
        model: str = "fal-ai/flux/schnell",
        queue: bool = True,
        base_url: str | None = None,
        output_format: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "FAL_KEY", "fal")
        if not is_model_path(model, _MODEL):
            raise ConfigError(
                f"the fal model {model!r} is not an endpoint id such as 'fal-ai/flux/schnell'"
            )
        if output_format not in (None, "jpeg", "png"):
            raise ConfigError(f"fal's output_format is 'jpeg' or 'png' (got {output_format!r})")
        self.model = model
        self.queue = bool(queue)
        self.output_format = output_format
        base_url = base_url or os.environ.get("FAL_BASE_URL") or None
        if base_url is None:
            base_url = "https://queue.fal.run" if self.queue else "https://fal.run"
        base = check_base_url(base_url, provider="fal", setting="the fal base URL")
        self.url = base.copy_with(path=f"{base.path.rstrip('/')}/{model}")
        self._secrets = (self.api_key,)
        self._auth = {
            "Authorization": f"Key {self.api_key.get_secret_value()}",
            "Accept": "application/json",
        }
        self._headers = {**self._auth, "Content-Type": "application/json"}

    def __repr__(self) -> str:
        mode = "queue" if self.queue else "sync"
        return f"Fal(url={str(self.url)!r}, mode={mode!r})"

    def body(self, request: GenerateRequest) -> dict[str, Any]:
        """The JSON body fal is sent for ``request`` (one image)."""
        check_extra(request, fixed_format=self.output_format is not None)
        size: dict[str, int] | None = {
            "width": request.width or DEFAULT_SIDE,
            "height": request.height or DEFAULT_SIDE,
        }
        if request.width is None and request.height is None and "image_size" in request.extra_body:
            size = None  # extra_body's preset or size goes in its place
        fields = {
            "prompt": request.prompt,
            "image_size": size,
            "num_inference_steps": request.steps,
            "seed": request.seed,
            "num_images": 1,
            "output_format": self.output_format,
        }
        return request_fields(fields, request, provider=self.name)

    def generate_flow(self, request: GenerateRequest) -> Flow:
        content = to_json(self.body(request))
        post = httpx.Request("POST", self.url, headers=self._headers, content=content)
        if not self.queue:
            found = yield Step(post, functools.partial(self._result, request, None))
            return (yield from self._download(request, found))
        job = yield Step(post, self._submitted, kind="submit")
        cancel = httpx.Request("PUT", job["cancel_url"], headers=self._auth)
        expected = yield Accepted(job_id=job["request_id"], cancel=cancel)
        waits = poll_waits(expected)
        polls = 0
        while True:
            yield Wait(waits[polls] if polls < len(waits) else POLL_MAX)
            polls += 1
            poll = httpx.Request("GET", job["status_url"], headers=self._auth)
            status = yield Step(poll, self._status, kind="poll")
            if status["status"] == "COMPLETED":
                break
        # fal's worker is free now: the job's concurrency slot goes back before the fetch.
        yield Ended(ok=not status.get("error"))
        if status.get("error"):
            raise self._failed(status, job["request_id"])
        fetch = httpx.Request("GET", job["response_url"], headers=self._auth)
        # The job's id, not the fetch's: it is what fal's support asks for.
        read = functools.partial(self._result, request, job["request_id"])
        found = yield Step(fetch, read, kind="poll")
        return (yield from self._download(request, found))

    def _download(self, request: GenerateRequest, found: GeneratedImage | _Link) -> Flow:
        """The image itself: already decoded from a ``data:`` URI, or fetched from its URL."""
        if isinstance(found, GeneratedImage):
            return found
        download = httpx.Request("GET", found.url)  # the CDN: no key is sent there

        def parse(response: httpx.Response) -> GeneratedImage:
            self._check(response)  # in the step, so a bad download is fetched again
            return GeneratedImage.from_data(
                response.content,
                provider=self.name,
                request=request,
                seed=found.seed,
                request_id=found.request_id,
            )

        image: GeneratedImage = yield Step(download, parse, kind="download")
        return image

    def _result(
        self, request: GenerateRequest, job_id: str | None, response: httpx.Response
    ) -> GeneratedImage | _Link:
        """A result's first image: decoded from a ``data:`` URI, or where to fetch it."""
        result = self._json(_RESULT)(response)
        rid = job_id or result["_request_id"]
        images: list[dict[str, Any]] = result.get("images") or [{}]
        url = images[0].get("url")
        if not url:
            raise InvalidResponseError(
                "fal answered a result without images[0].url",
                provider=self.name,
                status_code=response.status_code,
                request_id=rid,
            )
        if any(result.get("has_nsfw_concepts") or ()):
            warn(
                "fal flagged this image as NSFW; its safety checker may have replaced it "
                'with a black image (extra_body={"enable_safety_checker": False} turns it off)'
            )
        seed = result.get("seed")
        if url.startswith("data:"):
            data = decode_base64(url, provider=self.name, field="images[0].url", request_id=rid)
            return GeneratedImage.from_data(
                data, provider=self.name, request=request, seed=seed, request_id=rid
            )
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.scheme not in ("https", "http") or not parsed.host:
            raise InvalidResponseError(
                "fal answered an images[0].url that is not an http(s) URL",
                provider=self.name,
                status_code=response.status_code,
                request_id=rid,
                retryable=False,
            )
        return _Link(parsed, seed, rid)

    def _check(self, response: httpx.Response) -> None:
        if not response.is_success:
            raise fal_error(response, self._secrets)

    def _json(self, shape: Any) -> Any:
        def parse(response: httpx.Response) -> dict[str, Any]:
            self._check(response)
            data = parse_json(shape, response, provider=self.name, secrets=self._secrets)
            data["_request_id"] = request_id(response.headers, self._secrets)
            return data

        return parse

    def _submitted(self, response: httpx.Response) -> dict[str, Any]:
        """The job fal queued; its URLs must be on the host the key was sent to."""
        job: dict[str, Any] = self._json(_SUBMITTED)(response)
        for field in ("status_url", "response_url", "cancel_url"):
            url = job.get(field)
            if not url or not same_origin(url, self.url):
                what = "no" if not url else "a foreign"
                raise InvalidResponseError(
                    f"fal accepted the job (request id {job.get('request_id')}) but answered "
                    f"{what} {field}; flux_sdk sends your key only to {self.url.host}, so the "
                    "job cannot be followed: check the base URL",
                    provider=self.name,
                    status_code=response.status_code,
                    retryable=False,
                )
        job["request_id"] = job.get("request_id") or job["_request_id"]
        return job

    def _status(self, response: httpx.Response) -> dict[str, Any]:
        """A job's status; one fal does not document is a bad answer, polled again."""
        status: dict[str, Any] = self._json(_STATUS)(response)
        state = status.get("status")
        if state not in _STATES:
            shown = redact(str(state), self._secrets)[:40]
            raise InvalidResponseError(
                f"fal answered a job status of {shown!r}, not IN_QUEUE, IN_PROGRESS or COMPLETED",
                provider=self.name,
                status_code=response.status_code,
                request_id=status["_request_id"],
            )
        return status

    def _failed(self, status: dict[str, Any], job_id: str | None) -> ProviderError:
        """A job fal reports COMPLETED with an error: it ran (and may be billed) but failed."""
        error_type = status.get("error_type")
        detail = status["error"]
        text = detail if isinstance(detail, str) else to_json(detail).decode()
        kind = f" ({error_type})" if error_type else ""
        return ProviderError(
            f"fal failed the job {job_id}: {redact(text, self._secrets)[:1000]}{kind}; "
            "it was not submitted again",
            provider=self.name,
            status_code=200,
            request_id=job_id,
            retryable=error_type in _TRANSIENT_TYPES,
        )
