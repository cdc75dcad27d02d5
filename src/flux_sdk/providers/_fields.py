"""What the built-in hosts' JSON requests share: the request's arguments under each
host's own field names, then ``extra_body``, each extra field first checked by the host;
the checks of a model's name; the three headers of a JSON call.

Private: a third-party provider writes its body as a plain dict (docs/custom-providers.md
shows one); this saves each built-in one from writing the same loop again, while each
keeps its field names, its order on the wire and its own messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flux_sdk._base._errors import ConfigError, InvalidRequestError, warn
from flux_sdk._base._models import GenerateRequest
from flux_sdk._base._secret import SecretStr

__all__ = [
    "Refusal",
    "is_model_path",
    "json_headers",
    "model_name",
    "request_fields",
    "warn_random_seed",
]

# A host's check of one extra field: the message that refuses it, or None to send it.
Refusal = Callable[[str, Any], str | None]


def _send_all(key: str, value: Any) -> str | None:
    return None


def request_fields(
    fields: Mapping[str, object],
    request: GenerateRequest,
    *,
    provider: str,
    refuse: Refusal = _send_all,
) -> dict[str, Any]:
    """The body: ``fields`` in the order given, less those that are None (an argument the
    caller left out is left to the host), then each of ``request.extra_body``'s fields.

    ``refuse(key, value)`` sees each extra field first; a message it returns is raised
    as an `InvalidRequestError` naming ``provider``, before anything is sent. An extra
    field it lets through replaces the field of that name in place.
    """
    body = {name: value for name, value in fields.items() if value is not None}
    for key, value in request.extra_body.items():
        message = refuse(key, value)
        if message is not None:
            raise InvalidRequestError(message, provider=provider)
        body[key] = value
    return body


def warn_random_seed(request: GenerateRequest, model: str) -> None:
    """Warn that ``model`` (a host's own name for it) draws a random seed for seed=0."""
    if request.seed == 0:
        warn(
            f"{model} treats seed=0 as 'pick a random seed', so this image will not be "
            "reproducible; use a seed from 1 up"
        )


def model_name(model: object, provider: str) -> str:
    """``model``, refused unless it is a non-empty string (the host's id for a model)."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"the {provider} model must be a non-empty string")
    return model


def is_model_path(model: object, shape: re.Pattern[str]) -> bool:
    """Whether ``model`` is an id of ``shape`` that stays inside the URL path it is put
    in (no ``..``), since the key is sent to wherever that path leads."""
    return isinstance(model, str) and shape.fullmatch(model) is not None and ".." not in model


def json_headers(
    scheme: str, api_key: SecretStr, *, accept: str = "application/json"
) -> dict[str, str]:
    """A JSON call's headers, in the order they are sent: the key under ``scheme``
    (``Bearer``, ``Api-Key``), then the body's type and what may come back."""
    return {
        "Authorization": f"{scheme} {api_key.get_secret_value()}",
        "Content-Type": "application/json",
        "Accept": accept,
    }
