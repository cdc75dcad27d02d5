"""flux_sdk: FLUX.1 [schnell] images from Python, awaited or by the thousand.

from flux_sdk import FluxClient, Dataoorts

async with FluxClient(Dataoorts()) as client:
    image = await client.generate("a tiny astronaut hatching from an egg", seed=7)
    image.save("astronaut")
"""

from ._aiohttp import AiohttpTransport
from ._baseten import Baseten
from ._batch import BatchIterator, BatchProgress, SavedImage
from ._client import DEFAULT_TIMEOUT, FluxClient
from ._dataoorts import Dataoorts
from ._errors import (
    AuthenticationError,
    BadRequestError,
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
from ._middleware import CallNext, ConcurrencyLimit, Deadline, Middleware, RateLimit
from ._models import GeneratedImage, GenerateRequest, sniff_media_type
from ._provider import FlowProvider, ParamRules, Provider, decode_base64, raise_for_status
from ._retry import Retry, RetryBudget
from ._version import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "AiohttpTransport",
    "AuthenticationError",
    "BadRequestError",
    "Baseten",
    "BatchIterator",
    "BatchProgress",
    "CallNext",
    "ConcurrencyLimit",
    "ConfigError",
    "Dataoorts",
    "Deadline",
    "EventHook",
    "FlowProvider",
    "FluxClient",
    "FluxError",
    "FluxEvent",
    "FluxWarning",
    "GenerateRequest",
    "GeneratedImage",
    "InvalidRequestError",
    "InvalidResponseError",
    "Middleware",
    "ParamRules",
    "Provider",
    "ProviderError",
    "RateLimit",
    "RateLimitError",
    "RequestTimeout",
    "Retry",
    "RetryBudget",
    "SaveError",
    "SavedImage",
    "ServerError",
    "TransportError",
    "__version__",
    "decode_base64",
    "raise_for_status",
    "sniff_media_type",
]

# Public objects say they live in flux_sdk, not in the private module that defines them.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("flux_sdk._"):
        _obj.__module__ = "flux_sdk"
del _name, _obj
