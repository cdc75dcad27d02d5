"""Which provider a command talks to, and the client it talks through.

``--provider`` names an entry of the provider registry (built-in, or installed through
the ``flux_sdk.providers`` entry points), so a third-party provider works here as soon
as its package is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Literal, cast

from flux_sdk import (
    DEFAULT_TIMEOUT,
    ConfigError,
    FlowProvider,
    FluxClient,
    GenerateRequest,
    InvalidRequestError,
    Provider,
    provider,
)

from ._console import note

__all__ = ["Chosen", "choose_provider", "error_line", "explain_fallback", "open_client"]

_FALLBACK = (
    "no API key is set, so the bundled emulator was used; set DATAOORTS_API_KEY (or "
    "BASETEN_API_KEY and BASETEN_MODEL_ID) to use a real provider, or pass --provider"
)
# The command's options that are passed to a provider's factory, when given.
_OPTIONS = {"base_url": "--base-url", "model_id": "--model-id"}


Routing = Literal["failover", "balanced", "cheapest"]


@dataclass(frozen=True, slots=True)
class Chosen:
    """A provider (or several, routed), and whether ``--provider auto`` fell back to the
    emulator."""

    provider: Provider | FlowProvider | list[Provider | FlowProvider]
    fallback: bool = False
    routing: Routing = "failover"

    def check(self, request: GenerateRequest) -> None:
        """`InvalidRequestError` unless the provider (or one of several) takes it."""
        providers = self.provider if isinstance(self.provider, list) else [self.provider]
        reasons = []
        for one in providers:
            try:
                one.rules.check(request, one.name)
            except InvalidRequestError as exc:
                reasons.append(exc.message)
            else:
                return
        if len(reasons) == 1:
            raise InvalidRequestError(reasons[0])
        raise InvalidRequestError("no provider accepts this request: " + "; ".join(reasons))


# What --provider auto picks, in this order: the first host whose key is set.
_AUTO = (
    ("DATAOORTS_API_KEY", "dataoorts"),
    ("BASETEN_API_KEY", "baseten"),
    ("TOGETHER_API_KEY", "together"),
    ("FAL_KEY", "fal"),
    ("REPLICATE_API_TOKEN", "replicate"),
    ("CLOUDFLARE_API_TOKEN", "cloudflare"),
)


def choose_provider(args: argparse.Namespace) -> Chosen:
    """The provider ``--provider`` names; ``auto`` picks the first with a key set.

    Raises `ConfigError` (a missing key, a bad base URL, an option the provider does
    not take) before anything is sent.
    """
    if "," in args.provider:
        return _several(args)
    name = args.provider
    fallback = False
    if name == "auto":
        name = next((host for variable, host in _AUTO if os.environ.get(variable)), "emulator")
        if name == "emulator":
            note("flux-sdk: no API key in the environment; using the emulator")
            fallback = True
    options = {key: getattr(args, key) for key in _OPTIONS if getattr(args, key) is not None}
    try:
        return Chosen(provider(name, **options), fallback)
    except ConfigError:
        refused = [flag for key, flag in _OPTIONS.items() if key in options]
        if refused and not _takes(name, options):
            raise ConfigError(
                f"--provider {name} does not take {' or '.join(refused)}; leave "
                f"{'it' if len(refused) == 1 else 'them'} out"
            ) from None
        raise


def _several(args: argparse.Namespace) -> Chosen:
    """Several providers, routed: each is made from its own environment variables."""
    given = [flag for key, flag in _OPTIONS.items() if getattr(args, key) is not None]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} name one provider's settings; with several providers "
            "set each one's environment variables instead (DATAOORTS_BASE_URL, ...)"
        )
    made = [provider(name) for name in args.provider.split(",")]
    return Chosen(made, routing=cast(Routing, getattr(args, "routing", "failover")))


def _takes(name: str, options: dict[str, Any]) -> bool:
    """Whether the factory called ``name`` accepts these keyword options (True when that
    cannot be told, so that the registry's own error is shown)."""
    from flux_sdk.providers._registry import _factory

    try:
        signature = inspect.signature(_factory(name))
    except (TypeError, ValueError, ConfigError):
        return True
    try:
        signature.bind_partial(**options)
    except TypeError:
        return False
    return True


def explain_fallback(chosen: Chosen) -> None:
    """After a list of problems: say why the emulator answered, if it was not asked for."""
    if chosen.fallback:
        note(f"flux-sdk: {_FALLBACK}")


def error_line(exc: BaseException, chosen: Chosen | None) -> str:
    """The one line a failed command prints: the error, and why the emulator answered."""
    line = f"flux-sdk: error: {exc}"
    if chosen is not None and chosen.fallback:
        line += f" ({_FALLBACK})"
    return line


async def open_client(
    args: argparse.Namespace, chosen: Chosen, stack: contextlib.AsyncExitStack, **options: Any
) -> FluxClient:
    """A client for ``chosen``, closed with ``stack``.

    An in-process provider (the emulator) carries its own transport, which the client
    sends through: no socket is opened.
    """
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    client = FluxClient(chosen.provider, timeout=timeout, routing=chosen.routing, **options)
    return await stack.enter_async_context(client)
