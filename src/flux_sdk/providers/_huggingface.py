"""Hugging Face Inference Providers: one Hugging Face token, several hosts, one router.

``provider="hf-inference"`` is Hugging Face's own route (see ``_hf_inference``). Any
other provider is reached at ``https://router.huggingface.co/{provider}/...`` in that
host's own format, so this module writes none of those formats: it builds the host's
adapter (`Together`, `Fal`, `Replicate`, `OpenAIImages` for nscale) with the Hugging Face
token as its key and drives its flow, re-addressing each request to the router. Hosts
that answer with follow-up URLs (fal's queue, Replicate's predictions) answer them on
their own API, so their adapter is built on that API (where those URLs are checked) and
each request, follow-ups included, is moved under the router's prefix on the way out,
as huggingface_hub and huggingface.js do. Image downloads go to the host's CDN unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import httpx

from flux_sdk._base._errors import ConfigError, FluxError, ProviderError
from flux_sdk._base._models import GeneratedImage, GenerateRequest
from flux_sdk._base._secret import SecretLike

from ._base import Accepted, Flow, FlowProvider, Provider, Step, single_request_flow
from ._fal import Fal
from ._fields import is_model_path
from ._hf_inference import FLUX_SCHNELL, HFInference, router_advice, router_reset
from ._openai_images import OpenAIImages
from ._replicate import Replicate
from ._together import Together
from ._wire import check_base_url, is_loopback, resolve_api_key

__all__ = ["PROVIDER_MODELS", "HuggingFace"]

ROUTER_URL = "https://router.huggingface.co"
PROVIDERS = ("hf-inference", "together", "fal-ai", "replicate", "nscale")
# Each host's own id for FLUX.1 [schnell]. The Hub maps them at run time
# (`/api/models/{id}?expand[]=inferenceProviderMapping`); these are the ids the hosts
# document, and the ones huggingface.js hard-coded until 2025-02.
PROVIDER_MODELS: dict[str, dict[str, str]] = {
    FLUX_SCHNELL: {
        "together": "black-forest-labs/FLUX.1-schnell",
        "fal-ai": "fal-ai/flux/schnell",
        "replicate": "black-forest-labs/flux-schnell",
        "nscale": "black-forest-labs/FLUX.1-schnell",
    }
}
# The hosts' own APIs, where fal's and Replicate's follow-up URLs point.
_HOST_URLS = {
    ("fal-ai", True): "https://queue.fal.run",
    ("fal-ai", False): "https://fal.run",
    "replicate": "https://api.replicate.com",
}
# Options passed on to the host's adapter, per provider.
_OPTIONS = {
    "hf-inference": frozenset[str](),
    "together": frozenset[str](),
    "fal-ai": frozenset({"queue", "output_format"}),
    "replicate": frozenset({"wait", "poll_interval"}),
    "nscale": frozenset({"rules"}),
}
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class HuggingFace:
    """FLUX.1 [schnell] through Hugging Face's router, on the host ``provider`` names.

    The key falls back to ``HF_TOKEN`` (a Hugging Face token, ``hf_...``, with the
    "Make calls to Inference Providers" permission); billing is by Hugging Face.
    ``provider`` is ``"hf-inference"`` (Hugging Face's own), ``"together"``,
    ``"fal-ai"``, ``"replicate"`` or ``"nscale"``; each host keeps its own parameter rules
    and fields, so ``extra_body`` takes that host's fields. ``model`` is the Hub's model
    id; ``provider_model`` the host's own id for it when it is not FLUX.1 [schnell]
    (whose ids are known, see ``PROVIDER_MODELS``). ``base_url`` replaces the router
    (``https://router.huggingface.co``); on loopback (the emulator) it also stands in
    for fal's and Replicate's own APIs. Other options go to the host's adapter:
    ``queue`` and ``output_format`` for fal, ``wait`` and ``poll_interval`` for
    Replicate, ``rules`` for nscale.
    """

    def __init__(
        self,
        api_key: str | SecretLike | None = None,
        *,
        provider: str = "hf-inference",
        model: str = FLUX_SCHNELL,
        provider_model: str | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        if provider not in PROVIDERS:
            raise ConfigError(
                f"Hugging Face's provider must be one of {', '.join(PROVIDERS)} "
                f"(got {provider!r}); flux_sdk does not speak the others' formats"
            )
        refused = sorted(set(options) - _OPTIONS[provider])
        if refused:
            allowed = ", ".join(sorted(_OPTIONS[provider])) or "none"
            raise ConfigError(
                f"HuggingFace(provider={provider!r}) does not take {', '.join(refused)} "
                f"(options for it: {allowed})"
            )
        if not is_model_path(model, _MODEL):
            raise ConfigError(f"the Hugging Face model must be a Hub id such as {FLUX_SCHNELL!r}")
        self.api_key = resolve_api_key(api_key, "HF_TOKEN", "Hugging Face")
        self.provider = provider
        self.model = model
        self.name = "huggingface" if provider == "hf-inference" else f"huggingface/{provider}"
        self.router = check_base_url(
            base_url or ROUTER_URL, provider="Hugging Face", setting="the Hugging Face router URL"
        )
        # The emulator answers for the router and the hosts on one loopback origin.
        self._local = is_loopback(self.router.host)
        self._prefix = f"{self.router.path.rstrip('/')}/{provider}"
        self._query = b"_subdomain=queue" if options.get("queue", True) else b""
        self.provider_model = None if provider == "hf-inference" else provider_model
        if provider != "hf-inference" and provider_model is None:
            self.provider_model = PROVIDER_MODELS.get(model, {}).get(provider)
            if self.provider_model is None:
                raise ConfigError(
                    f"flux_sdk does not know {provider}'s id for {model}: pass "
                    "provider_model=... (the Hub lists it at https://huggingface.co/api/"
                    f"models/{model}?expand[]=inferenceProviderMapping)"
                )
        self.inner = self._host(options)
        self.rules = self.inner.rules
        self._rebased = provider in ("fal-ai", "replicate")
        self._bearer = f"Bearer {self.api_key.get_secret_value()}"

    def __repr__(self) -> str:
        return (
            f"HuggingFace(provider={self.provider!r}, model={self.model!r}, "
            f"router={str(self.router)!r})"
        )

    def _host(self, options: dict[str, Any]) -> Provider | FlowProvider:
        """The host's own adapter, keyed with the Hugging Face token."""
        key, prefix = self.api_key, self.router.copy_with(path=self._prefix)
        model = self.provider_model or self.model
        if self.provider == "hf-inference":
            return HFInference(key, model=self.model, router=self.router, name=self.name)
        if self.provider == "together":
            return Together(key, model=model, base_url=str(prefix))
        if self.provider == "nscale":
            return OpenAIImages(f"{prefix}/v1", api_key=key, model=model, name="nscale", **options)
        own = str(self.router.copy_with(path="/")) if self._local else None
        if self.provider == "fal-ai":
            host = own or _HOST_URLS[("fal-ai", bool(options.get("queue", True)))]
            return Fal(key, model=model, base_url=host, **options)
        return Replicate(key, model=model, base_url=own or _HOST_URLS["replicate"], **options)

    def generate_flow(self, request: GenerateRequest) -> Flow:
        inner = self.inner
        if isinstance(inner, FlowProvider) and not isinstance(inner, Provider):
            flow = inner.generate_flow(request)
        else:
            flow = single_request_flow(inner, request)
        try:
            reply: Any = None
            while True:
                try:
                    item = flow.send(reply)
                except StopIteration as done:
                    image: GeneratedImage = done.value
                    return dataclasses.replace(image, provider=self.name)
                except FluxError as exc:
                    self._relabel(exc, None)
                    raise
                if isinstance(item, Step):
                    routed = item.request if item.kind == "download" else self._route(item.request)
                    item = Step(routed, self._parse(item.parse), item.kind)
                elif isinstance(item, Accepted) and item.cancel is not None:
                    item = Accepted(item.job_id, self._route(item.cancel))
                reply = yield item
        finally:
            flow.close()

    def _route(self, request: httpx.Request) -> httpx.Request:
        """``request`` sent to the router: under its prefix, with the token as Bearer."""
        if not self._rebased:  # built on the router's prefix already
            return request
        url = request.url
        query = self._query if self.provider == "fal-ai" else url.query
        routed = self.router.copy_with(path=self._prefix + url.path, query=query or None)
        headers = httpx.Headers(request.headers)
        for name in ("host", "content-length"):
            headers.pop(name, None)
        headers["Authorization"] = self._bearer
        return httpx.Request(
            request.method, routed, headers=headers, content=request.content or None
        )

    def _parse(self, parse: Callable[[httpx.Response], Any]) -> Callable[[httpx.Response], Any]:
        def read(response: httpx.Response) -> Any:
            try:
                return parse(response)
            except FluxError as exc:
                self._relabel(exc, response)
                raise

        return read

    def _relabel(self, exc: FluxError, response: httpx.Response | None) -> None:
        """Name this provider in a host adapter's error, with the router's advice."""
        if exc.provider == self.name:
            return
        exc.provider = self.name
        exc.message = f"{self.name}: {exc.message}"
        if isinstance(exc, ProviderError):
            if response is not None and exc.status_code == 429 and exc.retry_after is None:
                exc.retry_after = router_reset(response.headers)
            advice = router_advice(exc.status_code)
            if advice:  # the router's advice replaces the host adapter's generic one
                exc.message = exc.message.split("; the API key was refused", 1)[0] + advice
        exc.args = (exc.message,)
