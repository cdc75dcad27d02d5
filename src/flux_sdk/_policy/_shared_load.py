"""How many calls every process has at one `SharedLimit`'s host, read from Redis.

A router balancing over routes limited by `SharedLimit`s must see the other processes'
calls too, or each process balances blind. Each process publishes its own count of
calls at the host (running or waiting for a lease) in one Redis hash and reads the
others' in the same script, at most every `_EVERY` seconds (never a round trip per
call). A process that stops publishing is dropped after `_STALE` seconds. Any Redis
failure only leaves the last figure (then none): balancing falls back to this
process's own counts, and no call fails for it.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._shared import SharedLimit

__all__ = ["SharedLoad"]

_log = logging.getLogger("flux_sdk")
_EVERY = 0.05  # seconds between reads (per route and process)
_STALE = 2.0  # a process that published nothing for this long has no calls counted
_TIMEOUT = 1.0  # the longest one read may hold up the call that makes it
_BACK_OFF = 1.0  # after a failed read, the next one is tried this much later
_FORGET = 10.0  # without a good read for this long, the others' calls count as none

# KEYS: counts (hash: process -> calls), seen (sorted set: process -> last time), leases.
# ARGV: this process, its calls, stale_us. Returns {the others' calls, leases held}.
PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cut = string.format('%.0f', now - tonumber(ARGV[3]))
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cut)) do
  redis.call('HDEL', KEYS[1], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cut)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], 60000)
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then others = others + tonumber(all[i + 1]) end
end
local leases = redis.call('ZCOUNT', KEYS[3], '(' .. string.format('%.0f', now), '+inf')
return {others, leases}
"""


class SharedLoad:
    """The other processes' calls at ``limit``'s host, as last read (0 until read)."""

    def __init__(self, limit: SharedLimit) -> None:
        self.limit = limit
        self.others = 0  # the other processes' calls at this host, as last read
        self._me = f"{limit._prefix}{uuid.uuid4().hex[:8]}"
        tag = "{flux_sdk:" + limit.name + "}"
        self._keys = [f"{tag}:calls", f"{tag}:seen", limit._keys["leases"]]
        self._next = -math.inf  # the earliest time of the next read
        self._read_at = -math.inf  # the time of the last good read
        self._reading = False
        self._script: tuple[Any, Any] | None = None  # (client, its registered script)

    def stale(self) -> bool:
        return not self._reading and anyio.current_time() >= self._next

    async def refresh(self, mine: int) -> None:
        """Publish ``mine`` (this process's calls there) and read the others'. On a
        failure the last figure stands (for `_FORGET` s at most), tried again later."""
        if not self.stale():
            return
        self._reading = True
        self._next = anyio.current_time() + _EVERY
        try:
            # Connecting is the limit's own first step (the call makes it next anyway),
            # so it is not timed here; one read is.
            client = await self.limit._connect()
            if client is None:  # the limit runs on local limits for now
                self.others = 0
                return
            with anyio.move_on_after(_TIMEOUT) as scope:
                others, leases = await self._read(client, mine)
            if scope.cancelled_caught:
                raise TimeoutError(f"no answer within {_TIMEOUT:g} s")
            # Processes that publish nothing (a client that does not route) still hold
            # leases: count those beyond this process's own.
            self.others = max(others, leases - self.limit.in_flight)
            self._read_at = anyio.current_time()
        except Exception as exc:  # balancing must never fail a call
            _log.debug("SharedLimit %r: others' calls not read (%r)", self.limit.name, exc)
            now = anyio.current_time()
            if now - self._read_at >= _FORGET:
                self.others = 0
            self._next = now + _BACK_OFF
        finally:
            self._reading = False

    async def _read(self, client: Any, mine: int) -> tuple[int, int]:
        if self._script is None or self._script[0] is not client:
            self._script = (client, client.register_script(PUBLISH))
        args: list[str | int] = [self._me, mine, round(_STALE * 1e6)]
        answer = await self._script[1](keys=self._keys, args=args)
        return int(answer[0]), int(answer[1])
