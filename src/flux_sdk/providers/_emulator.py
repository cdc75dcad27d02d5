"""`Emulator`: a real host's wire format, answered in this process by the emulator.

Nothing is faked on the SDK's side: the request is the one `Dataoorts` or `Baseten`
builds, the answer is parsed by that provider's own code, and the client sends it
through its whole chain (retries, limits, size cap). Only the socket is missing: the
provider carries an ``httpx.ASGITransport`` over an `EmulatorApp`, which `FluxClient`
sends through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._models import GeneratedImage, GenerateRequest

from ._base import ParamRules
from ._baseten import Baseten
from ._dataoorts import Dataoorts

if TYPE_CHECKING:
    from flux_sdk.emulator import EmulatorApp

__all__ = ["Emulator"]

EmulatedHost = Literal["dataoorts", "baseten"]
# Never contacted (the transport answers); a loopback name so plain http is allowed.
_BASE_URLS = {"dataoorts": "http://127.0.0.1/api/v1", "baseten": "http://127.0.0.1"}


class Emulator:
    """FLUX.1 [schnell] with no key and no network: ``FluxClient(Emulator())``.

    ``host`` picks the wire format and its rules: ``"dataoorts"`` (the default: no width
    or height, 1 to 8 steps) or ``"baseten"`` (sizes in multiples of 16). ``app`` is the
    `EmulatorApp` that answers (a new one by default); pass your own to inject faults
    with a `FaultPlan` or to count requests. Errors and images name this provider
    ``"emulator"``. The images are stand-ins that show the request, not a model's.
    """

    name = "emulator"

    def __init__(self, *, host: EmulatedHost = "dataoorts", app: EmulatorApp | None = None) -> None:
        from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

        if host not in _BASE_URLS:
            raise ConfigError(
                f"the emulator speaks {' or '.join(map(repr, _BASE_URLS))}, not {host!r}"
            )
        if app is None:
            app = EmulatorApp()
        self.host = host
        self.app = app
        key = getattr(app, "api_key", DEFAULT_API_KEY)
        wire: Dataoorts | Baseten
        if host == "dataoorts":
            wire = Dataoorts(key, base_url=_BASE_URLS[host])
        else:
            wire = Baseten(key, base_url=_BASE_URLS[host])
        # The host's own code, under the name the user chose: its errors and images say
        # "emulator", and no error points at a real provider's key variable.
        wire.name = self.name
        wire.key_env = None
        self._wire = wire
        self.rules: ParamRules = wire.rules
        self.transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)

    def __repr__(self) -> str:
        return f"Emulator(host={self.host!r})"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        return self._wire.build_request(request)

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        return self._wire.parse_response(request, response)
