"""One process's view of a lost Redis under `SharedLimit`: when it was lost, said once
when lost and once when back, however many calls and renewals notice it."""

from __future__ import annotations

import logging

import anyio

from flux_sdk._base._errors import TransportError

from ._redis_client import Unavailable
from ._redis_url import safe_text

__all__ = ["Outage"]

_log = logging.getLogger("flux_sdk")


class Outage:
    """Redis lost since ``since`` (None while it answers)."""

    def __init__(self, name: str, url: str, redis_url: str) -> None:
        self._name, self._url, self._redis_url = name, url, redis_url
        self.since: float | None = None

    def reason(self, exc: Unavailable) -> str:
        """Why, with any password in the URL masked."""
        return f"{type(exc.cause).__name__}: {safe_text(exc.cause, self._redis_url)}"

    def gone(self, exc: Unavailable, provider: str, waited: float) -> TransportError:
        """What a call that waited in vain raises: retryable, and nothing was sent."""
        return TransportError(
            f"{provider}: SharedLimit {self._name!r} lost Redis at {self._url} "
            f"({self.reason(exc)}) and it did not come back within {waited:g} s; the "
            'request was not sent. Check Redis, or pass on_unavailable="local"',
            provider=provider,
            request_sent=False,
        )

    def lost(self, exc: Unavailable, wait: float) -> None:
        if self.since is None:
            self.since = anyio.current_time()
            _log.warning(
                "SharedLimit %r lost Redis at %s (%s); calls wait up to %g s (or their "
                "deadline) for it to come back",
                self._name, self._url, self.reason(exc), wait,
            )  # fmt: skip

    def back(self) -> None:
        if self.since is not None:
            _log.info(
                "SharedLimit %r: Redis at %s answers again after %.1f s",
                self._name, self._url, anyio.current_time() - self.since,
            )  # fmt: skip
            self.since = None
