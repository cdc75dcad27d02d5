"""Connections: one single-connection httpx client per request in flight.

httpcore 1.0's pool walks every connection, and every queued request, each time a
request starts or ends, and when several requests are queued it hands them all the same
idle connection, so all but one go round again. Its cost per request grows with the
pool: 88 us with 1 connection, 835 us with 16, 7.2 ms with 256 (httpcore 1.0, profiled
in 2026-11 with small answers, see docs/benchmarks.md). The concurrency limit already
decides how many requests run at once, so instead of one pool of N connections the
client keeps up to N pools of one, and a request takes a free one for as long as it
runs: each pool then only ever sees its own request.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = ["Connections"]


class Connections:
    """Single-connection clients on a free list, made as concurrency first needs them.

    ``take`` hands out the most recently returned client (its connection is the warmest)
    or makes one; ``give`` puts it back. With ``shared`` (a client the caller passed in)
    every request uses that one client and it is never closed here.
    """

    def __init__(
        self,
        make: Callable[[], httpx.AsyncClient] | None = None,
        *,
        shared: httpx.AsyncClient | None = None,
    ) -> None:
        if (make is None) == (shared is None):
            raise ValueError("pass either make or shared")
        self._make = make
        self.shared = shared
        self.clients: list[httpx.AsyncClient] = [] if shared is None else [shared]
        self._free: list[httpx.AsyncClient] = []

    def take(self) -> httpx.AsyncClient:
        if self.shared is not None:
            return self.shared
        if self._free:
            return self._free.pop()
        assert self._make is not None
        client = self._make()
        self.clients.append(client)
        return client

    def give(self, client: httpx.AsyncClient) -> None:
        if self.shared is None and not client.is_closed:
            self._free.append(client)

    async def aclose(self) -> None:
        """Close the clients made here (a shared one is the caller's to close)."""
        if self.shared is not None:
            return
        for client in self.clients:
            await client.aclose()
