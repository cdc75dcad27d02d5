"""Providers: the built-in hosts, the protocol a third-party one implements, and the
pure wire helpers it can reuse.

Everything here is also importable from `flux_sdk` itself except the wire helpers,
which live in this namespace: ``from flux_sdk.providers import raise_for_status``.
"""

from ._base import Accepted, Flow, FlowProvider, ParamRules, Provider, Step, StepKind, Wait
from ._baseten import Baseten
from ._cloudflare import CloudflareWorkersAI
from ._dataoorts import Dataoorts
from ._emulator import Emulator
from ._fal import Fal
from ._huggingface import HuggingFace
from ._openai_images import OpenAIImages
from ._registry import ENTRY_POINT_GROUP, provider, provider_names, register_provider
from ._replicate import Replicate
from ._together import Together
from ._wire import (
    check_base_url,
    decode_base64,
    excerpt,
    image_from_body,
    is_loopback,
    json_shape,
    media_type,
    optional,
    parse_json,
    raise_for_status,
    redact,
    request_id,
    resolve_api_key,
    retry_after,
    sniffed_image,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Accepted",
    "Baseten",
    "CloudflareWorkersAI",
    "Dataoorts",
    "Emulator",
    "Fal",
    "Flow",
    "FlowProvider",
    "HuggingFace",
    "OpenAIImages",
    "ParamRules",
    "Provider",
    "Replicate",
    "Step",
    "StepKind",
    "Together",
    "Wait",
    "check_base_url",
    "decode_base64",
    "excerpt",
    "image_from_body",
    "is_loopback",
    "json_shape",
    "media_type",
    "optional",
    "parse_json",
    "provider",
    "provider_names",
    "raise_for_status",
    "redact",
    "register_provider",
    "request_id",
    "resolve_api_key",
    "retry_after",
    "sniffed_image",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("flux_sdk.providers._"):
        _obj.__module__ = "flux_sdk.providers"
del _name, _obj
