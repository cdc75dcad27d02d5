"""Wire helpers for providers: pure, and raising only `FluxError` subclasses.

The built-in providers use these, and so can a third-party one, instead of writing
again the key/environment fallback, base URL checks, status mapping, request ids,
redaction. Fast base64 decoding is in `_base64` (public here as
`flux_sdk.providers.decode_base64`).
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic_core import SchemaValidator, ValidationError, core_schema

from flux_sdk._base._errors import ConfigError, InvalidResponseError, error_for_status
from flux_sdk._base._models import GeneratedImage, GenerateRequest, sniff_media_type
from flux_sdk._base._secret import SecretLike, SecretStr, secret_value
from flux_sdk._transport._connections import is_loopback
from flux_sdk._transport._redact import redact as _redact
from flux_sdk._transport._redact import secrets_of

__all__ = [
    "SecretLike",
    "SecretStr",
    "check_base_url",
    "excerpt",
    "image_from_body",
    "is_loopback",
    "json_shape",
    "media_type",
    "optional",
    "parse_json",
    "raise_for_status",
    "redact",
    "request_id",
    "resolve_api_key",
    "retry_after",
    "sniffed_image",
]

_REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "x-baseten-request-id",
    "x-fal-request-id",
    "cf-ray",
)
_EXCERPT_CHARS = 1_000


def resolve_api_key(api_key: str | SecretLike | None, env_var: str, provider: str) -> SecretStr:
    """The key given (a str, or a secret holder such as pydantic's ``SecretStr``), else
    the environment variable's, else a `ConfigError` naming it."""
    if api_key is not None:
        try:
            api_key = secret_value(api_key)
        except TypeError as exc:
            raise ConfigError(f"the {provider} API key: {exc}") from None
    if api_key is None:
        api_key = os.environ.get(env_var)
    if not api_key or not api_key.strip():
        raise ConfigError(
            f"no {provider} API key: pass api_key=... or set the {env_var} environment variable"
        )
    api_key = api_key.strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in api_key):
        # Never echo the key itself, not even in part.
        raise ConfigError(f"the {provider} API key contains spaces or non-ASCII characters")
    return SecretStr(api_key)


def check_base_url(url: str, *, provider: str, setting: str) -> httpx.URL:
    """Parse a base URL, refusing plain http except to a loopback host."""
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes IDNA, which can fail on its own (`xn--a.example`)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ConfigError(f"{setting} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{setting} must be an https:// URL (got {url!r})")
    if parsed.username or parsed.password:
        raise ConfigError(f"{setting} must not carry credentials in the URL")
    if parsed.query or parsed.fragment:
        raise ConfigError(f"{setting} must not have a query string or fragment (got {url!r})")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise ConfigError(
            f"{setting} uses plain http to {parsed.host!r}, which would send your {provider} "
            "API key unencrypted; use https (plain http is allowed only for loopback hosts)"
        )
    return parsed


def request_id(headers: httpx.Headers, secrets: Iterable[SecretLike | str] = ()) -> str | None:
    """The provider's id for this request, if it sent one (quote it to their support).

    ``secrets`` are blanked out: a server that echoes the key into its id header must
    not get it into an error message or a repr.
    """
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return redact(str(value), secrets)[:200]
    return None


def retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``Retry-After`` as
    seconds or an HTTP date. None when absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def excerpt(
    body: bytes, secrets: Iterable[SecretLike | str] = (), limit: int = _EXCERPT_CHARS
) -> str:
    """The start of a body as text, with any of our secrets blanked out.

    Redaction runs before the cut, so a key straddling the cut cannot leak in part
    (the margin allows for a key sent ``\\uXXXX``-escaped, six characters a character).
    """
    values = _values(secrets)
    margin = 6 * max((len(s) for s in values), default=0)
    text = body[: (limit + margin) * 4].decode("utf-8", "replace")[: limit + margin]
    return _redact(text, values)[:limit]


def redact(text: str, secrets: Iterable[SecretLike | str]) -> str:
    """``text`` with each secret blanked out, whether it appears literally, JSON-escaped
    (``\\/``, ``\\uXXXX``), percent-encoded or inside base64
    (see ``flux_sdk._transport._redact``)."""
    return _redact(text, _values(secrets))


def _values(secrets: Iterable[SecretLike | str]) -> tuple[str, ...]:
    return tuple(secret_value(s) for s in secrets)


def _with_request(response: httpx.Response, secrets: Iterable[SecretLike | str]) -> tuple[str, ...]:
    """``secrets``, plus the credentials the request carried (so a provider that passes
    none is still covered)."""
    values = _values(secrets)
    try:
        request = response.request
    except RuntimeError:  # a response built by hand, without its request
        return values
    return values + secrets_of(request)


