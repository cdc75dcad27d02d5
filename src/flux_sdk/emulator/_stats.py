"""The emulator's counters by host, served as JSON on ``GET /_emulator/stats``.

A benchmark compares them with what its clients think happened: ``billed`` against the
ledgers, ``repeated`` (a billed request whose body was billed before) against "no job
is ever paid for twice", ``refused`` and ``faults`` against the 429s and retries seen.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flux_sdk.emulator._capacity import Load

__all__ = ["STATS_PATH", "HostStats", "stats_json"]

STATS_PATH = "/_emulator/stats"


class HostStats:
    """One host's counters: ``requests`` reached it, ``served`` were answered by the
    host itself (not a fault's canned answer, not a 429 for capacity), ``billed`` were
    charged (a sync host's 2xx generation, a queue host's accepted job), ``repeated``
    billed a body already billed, ``faults`` counts the faults injected by kind."""

    def __init__(self) -> None:
        self.requests = 0
        self.served = 0
        self.billed = 0
        self.repeated = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self._bodies: set[bytes] = set()
        self._lock = threading.Lock()

    def bill(self, body: bytes) -> None:
        """Count one charged request; a body charged before counts as ``repeated``."""
        digest = hashlib.blake2b(body, digest_size=16).digest()
        with self._lock:
            self.billed += 1
            if digest in self._bodies:
                self.repeated += 1
            self._bodies.add(digest)

    def as_dict(self, load: Load | None) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "billed": self.billed,
            "repeated": self.repeated,
            "refused": 0 if load is None else load.refused,
            "faults": dict(sorted(self.faults.items())),
            "replicas": None if load is None else load.capacity.replicas,
            "max_in_service": None if load is None else load.max_in_service,
        }


def stats_json(stats: Mapping[str, HostStats], load: Mapping[str, Load]) -> bytes:
    """The stats endpoint's body: ``{"hosts": {name: counters}}`` for hosts asked of."""
    hosts = {name: s.as_dict(load.get(name)) for name, s in stats.items() if s.requests}
    return json.dumps({"hosts": hosts}, sort_keys=True).encode()
