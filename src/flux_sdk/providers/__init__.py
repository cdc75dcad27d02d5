"""Providers: the built-in hosts, the protocol a third-party one implements, and the
pure wire helpers it can reuse.

Everything here is also importable from `flux_sdk` itself except the wire helpers,
which live in this namespace: ``from flux_sdk.providers import raise_for_status``.
A host's module is imported the first time its class is asked for, so a program that
talks to one host does not pay for loading the other nine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _registry, _wire
from ._base import Accepted, Ended, Flow, FlowProvider, ParamRules, Provider, Step, StepKind, Wait
from ._base64 import decode_base64
from ._registry import ENTRY_POINT_GROUP, provider, provider_names, register_provider
from ._wire import *  # noqa: F403 (the wire helpers, listed once: in _wire.__all__)

if TYPE_CHECKING:
    from ._baseten import Baseten
    from ._cloudflare import CloudflareWorkersAI
    from ._dataoorts import Dataoorts
    from ._emulator import Emulator
    from ._fal import Fal
    from ._huggingface import HuggingFace
    from ._openai_images import OpenAIImages
    from ._replicate import Replicate
    from ._together import Together

# The hosts' classes, by the module that defines each (the registry's table): loaded on
# first use.
_HOSTS = {cls: module for module, _, cls in (t.partition(":") for t in _registry.BUILT_IN.values())}

__all__ = [
    "ENTRY_POINT_GROUP",
    "Accepted",
    "Baseten",
    "CloudflareWorkersAI",
    "Dataoorts",
    "Emulator",
    "Ended",
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
    "decode_base64",
    "provider",
    "provider_names",
    "register_provider",
]
__all__ += _wire.__all__


# What `flux_sdk` does not re-export says it lives here; the rest says `flux_sdk`.
_ONLY_HERE = {"StepKind", *_wire.__all__}


def _public(name: str, obj: Any) -> Any:
    """Say ``obj`` lives in a public namespace, not in the private module that defines it
    (reprs, tracebacks and pickles then name ``flux_sdk.Dataoorts``)."""
    if getattr(obj, "__module__", "").startswith("flux_sdk.providers._"):
        obj.__module__ = __name__ if name in _ONLY_HERE else "flux_sdk"
    return obj


def __getattr__(name: str) -> Any:
    module = _HOSTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    host = _public(name, getattr(importlib.import_module(module), name))
    globals()[name] = host
    return host


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


for _name in __all__:
    if _name not in _HOSTS:
        _public(_name, globals()[_name])
del _name
