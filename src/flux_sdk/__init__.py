"""flux_sdk: FLUX.1 [schnell] images from Python, awaited or by the thousand.

from flux_sdk import FluxClient, Dataoorts

async with FluxClient(Dataoorts()) as client:
    image = await client.generate("a tiny astronaut hatching from an egg", seed=7)
    image.save("astronaut")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._base._errors import (
    AuthenticationError,
    BadRequestError,
    Billed,
    BudgetExceeded,
    ConfigError,
    FluxError,
    FluxWarning,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    QuotaExceeded,
    RateLimitError,
    RequestTimeout,
    SaveError,
    ServerError,
    TransportError,
)
from ._base._logging import configure_from_env as _configure_from_env
from ._version import __version__

if TYPE_CHECKING:
    from ._base._events import EventHook
    from ._base._flux_event import FluxEvent
    from ._base._models import GeneratedImage, GenerateRequest, sniff_media_type
    from ._batching._batch import BatchIterator, BatchProgress, SavedImage
    from ._batching._shards import iter_results
    from ._client import DEFAULT_TIMEOUT, FluxClient
    from ._pipeline._call import Call
    from ._pipeline._middleware import (
        AttemptMiddleware,
        AttemptNext,
        CallNext,
        Deadline,
        Middleware,
    )
    from ._policy._adaptive import AdaptiveLimit
    from ._policy._breaker import CircuitBreaker
    from ._policy._limits import ConcurrencyLimit, RateLimit
    from ._policy._retry import Retry, RetryBudget
    from ._policy._shared import SharedLimit
    from ._routing._router import RoutingError
    from ._routing._routes import Hedge, Route
    from ._routing._state import RouteState
    from ._spend._cache import DiskCache
    from ._spend._hostspend import HostSpend
    from ._spend._ledger import Budget, Ledger
    from ._spend._pricing import LIST_PRICES, Price
    from ._transport._aiohttp import AiohttpTransport
    from ._transport._logfilter import set_log_redaction
    from .providers import (
        Accepted,
        Baseten,
        CloudflareWorkersAI,
        Dataoorts,
        Emulator,
        Ended,
        Fal,
        Flow,
        FlowProvider,
        HuggingFace,
        OpenAIImages,
        ParamRules,
        Provider,
        Replicate,
        Step,
        Together,
        Wait,
        decode_base64,
        provider,
        provider_names,
        raise_for_status,
        register_provider,
    )

# Everything else, by the private module that defines it: imported on first use, so
# `import flux_sdk` costs little more than its dependencies and a program pays only for
# what it touches (a batch, routing, shared limits, the other hosts).
_LAZY = {
    "DEFAULT_TIMEOUT": "._client",
    "LIST_PRICES": "._spend._pricing",
    "Accepted": ".providers",
    "AdaptiveLimit": "._policy._adaptive",
    "AiohttpTransport": "._transport._aiohttp",
    "AttemptMiddleware": "._pipeline._middleware",
    "AttemptNext": "._pipeline._middleware",
    "Baseten": ".providers",
    "BatchIterator": "._batching._batch",
    "BatchProgress": "._batching._batch",
    "Budget": "._spend._ledger",
    "Call": "._pipeline._call",
    "CallNext": "._pipeline._middleware",
    "CircuitBreaker": "._policy._breaker",
    "CloudflareWorkersAI": ".providers",
    "ConcurrencyLimit": "._policy._limits",
    "Dataoorts": ".providers",
    "Deadline": "._pipeline._middleware",
    "DiskCache": "._spend._cache",
    "Emulator": ".providers",
    "Ended": ".providers",
    "EventHook": "._base._events",
    "Fal": ".providers",
    "Flow": ".providers",
    "FlowProvider": ".providers",
    "FluxClient": "._client",
    "FluxEvent": "._base._flux_event",
    "GenerateRequest": "._base._models",
    "GeneratedImage": "._base._models",
    "Hedge": "._routing._routes",
    "HostSpend": "._spend._hostspend",
    "HuggingFace": ".providers",
    "Ledger": "._spend._ledger",
    "Middleware": "._pipeline._middleware",
    "OpenAIImages": ".providers",
    "ParamRules": ".providers",
    "Price": "._spend._pricing",
    "Provider": ".providers",
    "RateLimit": "._policy._limits",
    "Replicate": ".providers",
    "Retry": "._policy._retry",
    "RetryBudget": "._policy._retry",
    "Route": "._routing._routes",
    "RouteState": "._routing._state",
    "RoutingError": "._routing._router",
    "SavedImage": "._batching._batch",
    "SharedLimit": "._policy._shared",
    "Step": ".providers",
    "Together": ".providers",
    "Wait": ".providers",
    "decode_base64": ".providers",
    "iter_results": "._batching._shards",
    "provider": ".providers",
    "provider_names": ".providers",
    "raise_for_status": ".providers",
    "register_provider": ".providers",
    "set_log_redaction": "._transport._logfilter",
    "sniff_media_type": "._base._models",
}

__all__ = [
    "DEFAULT_TIMEOUT",
    "LIST_PRICES",
    "Accepted",
    "AdaptiveLimit",
    "AiohttpTransport",
    "AttemptMiddleware",
    "AttemptNext",
    "AuthenticationError",
    "BadRequestError",
    "Baseten",
    "BatchIterator",
    "BatchProgress",
    "Billed",
    "Budget",
    "BudgetExceeded",
    "Call",
    "CallNext",
    "CircuitBreaker",
    "CloudflareWorkersAI",
    "ConcurrencyLimit",
    "ConfigError",
    "Dataoorts",
    "Deadline",
    "DiskCache",
    "Emulator",
    "Ended",
    "EventHook",
    "Fal",
    "Flow",
    "FlowProvider",
    "FluxClient",
    "FluxError",
    "FluxEvent",
    "FluxWarning",
    "GenerateRequest",
    "GeneratedImage",
    "Hedge",
    "HostSpend",
    "HuggingFace",
    "InvalidRequestError",
    "InvalidResponseError",
    "Ledger",
    "Middleware",
    "OpenAIImages",
    "ParamRules",
    "Price",
    "Provider",
    "ProviderError",
    "QuotaExceeded",
    "RateLimit",
    "RateLimitError",
    "Replicate",
    "RequestTimeout",
    "Retry",
    "RetryBudget",
    "Route",
    "RouteState",
    "RoutingError",
    "SaveError",
    "SavedImage",
    "ServerError",
    "SharedLimit",
    "Step",
    "Together",
    "TransportError",
    "Wait",
    "__version__",
    "decode_base64",
    "iter_results",
    "provider",
    "provider_names",
    "raise_for_status",
    "register_provider",
    "set_log_redaction",
    "sniff_media_type",
]


def _public(obj: Any) -> Any:
    """Say ``obj`` lives in flux_sdk, not in the private module that defines it: reprs,
    tracebacks and pickles then name ``flux_sdk.X``."""
    if getattr(obj, "__module__", "").startswith(("flux_sdk._", "flux_sdk.providers")):
        obj.__module__ = "flux_sdk"
    return obj


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flux_sdk' has no attribute {name!r}")
    obj = _public(getattr(importlib.import_module(module, __name__), name))
    globals()[name] = obj
    return obj


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


for _name in __all__:
    if _name not in _LAZY:
        _public(globals()[_name])
del _name

_configure_from_env()  # FLUX_SDK_LOG=debug|info|warning: log lines on stderr
del _configure_from_env
