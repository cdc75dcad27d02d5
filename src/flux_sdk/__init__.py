"""flux_sdk: FLUX.1 [schnell] images from Python, awaited or by the thousand.

from flux_sdk import FluxClient, Dataoorts

async with FluxClient(Dataoorts()) as client:
    image = await client.generate("a tiny astronaut hatching from an egg", seed=7)
    image.save("astronaut")
"""

from ._adaptive import AdaptiveLimit
from ._aiohttp import AiohttpTransport
from ._batch import BatchIterator, BatchProgress, SavedImage
from ._breaker import CircuitBreaker
from ._cache import DiskCache
from ._call import Call
from ._client import DEFAULT_TIMEOUT, FluxClient
from ._errors import (
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
    RateLimitError,
    RequestTimeout,
    SaveError,
    ServerError,
    TransportError,
)
from ._events import EventHook, FluxEvent
from ._ledger import Budget, HostSpend, Ledger
from ._limits import ConcurrencyLimit, RateLimit
from ._logfilter import set_log_redaction
from ._logging import configure_from_env as _configure_from_env
from ._middleware import AttemptMiddleware, AttemptNext, CallNext, Deadline, Middleware
from ._models import GeneratedImage, GenerateRequest, sniff_media_type
from ._pricing import LIST_PRICES, Price
from ._retry import Retry, RetryBudget
from ._router import RoutingError
from ._routes import Hedge, Route, RouteState
from ._shared import SharedLimit
from ._version import __version__
from .providers import (
    Accepted,
    Baseten,
    CloudflareWorkersAI,
    Dataoorts,
    Emulator,
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
    "provider",
    "provider_names",
    "raise_for_status",
    "register_provider",
    "set_log_redaction",
    "sniff_media_type",
]

_configure_from_env()  # FLUX_SDK_LOG=debug|info|warning: log lines on stderr
del _configure_from_env

# Public objects say they live in flux_sdk, not in the private module that defines them.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(("flux_sdk._", "flux_sdk.providers")):
        _obj.__module__ = "flux_sdk"
del _name, _obj