def _error_message(body: bytes) -> str | None:
    """The human message in a JSON error body, whatever common shape it takes."""
    from pydantic_core import from_json

    try:
        data = from_json(body[:65_536], allow_partial=False)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in ("error", "message", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return str(value["message"])
    errors = data.get("errors")
    if isinstance(errors, list):
        messages = [
            str(e.get("message")) if isinstance(e, dict) and e.get("message") else str(e)
            for e in errors
        ]
        if messages:
            return "; ".join(messages)
    return None


def raise_for_status(
    response: httpx.Response,
    *,
    provider: str,
    secrets: Iterable[SecretLike | str] = (),
    key_env: str | None = None,
) -> None:
    """Raise the right `ProviderError` subclass unless ``response`` is a 2xx.

    The message quotes the provider's own error text when its body has one. For a 401
    or 403 it also says where the key came from: ``key_env`` names the environment
    variable a provider reads its key from.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    secrets = _with_request(response, secrets)
    body = response.content
    rid = request_id(response.headers, secrets)
    if 300 <= status < 400:
        where = redact(str(response.headers.get("location", "elsewhere")), secrets)[:200]
        message = (
            f"{provider} answered HTTP {status}, a redirect to {where}; flux_sdk never "
            "follows redirects, so your API key is not sent to another address. "
            "Check the base URL."
        )
        raise error_for_status(status, message, provider=provider, request_id=rid)
    detail = _error_message(body)
    if detail is None:
        detail = _describe_body(response, secrets)
    message = f"{provider} answered HTTP {status}: {redact(detail, secrets)[:_EXCERPT_CHARS]}"
    if rid:
        message += f" (request id {rid})"
    if status in (401, 403):
        where = f"the {key_env} environment variable" if key_env else "your provider settings"
        message += (
            f"; the API key was refused: check the key in {where} (or the api_key=... "
            "you passed) and that it has access to this model"
        )
    raise error_for_status(
        status,
        message,
        provider=provider,
        body=excerpt(body, secrets),
        request_id=rid,
        retry_after=retry_after(response.headers),
    )


def _describe_body(response: httpx.Response, secrets: Iterable[SecretLike | str]) -> str:
    """A short description of a body that has no JSON error message."""
    body = response.content
    if not body:
        return "an empty body"
    media = redact(media_type(response), secrets)[:100] or "untyped"
    if media.startswith("text/") and "html" not in media:
        first_line = excerpt(body, secrets, limit=300).strip().splitlines()
        if first_line:
            return first_line[0]
    return f"a {media} body of {len(body)} bytes"


def _advice(response: httpx.Response, rid: str | None) -> str:
    """The request id, and what an unexpected body most likely means."""
    text = f" (request id {rid})" if rid else ""
    if "html" in media_type(response):
        text += (
            "; an HTML page comes from a proxy, a CDN or a login page, not the model: "
            "it is retried, and if it persists, check the base URL"
        )
    return text


def image_from_body(
    response: httpx.Response,
    *,
    provider: str,
    request: GenerateRequest,
    secrets: Iterable[SecretLike | str] = (),
) -> GeneratedImage:
    """The response body as an image, or an `InvalidResponseError` saying what came instead."""
    body = response.content
    secrets = _with_request(response, secrets)
    rid = request_id(response.headers, secrets)
    if sniff_media_type(body) is None:
        raise InvalidResponseError(
            f"{provider} answered HTTP {response.status_code} with "
            f"{_describe_body(response, secrets)} where an image was expected: "
            f"{excerpt(body, secrets, limit=80)!r}{_advice(response, rid)}",
            provider=provider,
            status_code=response.status_code,
            request_id=rid,
        )
    return GeneratedImage.from_data(body, provider=provider, request=request, request_id=rid)


def sniffed_image(
    response: httpx.Response,
    *,
    provider: str,
    request: GenerateRequest,
    secrets: Iterable[SecretLike | str] = (),
) -> GeneratedImage | None:
    """The body as an image when its bytes are one, whatever ``Content-Type`` says;
    None when they are not.

    A gateway that labels image bytes ``application/json`` (or drops the header) would
    otherwise fail as invalid JSON. Call it after the status check, before parsing.
    """
    body = response.content
    if sniff_media_type(body) is None:
        return None
    rid = request_id(response.headers, _with_request(response, secrets))
    return GeneratedImage.from_data(body, provider=provider, request=request, request_id=rid)


def optional(schema: core_schema.CoreSchema) -> core_schema.TypedDictField:
    """A JSON field that may be missing or null."""
    return core_schema.typed_dict_field(core_schema.nullable_schema(schema), required=False)


def json_shape(fields: dict[str, core_schema.TypedDictField]) -> SchemaValidator:
    """A validator for a JSON object with these fields (others are ignored).

    A plain pydantic-core validator: the same Rust JSON parser as a model, without the
    cost of building a model class at import time.
    """
    return SchemaValidator(core_schema.typed_dict_schema(fields))


def parse_json(
    shape: SchemaValidator,
    response: httpx.Response,
    *,
    provider: str,
    secrets: Iterable[SecretLike | str] = (),
    body: bytes | None = None,
) -> dict[str, Any]:
    """The response body (or ``body``, read from it) checked against ``shape``, or an
    `InvalidResponseError`."""
    secrets = _with_request(response, secrets)
    try:
        data: dict[str, Any] = shape.validate_json(response.content if body is None else body)
    except ValidationError as exc:
        invalid = exc.errors()[0]["type"] == "json_invalid"
        rid = request_id(response.headers, secrets)
        media = media_type(response) or "no content type"
        raise InvalidResponseError(
            f"{provider} sent {'invalid JSON' if invalid else 'JSON of an unexpected shape'} "
            f"with HTTP {response.status_code} ({media}): "
            f"{excerpt(response.content, secrets, limit=200)!r}{_advice(response, rid)}",
            provider=provider,
            status_code=response.status_code,
            request_id=rid,
            # Cut-off JSON is a fault on the way; well-formed JSON of another shape is
            # what the host sends every time, and a retry would pay for it again.
            retryable=invalid,
        ) from None
    return data


def media_type(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
