"""The Cloudflare Workers AI wire format, shared by Cloudflare and Dataoorts.

Both hosts read the same text-to-image input (``prompt``, ``steps`` for FLUX.1
[schnell] or ``num_steps`` for the other models, ``seed``, ``width``, ``height``). Both
answer ``{"success", "errors": [{"code", "message"}], "messages", "result"}``
and report failures with Workers AI's error codes, so both read them here: an error
status keeps its meaning except where a code says otherwise (3036, a spent daily
allocation, is a 429 that no retry can fix today), and ``success: false`` on a 2xx is
a failure, retryable only for the codes of failures that pass.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic_core import ValidationError, core_schema

from flux_sdk._base._errors import InvalidResponseError, ProviderError, QuotaExceeded
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretStr

from ._base64 import LIFTED, decode_base64, lift_base64
from ._fields import Refusal, request_fields
from ._wire import (
    excerpt,
    image_from_body,
    json_shape,
    media_type,
    optional,
    parse_json,
    raise_for_status,
    redact,
    request_id,
    sniffed_image,
)

__all__ = [
    "QUOTA_SPENT",
    "TRANSIENT_CODES",
    "answer_image",
    "envelope_image",
    "input_body",
    "raise_for_envelope_status",
]

# Failures that pass: 3007 timeout, 3008 aborted (both HTTP 408), 3040 out of capacity (429).
TRANSIENT_CODES = frozenset({3007, 3008, 3040})
# The account's free daily allocation is spent: HTTP 429 until 00:00 UTC.
QUOTA_SPENT = 3036
# Bodies larger than this have their image decoded in place (see `_lifted_image`); a
# small one parses faster whole.
_LIFT_FROM = 64 * 1024

_ENVELOPE = json_shape(
    {
        "success": optional(core_schema.bool_schema()),
        "result": optional(
            core_schema.typed_dict_schema(
                {
                    "image": optional(core_schema.str_schema()),
                    "image_base64": optional(core_schema.str_schema()),
                }
            )
        ),
        "errors": optional(core_schema.list_schema(core_schema.any_schema())),
    }
)


_INPUT_FIELDS = frozenset({"prompt", "steps", "num_steps", "seed", "width", "height"})


def input_body(
    request: GenerateRequest, *, steps_field: str, provider: str, refuse: Refusal | None = None
) -> dict[str, Any]:
    """The model's input for ``request``, its steps sent as ``steps_field``; an extra
    field that duplicates one of the request's is refused, then ``refuse`` sees the rest."""

    def refusal(key: str, value: Any) -> str | None:
        if key in _INPUT_FIELDS:
            return (
                f"{provider}: extra_body[{key!r}] duplicates a field of the request; pass "
                f"{'steps' if key == 'num_steps' else key}=... instead"
            )
        return None if refuse is None else refuse(key, value)

    fields = {
        "prompt": request.prompt,
        steps_field: request.steps,
        "seed": request.seed,
        "width": request.width,
        "height": request.height,
    }
    return request_fields(fields, request, provider=provider, refuse=refusal)


def answer_image(
    response: httpx.Response,
    *,
    provider: str,
    request: GenerateRequest,
    field: str | tuple[str, ...],
    secrets: tuple[SecretStr, ...],
    key_env: str | None = None,
) -> GeneratedImage:
    """The image of an answer: its bytes when they are one (some models answer raw image
    bytes, some deployments label them JSON), else the envelope's ``result.<field>``."""
    raise_for_envelope_status(response, provider=provider, secrets=secrets, key_env=key_env)
    image = sniffed_image(response, provider=provider, request=request, secrets=secrets)
    if image is not None:
        return image
    if not media_type(response).startswith("application/json"):
        return image_from_body(response, provider=provider, request=request, secrets=secrets)
    rid = request_id(response.headers, secrets)
    data = envelope_image(response, provider=provider, field=field, secrets=secrets, request_id=rid)
    return GeneratedImage.from_data(data, provider=provider, request=request, request_id=rid)


