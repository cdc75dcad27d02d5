"""fal's wire rules: its error bodies, its extra fields, and where its key may go.

fal answers errors as ``{"detail": "..."}`` or ``{"detail": [{"loc", "msg", ...}]}``
(validation), sometimes with ``error_type`` (also in ``X-Fal-Error-Type``), and may say
in ``X-Fal-Retryable`` whether the same request could succeed if sent again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from pydantic_core import from_json

from flux_sdk._base._errors import InvalidRequestError, ProviderError, error_for_status
from flux_sdk._base._models import GenerateRequest
from flux_sdk._base._secret import SecretStr

from ._wire import excerpt, raise_for_status, redact, request_id, retry_after

__all__ = ["IMAGE_SIZES", "check_extra", "fal_error", "same_origin"]

# fal's presets and what they draw (fal's toolkit, IMAGE_SIZE_PRESETS).
IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
MAX_SIDE = 14142
_ARGUMENT = {"prompt": "prompt", "seed": "seed", "num_inference_steps": "steps"}
_CHOICES = {
    "output_format": ("jpeg", "png"),
    "acceleration": ("none", "regular", "high"),
}
_FLAGS = ("sync_mode", "enable_safety_checker")
_MAX_DETAILS = 5


def check_extra(request: GenerateRequest, *, fixed_format: bool) -> None:
    """Refuse, before sending, an ``extra_body`` fal would refuse or flux_sdk cannot read."""
    extra = request.extra_body
    for key, argument in _ARGUMENT.items():
        if key in extra:
            _refuse(f"extra_body[{key!r}] duplicates a field of the request; use {argument}=...")
    if "num_images" in extra and extra["num_images"] != 1:
        _refuse("flux_sdk asks fal for one image per call; leave num_images out")
    if "image_size" in extra:
        if request.width is not None or request.height is not None:
            _refuse("give either width/height or extra_body['image_size'], not both")
        _check_size(extra["image_size"])
    if fixed_format and "output_format" in extra:
        _refuse("output_format is set on Fal(...); leave it out of extra_body")
    for key, choices in _CHOICES.items():
        if key in extra and extra[key] not in choices:
            _refuse(f"{key} must be one of {', '.join(choices)} (got {extra[key]!r})")
    for key in _FLAGS:
        if key in extra and not isinstance(extra[key], bool):
            _refuse(f"{key} must be true or false (got {extra[key]!r})")
    if "guidance_scale" in extra:
        scale = extra["guidance_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 <= scale <= 20:
            _refuse(f"guidance_scale must be a number from 1 to 20 (got {scale!r})")


def _check_size(size: Any) -> None:
    if isinstance(size, str):
        if size not in IMAGE_SIZES:
            _refuse(f"image_size must be one of {', '.join(IMAGE_SIZES)} or {{width, height}}")
        return
    if not isinstance(size, dict) or set(size) != {"width", "height"}:
        _refuse("image_size must be a preset name or {'width': W, 'height': H}")
    for side in ("width", "height"):
        value = size[side]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            _refuse(f"image_size {side} must be an integer from 1 to {MAX_SIDE} (got {value!r})")


def _refuse(rule: str) -> None:
    raise InvalidRequestError(f"fal: {rule}", provider="fal")


def same_origin(url: str, base: httpx.URL) -> bool:
    """Whether ``url`` is on the scheme, host and port of ``base`` (where the key goes)."""
    try:
        other = httpx.URL(url)
        return (other.scheme, other.host, _port(other)) == (base.scheme, base.host, _port(base))
    except (httpx.InvalidURL, TypeError, ValueError):
        return False


def _port(url: httpx.URL) -> int | None:
    return url.port or {"https": 443, "http": 80}.get(url.scheme)


def fal_error(response: httpx.Response, secrets: Iterable[SecretStr]) -> ProviderError:
    """The `ProviderError` for a non-2xx fal answer, quoting fal's ``detail``."""
    secrets = tuple(secrets)
    try:
        raise_for_status(response, provider="fal", secrets=secrets)
    except ProviderError as exc:
        error = exc
    else:  # pragma: no cover - only called for non-2xx answers
        raise AssertionError(response.status_code)
    status = response.status_code
    body = _json(response.content)
    detail = _detail(body.get("detail"))
    error_type = body.get("error_type") or response.headers.get("x-fal-error-type")
    if detail is not None and not 300 <= status < 400:
        rid = request_id(response.headers, secrets)
        message = f"fal answered HTTP {status}: {detail}"
        if isinstance(error_type, str) and error_type:
            message += f" ({error_type[:80]})"
        if rid:
            message += f" (request id {rid})"
        error = error_for_status(
            status,
            redact(message, secrets)[:1500],
            provider="fal",
            body=excerpt(response.content, secrets),
            request_id=rid,
            retry_after=retry_after(response.headers),
        )
    hint = response.headers.get("x-fal-retryable", "").strip().lower()
    if hint in ("true", "false"):
        error.retryable = hint == "true"
    return error


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = from_json(content[:65_536])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(detail: Any) -> str | None:
    """fal's ``detail``: a message, or a list of validation errors as one line."""
    if isinstance(detail, str) and detail:
        return detail[:1000]
    if not isinstance(detail, list) or not detail:
        return None
    parts = []
    for item in detail[:_MAX_DETAILS]:
        if not isinstance(item, dict):
            parts.append(str(item)[:200])
            continue
        loc = item.get("loc")
        where = [str(p) for p in loc if p != "body"] if isinstance(loc, list) else []
        text = str(item.get("msg") or item.get("type") or "invalid")[:200]
        parts.append(f"{'.'.join(where)}: {text}" if where else text)
    if len(detail) > _MAX_DETAILS:
        parts.append(f"and {len(detail) - _MAX_DETAILS} more")
    return "; ".join(parts)
