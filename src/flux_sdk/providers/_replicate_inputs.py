"""What Replicate's ``black-forest-labs/flux-schnell`` takes as ``input``, checked here.

From the model's own code (replicate/cog-flux ``predict.py``): no width or height, but
an ``aspect_ratio`` from a fixed table, each at about one megapixel (``megapixels:
"0.25"`` halves each side); 1 to 4 steps; ``go_fast`` on by default, which is not
deterministic even with a seed; and a seed of 0 (like no seed) means a random one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from flux_sdk._base._errors import InvalidRequestError
from flux_sdk._base._models import GenerateRequest

from ._base import ParamRules
from ._fields import request_fields, warn_random_seed

__all__ = ["ASPECT_RATIOS", "RULES", "ReplicateRules", "aspect_ratio", "prediction_input"]

# cog-flux ASPECT_RATIOS: the only sizes the model makes at megapixels "1".
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
MEGAPIXELS = ("1", "0.25")
OUTPUT_FORMATS = ("webp", "jpg", "png")
# Fields the request's own arguments set; width and height are not Replicate inputs.
_RESERVED = {
    "prompt": "prompt",
    "seed": "seed",
    "num_inference_steps": "steps",
    "width": "width",
    "height": "height",
}
_CHOICES = {
    "aspect_ratio": tuple(ASPECT_RATIOS),
    "output_format": OUTPUT_FORMATS,
    "megapixels": MEGAPIXELS,
}


def sizes(megapixels: str) -> dict[tuple[int, int], str]:
    """Each (width, height) the model makes at ``megapixels``, to its aspect ratio."""
    halve = megapixels == "0.25"
    return {
        ((w // 2, h // 2) if halve else (w, h)): ratio for ratio, (w, h) in ASPECT_RATIOS.items()
    }


def aspect_ratio(request: GenerateRequest, provider: str) -> str | None:
    """The aspect ratio whose exact size ``request`` asks for (None: no size given)."""
    if request.width is None and request.height is None:
        return None
    megapixels = _megapixels(request, provider)
    table = sizes(megapixels)
    allowed = ", ".join(f"{w}x{h} ({ratio})" for (w, h), ratio in table.items())
    if request.width is None or request.height is None:
        raise InvalidRequestError(
            f"{provider} needs both width and height, one of: {allowed}",
            provider=provider,
        )
    ratio = table.get((request.width, request.height))
    if ratio is None:
        raise InvalidRequestError(
            f"{provider}'s flux-schnell makes only these sizes (width x height) at "
            f"megapixels {megapixels!r}: {allowed}; got {request.width}x{request.height}",
            provider=provider,
        )
    if "aspect_ratio" in request.extra_body:
        raise InvalidRequestError(
            f"{provider}: give either width and height or extra_body['aspect_ratio'], not both",
            provider=provider,
        )
    return ratio


@dataclass(frozen=True, slots=True)
class ReplicateRules(ParamRules):
    """`ParamRules` plus the model's fixed size table, checked first so that a size it
    cannot make is refused with the list of those it can."""

    def check(self, request: GenerateRequest, provider: str) -> None:
        aspect_ratio(request, provider)
        ParamRules.check(self, request, provider)


# Sides run from 320 (9:21 at 0.25 MP) to 1536; the table above is the real rule.
RULES = ReplicateRules(steps=(1, 4), size=(320, 1536))


def prediction_input(request: GenerateRequest, provider: str) -> dict[str, Any]:
    """The prediction's ``input`` for ``request``: one image, as reproducible as asked."""
    ratio = aspect_ratio(request, provider)
    warn_random_seed(request, "Replicate's flux-schnell")
    fields = {
        "prompt": request.prompt,
        "num_outputs": 1,
        "aspect_ratio": ratio,
        "num_inference_steps": request.steps,
        "seed": request.seed,
        # The fp8 fast path is not deterministic even with a seed; extra_body can turn
        # it back on.
        "go_fast": None if request.seed is None else False,
    }
    return request_fields(
        fields, request, provider=provider, refuse=functools.partial(_refusal, provider)
    )


def _refusal(provider: str, key: str, value: Any) -> str | None:
    if key in _RESERVED:
        return (
            f"{provider}: extra_body[{key!r}] duplicates a field of the request; use the "
            f"{_RESERVED[key]}=... argument instead"
        )
    if key == "num_outputs" and value != 1:
        return (
            f"{provider}: flux_sdk asks for one image per call; leave "
            "extra_body['num_outputs'] out and call generate again for more"
        )
    if key in _CHOICES and value not in _CHOICES[key]:
        return (
            f"{provider} needs extra_body[{key!r}] to be one of "
            f"{', '.join(_CHOICES[key])} (got {value!r})"
        )
    return None


def _megapixels(request: GenerateRequest, provider: str) -> str:
    value = request.extra_body.get("megapixels", "1")
    if value not in MEGAPIXELS:
        raise InvalidRequestError(
            f"{provider} needs extra_body['megapixels'] to be '1' or '0.25' (got {value!r})",
            provider=provider,
        )
    return str(value)