def raise_for_envelope_status(
    response: httpx.Response,
    *,
    provider: str,
    secrets: tuple[SecretStr, ...],
    key_env: str | None = None,
) -> None:
    """`raise_for_status`, with a 429 carrying code 3036 a `QuotaExceeded`."""
    if response.is_success:
        return
    try:
        raise_for_status(response, provider=provider, secrets=secrets, key_env=key_env)
    except ProviderError as exc:
        if response.status_code == 429 and QUOTA_SPENT in _codes(response.content):
            raise QuotaExceeded.from_error(
                exc, "the daily allocation resets at 00:00 UTC"
            ) from None
        raise


def envelope_image(
    response: httpx.Response,
    *,
    provider: str,
    field: str | tuple[str, ...],
    secrets: tuple[SecretStr, ...],
    request_id: str | None,
) -> bytes:
    """The decoded ``result.<field>`` of a 2xx envelope (the first of several ``field``
    names that is there), or the failure it reports."""
    names = (field,) if isinstance(field, str) else field
    if len(response.content) > _LIFT_FROM:
        data = _lifted_image(response, names, provider, secrets, request_id)
        if data is not None:
            return data
    envelope = parse_json(_ENVELOPE, response, provider=provider, secrets=secrets)
    result = envelope.get("result") or {}
    field = next((name for name in names if result.get(name)), names[0])
    b64 = result.get(field)
    errors = envelope.get("errors") or []
    if envelope.get("success") is False or not b64:
        if errors or envelope.get("success") is False:
            raise _reported_failure(provider, errors, response, secrets, request_id)
        raise InvalidResponseError(
            f"{provider} answered HTTP {response.status_code} without result.{field}",
            provider=provider,
            status_code=response.status_code,
            request_id=request_id,
        )
    return decode_base64(b64, provider=provider, field=f"result.{field}", request_id=request_id)


def _lifted_image(
    response: httpx.Response,
    names: tuple[str, ...],
    provider: str,
    secrets: tuple[SecretStr, ...],
    request_id: str | None,
) -> bytes | None:
    """The image of a successful envelope, decoded in place from the body.

    A 2 MiB image is 2.8 MB of base64: parsing it into a ``str`` first costs a fresh
    buffer of that size (page faults, a copy). The rest of the body is still parsed and
    must say the same as a full parse would (the field lifted is the one read, and no
    earlier name in ``names`` is there). None whenever this shortcut does not apply:
    `envelope_image` then reads the body, and reports any failure, as always.
    """
    for index, name in enumerate(names):
        lifted = lift_base64(response.content, name)
        if lifted is None:
            continue
        rest, text = lifted
        try:
            envelope = parse_json(
                _ENVELOPE, response, provider=provider, secrets=secrets, body=rest
            )
        except InvalidResponseError:
            return None
        result = envelope.get("result") or {}
        if (
            envelope.get("success") is False
            or result.get(name) != LIFTED
            or any(result.get(earlier) for earlier in names[:index])
        ):
            return None
        try:
            return decode_base64(text, provider=provider, field="", request_id=request_id)
        except InvalidResponseError:
            return None
    return None


def _reported_failure(
    provider: str,
    errors: list[Any],
    response: httpx.Response,
    secrets: tuple[SecretStr, ...],
    request_id: str | None,
) -> ProviderError:
    messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    detail = redact("; ".join(messages) or "no error message", secrets)
    return ProviderError(
        f"{provider} reported a failure: {detail[:1000]}",
        provider=provider,
        status_code=response.status_code,
        body=excerpt(response.content, secrets),
        request_id=request_id,
        retryable=bool(_codes_of(errors) & TRANSIENT_CODES),
    )


def _codes(body: bytes) -> set[int]:
    try:
        return _codes_of(_ENVELOPE.validate_json(body).get("errors") or [])
    except ValidationError:
        return set()


def _codes_of(errors: list[Any]) -> set[int]:
    codes = set()
    for error in errors:
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            codes.add(code)
        elif isinstance(code, str) and code.isdigit():
            codes.add(int(code))
    return codes
