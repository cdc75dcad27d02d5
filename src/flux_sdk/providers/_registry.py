"""Providers by name: one registry for `flux_sdk.provider(...)` and the CLI.

The built-in hosts are listed here by import path, so naming one imports only its own
module. A third-party package adds its provider through the ``flux_sdk.providers``
entry point group; its name then works everywhere a built-in one does::

    [project.entry-points."flux_sdk.providers"]
    myhost = "myhost_flux:MyHost"

An entry point (or a built-in) names a factory: a provider class or any callable that
takes the provider's keyword options and returns a provider.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from flux_sdk._base._errors import ConfigError

from ._base import FlowProvider, Provider

__all__ = ["BUILT_IN", "ENTRY_POINT_GROUP", "provider", "provider_names", "register_provider"]

ENTRY_POINT_GROUP = "flux_sdk.providers"

Factory = Callable[..., Any]

# Each built-in host: its name, and the class that makes it (also what
# `flux_sdk.providers` loads lazily by class name).
BUILT_IN: dict[str, str] = {
    "dataoorts": "flux_sdk.providers._dataoorts:Dataoorts",
    "baseten": "flux_sdk.providers._baseten:Baseten",
    "together": "flux_sdk.providers._together:Together",
    "openai": "flux_sdk.providers._openai_images:OpenAIImages",
    "emulator": "flux_sdk.providers._emulator:Emulator",
    "replicate": "flux_sdk.providers._replicate:Replicate",
    "cloudflare": "flux_sdk.providers._cloudflare:CloudflareWorkersAI",
    "fal": "flux_sdk.providers._fal:Fal",
    "huggingface": "flux_sdk.providers._huggingface:HuggingFace",
}
_registered: dict[str, Factory | str] = {}


def register_provider(name: str, factory: Factory | str) -> None:
    """Make ``name`` mean ``factory`` (a callable, or ``"module:attribute"``) in this
    process, as an entry point would; a later registration of the same name wins."""
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower():
        raise ConfigError(f"a provider name is a lower-case word (got {name!r})")
    _registered[name] = factory


def provider_names() -> list[str]:
    """Every name `provider` accepts: built-in, registered and installed, sorted."""
    return sorted({*BUILT_IN, *_entry_points(), *_registered})


def provider(name: str, /, **options: Any) -> Provider | FlowProvider:
    """The provider called ``name``, made with ``options``.

    ``flux_sdk.provider("dataoorts")`` is ``Dataoorts()``; options go to its constructor
    (``provider("baseten", model_id="abc123")``). An unknown name or an option the
    provider does not take is a `ConfigError` that lists what would work.
    """
    factory = _factory(name)
    try:
        made = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"the {name} provider does not take these options: {exc}") from None
    if not isinstance(made, (Provider, FlowProvider)):
        raise ConfigError(f"the {name} provider's factory returned {made!r}, not a provider")
    return made


def _factory(name: str) -> Factory:
    target: Factory | str | None = _registered.get(name)
    if target is None:
        target = BUILT_IN.get(name)
    if target is None:
        point = _entry_points().get(name)
        if point is not None:
            try:
                loaded: Factory = point.load()
            except Exception as exc:
                raise ConfigError(
                    f"the {name} provider is installed ({point.value}) but could not be "
                    f"loaded: {type(exc).__name__}: {exc}"
                ) from exc
            return loaded
        raise ConfigError(
            f"no provider called {name!r}; choose from {', '.join(provider_names())}, "
            f"or install a package that adds one to the {ENTRY_POINT_GROUP!r} entry points"
        )
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        made: Factory = getattr(importlib.import_module(module), attribute)
        return made
    return target


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}
