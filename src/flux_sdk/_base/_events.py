"""The hook that receives a call's events (`EventHook`), and flux_sdk's logger."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._flux_event import FluxEvent

__all__ = ["EventHook", "logger"]

logger = logging.getLogger("flux_sdk")


class EventHook(Protocol):
    """A callable that receives every `FluxEvent`; keep it quick, it runs inline.

    Any ``def hook(event): ...`` (or ``events.append``) is one. A protocol rather than
    ``Callable[[FluxEvent], None]`` so that the client's signature names it without
    loading `FluxEvent`, which only a client with a hook needs.
    """

    def __call__(self, event: FluxEvent, /) -> None: ...
