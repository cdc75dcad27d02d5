"""Which provider a command talks to, and the client it talks through."""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from typing import Any

from flux_sdk import (
    DEFAULT_TIMEOUT,
    Baseten,
    Dataoorts,
    FlowProvider,
    FluxClient,
    OpenAIImages,
    Provider,
    Together,
)

from ._console import note

__all__ = ["Chosen", "choose_provider", "open_client"]


@dataclass(frozen=True, slots=True)
class Chosen:
    """A provider, and whether it is answered by the emulator in this process."""

    provider: Provider | FlowProvider
    in_process: bool = False


def choose_provider(args: argparse.Namespace) -> Chosen:
    """The provider ``--provider`` names; ``auto`` picks the first with a key set.

    Raises `ConfigError` (a missing key, a bad base URL) before anything is sent.
    """
    name = args.provider
    if name == "auto":
        if os.environ.get("DATAOORTS_API_KEY"):
            name = "dataoorts"
        elif os.environ.get("BASETEN_API_KEY"):
            name = "baseten"
        else:
            note("flux-sdk: no API key in the environment; using the emulator")
            name = "emulator"
    if name == "dataoorts":
        return Chosen(Dataoorts(base_url=args.base_url))
    if name == "baseten":
        return Chosen(Baseten(model_id=args.model_id, base_url=args.base_url))
    if name == "together":
        return Chosen(Together(base_url=args.base_url))
    if name == "openai":
        return Chosen(OpenAIImages(args.base_url))
    from flux_sdk.emulator import DEFAULT_API_KEY

    # The real provider, answered in process by the emulator speaking Dataoorts.
    return Chosen(Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1"), True)


async def open_client(
    args: argparse.Namespace, chosen: Chosen, stack: contextlib.AsyncExitStack, **options: Any
) -> FluxClient:
    """A client for ``chosen``, closed with ``stack``."""
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if chosen.in_process:
        import httpx

        from flux_sdk.emulator import EmulatorApp

        # The whole stack in process: an ASGI transport in place of a socket.
        transport = httpx.ASGITransport(app=EmulatorApp())
        options["http_client"] = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport)
        )
    client = FluxClient(chosen.provider, timeout=timeout, **options)
    return await stack.enter_async_context(client)
