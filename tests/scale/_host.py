"""A host that counts what it sees: the emulator behind a wrapper that notes each
request's arrival and how many are in flight, served on loopback."""

from __future__ import annotations

import threading
import time
from typing import Any

from flux_sdk.emulator import DEFAULT_API_KEY, Capacity, EmulatorApp

PATH = "/together"
KEY = DEFAULT_API_KEY


class Counting:
    """ASGI wrapper: arrival times of image requests, in flight now and at most."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

        async def noted(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self.statuses[message["status"]] = self.statuses.get(message["status"], 0) + 1
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            with self._lock:
                self.in_flight -= 1

    def worst_window(self, seconds: float = 1.0) -> int:
        """The most arrivals in any half-open window of ``seconds``."""
        times = sorted(self.arrivals)
        worst, start = 0, 0
        for end, arrived in enumerate(times):
            while times[start] <= arrived - seconds:
                start += 1
            worst = max(worst, end - start + 1)
        return worst


def counting_emulator(capacity: Capacity | None = None) -> Counting:
    return Counting(EmulatorApp(default_size=32, capacity=capacity))
