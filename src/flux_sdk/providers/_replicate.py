"""Replicate: create a prediction, poll it until it ends, download its output.

``POST {base}/v1/models/{model}/predictions`` with ``{"input": {...}}`` and ``Prefer:
wait=N`` (the host holds the answer up to N seconds, so a fast prediction comes back
finished); while it is ``starting`` or ``processing``, ``GET urls.get``; then fetch
``output[0]``, a URL on Replicate's CDN, or decode it when it is a ``data:`` URI (as
replicate-python does). An answer that already holds the output is done whatever its
status says (the official ``run()`` returns it too). ``POST urls.cancel`` stops a
prediction the caller gave up on. The follow-up URLs are the host's own, never built here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic_core import core_schema, to_json

from flux_sdk._base._errors import Billed, ConfigError, InvalidResponseError, ProviderError
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import Accepted, Ended, Flow, ParamRules, Step, Wait
from ._base64 import decode_base64
from ._fields import is_model_path
from ._replicate_inputs import RULES, prediction_input
from ._wire import (
    check_base_url,
    excerpt,
    image_from_body,
    json_shape,
    optional,
    parse_json,
    raise_for_status,
    redact,
    resolve_api_key,
)

__all__ = ["Replicate"]

DEFAULT_BASE_URL = "https://api.replicate.com"
FLUX_SCHNELL = "black-forest-labs/flux-schnell"
POLL_INTERVAL = 0.5  # seconds, as the official client's default
_RUNNING = frozenset({"starting", "processing"})
_MODEL = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# What the CDN may answer (the output_format choices), as an image client asks for it.
_IMAGES = {"Accept": "image/webp,image/png,image/jpeg,*/*;q=0.8"}

_PREDICTION = json_shape(
    {
        "id": core_schema.typed_dict_field(core_schema.str_schema(min_length=1)),
        "status": core_schema.typed_dict_field(core_schema.str_schema()),
        "output": optional(core_schema.any_schema()),
        "error": optional(core_schema.any_schema()),
        "urls": optional(
            core_schema.typed_dict_schema(
                {
                    "get": optional(core_schema.str_schema()),
                    "cancel": optional(core_schema.str_schema()),
                }
            )
        ),
    }
)


class Replicate:
    """FLUX.1 [schnell] on Replicate (``black-forest-labs/flux-schnell``).

    The token falls back to ``REPLICATE_API_TOKEN``. ``wait`` (1 to 60 seconds, or
    None) is sent as ``Prefer: wait=N``; keep it below the client's read timeout, or a
    slow answer times out after the prediction was created (and billed).
    ``poll_interval`` is the pause between status polls. ``width``/``height`` must be
    one of the model's exact sizes (they are sent as ``aspect_ratio``); other inputs
    (``output_format``, ``aspect_ratio``, ``megapixels``, ``go_fast``, ...) go in
    ``extra_body``. With a seed, ``go_fast: false`` is sent so that the seed reproduces
    the image, unless ``extra_body`` sets ``go_fast``.
    """

    name = "replicate"
    rules: ParamRules = RULES

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        *,
        model: str = FLUX_SCHNELL,
        wait: int | None = 60,
        poll_interval: float = POLL_INTERVAL,
        base_url: str | None = None,
    ) -> None:
        self.api_key = resolve_api_key(api_key, "REPLICATE_API_TOKEN", "Replicate")
        if not is_model_path(model, _MODEL):
            raise ConfigError(
                f"the Replicate model must be 'owner/name' such as {FLUX_SCHNELL!r} "
                f"(got {model!r}; a ':version' suffix is not supported)"
            )
        if wait is not None and (isinstance(wait, bool) or not isinstance(wait, int)):
            raise ConfigError(f"the Replicate wait must be whole seconds or None (got {wait!r})")
        if wait is not None and not 1 <= wait <= 60:
            raise ConfigError(f"the Replicate wait must be 1 to 60 seconds or None (got {wait})")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not 0 < poll_interval < math.inf
        ):
            raise ConfigError(
                f"the Replicate poll_interval must be seconds above 0 (got {poll_interval!r})"
            )
        self.model = model
        self.wait = wait
        self.poll_interval = float(poll_interval)
        self.base_url = check_base_url(
            base_url or DEFAULT_BASE_URL, provider="Replicate", setting="the Replicate base URL"
        )
        path = f"{self.base_url.path.rstrip('/')}/v1/models/{model}/predictions"
        self.url = self.base_url.copy_with(path=path)
        self._auth = {
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
            "Accept": "application/json",
        }
        self._create_headers = {**self._auth, "Content-Type": "application/json"}
        if wait is not None:
            self._create_headers["Prefer"] = f"wait={wait}"

    def __repr__(self) -> str:
        return f"Replicate(model={self.model!r}, url={str(self.url)!r}, wait={self.wait!r})"

    def generate_flow(self, request: GenerateRequest) -> Flow:
        body = to_json({"input": prediction_input(request, self.name)})
        create = httpx.Request("POST", self.url, headers=self._create_headers, content=body)
        # "submit": sent again only when Replicate proves it created nothing.
        prediction: dict[str, Any] = yield Step(create, self._prediction, kind="submit")
        urls: Mapping[str, Any] = prediction.get("urls") or {}
        cancel: httpx.Request | None = None
        refused: InvalidResponseError | None = None
        if urls.get("cancel") is not None:
            try:
                cancel_url = self._own_url(urls["cancel"], "urls.cancel")
                cancel = httpx.Request("POST", cancel_url, headers=self._auth)
            except InvalidResponseError as exc:
                refused = exc  # raised once the job is on record as accepted
        pid: str = prediction["id"]
        yield Accepted(job_id=pid, cancel=cancel)
        if refused is not None:
            raise refused
        while prediction["status"] in _RUNNING and _first_output(prediction) is None:
            poll_url = self._own_url(urls.get("get"), "urls.get")
            yield Wait(self.poll_interval)
            poll = httpx.Request("GET", poll_url, headers=self._auth)
            prediction = yield Step(poll, self._prediction, kind="poll")
        if prediction["status"] not in _RUNNING:  # its worker is free: so is its slot
            yield Ended(ok=prediction["status"] == "succeeded")
        output = self._output_url(prediction)
        if output.startswith("data:"):
            data = decode_base64(output, provider=self.name, field="output", request_id=pid)
            return GeneratedImage.from_data(
                data, provider=self.name, request=request, request_id=pid
            )
        download = httpx.Request("GET", output, headers=_IMAGES)
        # No token: the CDN needs none (and the client strips it for another host anyway).
        image: GeneratedImage = yield Step(
            download, lambda response: self._image(request, response), kind="download"
        )
        return dataclasses.replace(image, request_id=pid)

    def _prediction(self, response: httpx.Response) -> dict[str, Any]:
        secrets = (self.api_key,)
        raise_for_status(response, provider=self.name, secrets=secrets)
        return parse_json(_PREDICTION, response, provider=self.name, secrets=secrets)

    def _image(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        raise_for_status(response, provider=self.name, secrets=(self.api_key,))
        return image_from_body(response, provider=self.name, request=request)

    def _own_url(self, value: object, field: str) -> httpx.URL:
        """A follow-up URL, only on the API's own origin: the token goes with it."""
        try:
            url = httpx.URL(value) if isinstance(value, str) else None
        except (httpx.InvalidURL, ValueError):
            url = None
        base = self.base_url
        if url is None or (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            shown = redact(str(value), (self.api_key,))[:200]
            raise InvalidResponseError(
                f"{self.name} answered with {field} {shown!r}, which is not on "
                f"{base.scheme}://{base.netloc.decode()}; flux_sdk sends your token nowhere "
                "else. Check the base URL.",
                provider=self.name,
                retryable=False,
            )
        return url

    def _output_url(self, prediction: Mapping[str, Any]) -> str:
        """The image URL of an ended prediction, or the error its status means."""
        status = prediction["status"]
        pid = prediction["id"]
        first = _first_output(prediction)
        if status == "succeeded" or (status in _RUNNING and first is not None):
            if first is not None:
                return first
            raise self._ended(
                pid,
                "succeeded without an image: its safety checker drops images it finds "
                "NSFW without a word; try another prompt or seed",
                prediction,
            )
        if status == "failed":
            error = prediction.get("error") or "no reason given"
            raise self._ended(pid, f"failed: {error}", prediction)
        if status == "canceled":
            raise self._ended(pid, "was canceled on Replicate", prediction)
        if status == "aborted":
            raise self._ended(
                pid,
                "was aborted: its deadline passed before it started (not charged); try again",
                prediction,
                billed="no",
            )
        raise self._ended(
            pid, f"has the status {status!r}, which flux_sdk does not know", prediction
        )

    def _ended(
        self, pid: str, what: str, prediction: Mapping[str, Any], billed: Billed | None = None
    ) -> ProviderError:
        # An accepted prediction that ended is never created again by a retry.
        secrets = (self.api_key,)
        return ProviderError(
            f"{self.name} prediction {pid} {redact(what, secrets)[:1000]}",
            provider=self.name,
            status_code=200,
            body=excerpt(to_json(dict(prediction)), secrets),
            request_id=pid,
            retryable=False,
            billed=billed,
        )


def _first_output(prediction: Mapping[str, Any]) -> str | None:
    """The first output (a list of URLs, or one), or None while there is none."""
    output = prediction.get("output")
    first = output[0] if isinstance(output, list) and output else output
    return first if isinstance(first, str) and first else None
