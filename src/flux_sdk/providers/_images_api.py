"""What Together and OpenAI-style hosts share: ``{"data": [{"b64_json"}]}`` answers,
``{"error": {"message", "type", "code"}}`` failures and ``x-ratelimit-*`` headers.

Kept apart from either provider so both read answers, errors and rate-limit hints the
same way; nothing here is specific to one host.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic_core import ValidationError, core_schema

from flux_sdk._base._errors import InvalidResponseError, ProviderError, QuotaExceeded
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretStr

from ._base64 import decode_base64
from ._wire import json_shape, optional, parse_json, raise_for_status, request_id

__all__ = ["image_from_data", "raise_for_error", "reset_seconds"]

_ITEM = core_schema.typed_dict_schema(
    {
        "b64_json": optional(core_schema.str_schema()),
        "url": optional(core_schema.str_schema()),
    }
)
_IMAGES = json_shape({"data": optional(core_schema.list_schema(_ITEM))})
_ERROR = json_shape(
    {
        "error": optional(
            core_schema.typed_dict_schema(
                {
                    "message": optional(core_schema.any_schema()),
                    "type": optional(core_schema.any_schema()),
                    "code": optional(core_schema.any_schema()),
                }
            )
        )
    }
)
# Headers that say when the request limit resets: Together's, then OpenAI's.
_RESET_HEADERS = ("x-ratelimit-reset", "x-ratelimit-reset-requests")
# A 429 that means "out of money", not "too fast": waiting does not help.
_NO_CREDIT_CODES = frozenset({"insufficient_quota", "insufficient_credit", "billing_hard_limit"})
_NO_CREDIT_WORDS = ("credit", "quota", "billing")
_DURATION = re.compile(r"(?:([0-9.]+)h)?(?:([0-9.]+)m(?!s))?(?:([0-9.]+)s)?(?:([0-9.]+)ms)?")
# A reset value this large is a Unix time, not a number of seconds.
_EPOCH = 1_000_000_000


def reset_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until a rate limit resets, from ``1.5``, ``12ms``, ``6m0s`` or a Unix time.

    None when the value is missing or unreadable: a hint, never a reason to fail.
    """
    if not value:
        return None
    text = value.strip().lower()
    try:
        number = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if match is None or not any(match.groups()):
            return None
        try:
            hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
        except ValueError:
            return None
        return hours * 3600 + minutes * 60 + seconds + millis / 1000
    if not math.isfinite(number) or number < 0:
        return None
    if number >= _EPOCH:
        return max(0.0, number - (time.time() if now is None else now))
    return number


def raise_for_error(
    response: httpx.Response, *, provider: str, secrets: Iterable[SecretStr] = ()
) -> None:
    """`raise_for_status`, plus what these hosts add to a failure.

    - a 429 without ``Retry-After`` takes ``retry_after`` from ``x-ratelimit-reset``
      (Together) or ``x-ratelimit-reset-requests`` (OpenAI);
    - a 429 whose error says the account is out of credit or quota is `QuotaExceeded`;
    - ``x-should-retry: true|false`` (OpenAI's and Stainless clients' header) decides
      ``retryable`` when the host sends it.
    """
    try:
        raise_for_status(response, provider=provider, secrets=secrets)
    except ProviderError as exc:
        if response.status_code == 429:
            if exc.retry_after is None:
                exc.retry_after = next(
                    (
                        seconds
                        for name in _RESET_HEADERS
                        if (seconds := reset_seconds(response.headers.get(name))) is not None
                    ),
                    None,
                )
            if _out_of_credit(response.content):  # waiting will not help: add credit
                raise QuotaExceeded.from_error(
                    exc, "the account's credit or quota is spent: add credit at the host"
                ) from None
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        if should_retry in ("true", "false"):
            exc.retryable = should_retry == "true"
        raise


def _out_of_credit(body: bytes) -> bool:
    try:
        error = _ERROR.validate_json(body).get("error") or {}
    except ValidationError:
        return False
    for field in ("code", "type"):
        if str(error.get(field) or "").lower() in _NO_CREDIT_CODES:
            return True
    message = str(error.get("message") or "").lower()
    return any(word in message for word in _NO_CREDIT_WORDS)


def image_from_data(
    response: httpx.Response,
    *,
    provider: str,
    request: GenerateRequest,
    secrets: tuple[SecretStr, ...],
) -> GeneratedImage:
    """The first image of ``{"data": [{"b64_json": ...}]}`` (or a ``data:`` URL in ``url``)."""
    rid = request_id(response.headers, secrets)
    answer: dict[str, Any] = parse_json(_IMAGES, response, provider=provider, secrets=secrets)
    items = answer.get("data") or []
    if not items:
        raise InvalidResponseError(
            f"{provider} answered HTTP {response.status_code} with no image in 'data'",
            provider=provider,
            status_code=response.status_code,
            request_id=rid,
        )
    item = items[0]
    b64 = item.get("b64_json")
    field = "data[0].b64_json"
    if not b64:
        url = item.get("url") or ""
        if not url.startswith("data:"):
            raise InvalidResponseError(
                f"{provider} answered with an image URL where base64 was asked for; "
                "flux_sdk asks for base64, so check that the host honours response_format",
                provider=provider,
                status_code=response.status_code,
                request_id=rid,
            )
        b64, field = url, "data[0].url"
    data = decode_base64(b64, provider=provider, field=field, request_id=rid)
    return GeneratedImage.from_data(data, provider=provider, request=request, request_id=rid)
