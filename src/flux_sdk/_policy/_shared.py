"""`SharedLimit`: one provider quota shared by every process that names it, kept in Redis.

Concurrency is a sorted set of leases scored by their expiry: a request takes one
atomically (a Lua script) before it is sent, renews it while it runs and gives it back
when its answer is read (a queue job's, when the job ends), so a process that dies
frees its slots within ``lease_seconds``. A waiter blocks on a Redis list that a
release pushes to (or until the earliest lease expires), not in a polling loop. The
rate is a token bucket in virtual time (GCRA) evaluated in one script that returns how
long to sleep. A 429 seen by any process halves the shared rate and holds every process
back for its Retry-After; successes win the rate back, as `RateLimit` does in one
process.

It runs on asyncio (redis-py's ``redis.asyncio``); see `SharedLimit` for trio.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._loops import running_trio
from flux_sdk._base._options import check_positive_int, check_seconds
from flux_sdk._pipeline._call import Call
from flux_sdk._pipeline._middleware import AttemptNext
from flux_sdk.providers._wire import retry_after

from ._limits import ConcurrencyLimit, RateLimit, run_within
from ._redis_client import Unavailable as _Unavailable
from ._redis_client import open_client, run_script

# _redis_outage, _redis_url and _shared_hold are imported where used: every client
# imports this module for the name SharedLimit, few make one (issue 26).

if TYPE_CHECKING:
    import asyncio

    from redis.asyncio import Redis

__all__ = ["SharedLimit"]

_log = logging.getLogger("flux_sdk")
_MAX_PAUSE = 60.0  # a Retry-After longer than this holds the others back this long only
_RETRY_REDIS = 30.0  # after falling back to local limits, try Redis again this much later
_SOCKET_TIMEOUT = 10.0  # no Redis answer within this: Redis is lost
_BLOCK = 5.0  # the longest a waiter blocks on Redis at once (within the socket timeout)
_WAIT_FOR_REDIS = 60.0  # a call waits this long at most for a lost Redis to come back
_RENEW_RETRY = 0.5  # a renewal that failed is tried again this soon


class SharedLimit:
    """A concurrency and/or rate limit shared through Redis by every process using ``name``.

    Pass it wherever a limit goes: ``FluxClient(max_concurrency=shared)`` (it needs
    ``concurrency=``), ``rate_limit=shared``, or a `Route`'s. One object enforces all
    it was given, so pass it once. Every process must use the same settings for a name.

    - ``concurrency``: requests (a queue host's jobs) in flight across all processes.
      Each holds a lease that expires after ``lease_seconds`` unless renewed; a live
      process renews it while its request (or job) runs, a dead one's slots come back
      when it expires.
    - ``rate`` and ``burst``: requests per second across all processes.
    - ``on_unavailable``: Redis unreachable at first use raises `ConfigError`
      (``"fail"``), or falls back to local limits of the same numbers in each process
      (``"local"``; N processes may then send N times as much), trying Redis again
      every 30 s. Losing Redis later, under ``"fail"``, a request waits for it to come
      back (up to 60 s or its deadline; a log line says so) and then raises a retryable
      `TransportError`. A Redis restarted empty gives no new lease for
      ``lease_seconds / 3 + 1`` s while every process puts back the leases it holds,
      so the restart lets no more than ``concurrency`` in flight.

    asyncio only: redis-py's client is asyncio's, and no maintained Redis client for
    trio was found (redtrio and redio were last released in 2022), so on trio the first
    request raises `ConfigError`. Install with ``pip install 'flux-sdk[redis]'``.
    """

    def __init__(
        self,
        redis_url: str,
        name: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: int = 1,
        lease_seconds: float = 30.0,
        on_unavailable: Literal["fail", "local"] = "fail",
        min_rate: float | None = None,
    ) -> None:
        from ._redis_outage import Outage
        from ._redis_url import check_shared, safe_url

        check_shared(redis_url, name, concurrency, rate, on_unavailable)
        self.name = name
        self.url = safe_url(redis_url)
        self._redis_url = redis_url
        self.concurrency = (
            None
            if concurrency is None
            else check_positive_int(concurrency, ConfigError, "concurrency")
        )
        self.lease_seconds = check_seconds(lease_seconds, ConfigError, "lease_seconds")
        self.on_unavailable = on_unavailable
        # The same checks (and messages) as the local limits, which are also the fallback.
        self._local_rate = None if rate is None else RateLimit(rate, burst=burst, min_rate=min_rate)
        self._local_concurrency = None if concurrency is None else ConcurrencyLimit(concurrency)
        self.rate = None if self._local_rate is None else self._local_rate.rate
        self.burst = check_positive_int(burst, ConfigError, "SharedLimit burst")
        self.min_rate = None if self._local_rate is None else self._local_rate.min_rate
        self.current_rate = self.rate  # as last read from Redis
        self.in_flight = 0  # this process's requests holding a lease or a slot
        tag = "{flux_sdk:" + name + "}"  # one hash slot, so a cluster runs the scripts too
        parts = ("leases", "freed", "slot", "rate", "epoch", "released")
        self._keys = {k: f"{tag}:{k}" for k in parts}
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:"
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, Any] = {}
        self._local_until = -math.inf  # fallen back to local limits until this time
        self._lock: asyncio.Lock | None = None
        self._gate = None if concurrency is None else anyio.Semaphore(concurrency)
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._held: set[str] = set()  # this process's leases, re-registered after a blip
        self._known = False  # this process has seen this limit's keys in Redis
        self._outage = Outage(name, self.url, redis_url)

    @property
    def limit(self) -> int:
        """The shared concurrency (what a batch sizes itself by)."""
        if self.concurrency is None:
            raise ConfigError(
                f"SharedLimit {self.name!r} has no concurrency=; pass it as rate_limit=, "
                "or give it concurrency= to use it as max_concurrency="
            )
        return self.concurrency

    @property
    def ceiling(self) -> int:
        """The most a batch may run at once through it: its concurrency."""
        return self.limit

    def __repr__(self) -> str:
        parts = [f"{self.url!r}", f"{self.name!r}"]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency}")
        if self.rate is not None:
            parts.append(f"rate={self.rate:g}, current_rate={self.current_rate:.3g}")
        return f"SharedLimit({', '.join(parts)})"

    async def aclose(self) -> None:
        """Close this process's connections to Redis (``async with SharedLimit(...)``
        does it on exit); a later request opens new ones."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def __aenter__(self) -> SharedLimit:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __call__(self, call: Call, call_next: AttemptNext) -> httpx.Response:
        from ._shared_hold import gated, holding, shared_held_step

        if holding(call, self) or holding(call, self._local_concurrency):  # a held job's
            return await shared_held_step(self, call, call_next)  # poll: the rate only
        client = await self._connect()
        if client is None:
            return await run_within(self._local_concurrency, self._local_rate, call, call_next)
        if self._gate is None:
            return await self._shared(client, call, call_next)
        # A process never holds more than `concurrency` leases, so no more of its
        # requests than that wait in Redis (each holds a connection while it waits).
        async with gated(call, self, self._gate):
            return await self._shared(client, call, call_next)

    async def _shared(self, client: Redis, call: Call, call_next: AttemptNext) -> httpx.Response:
        # The lease id is chosen before the acquire script runs, so a call cancelled
        # while the script is in flight (or while it waits for a rate slot) can give
        # back the lease it may hold: completed-or-undone, never leaked for a lease.
        from ._shared_hold import keep, renewed

        lease = None if self.concurrency is None else self._prefix + uuid.uuid4().hex
        try:
            await self._take(client, lease)
        except _Unavailable as exc:  # nothing was sent yet
            if lease is not None:
                await self._release(lease)
            return await self._lost(exc, call, call_next)
        except BaseException:  # cancelled: the script may have taken the lease
            if lease is not None:
                await self._release(lease)
            raise
        end = renewed(self, lease)  # counted in flight, renewed until `end` is awaited
        try:
            response = await call_next(call)
        except BaseException as exc:  # a submit whose answer was lost may still run there
            if lease is None or not keep(call, self, exc, end):
                await end(False)
            raise
        if lease is None or not keep(call, self, response, end):  # a job keeps its lease
            await end(False)
        await self._quietly(self._learn(response))
        return response

    # --- Redis -----------------------------------------------------------------------

    async def _connect(self) -> Redis | None:
        """This loop's Redis client, or None while running on local limits."""
        if running_trio():
            raise ConfigError(
                f"SharedLimit {self.name!r} runs on asyncio only (trio has no "
                "maintained Redis client); run this client under asyncio, or use "
                "ConcurrencyLimit/RateLimit"
            )
        if anyio.current_time() < self._local_until:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._lock is None or self._lock_loop is not loop:  # a Lock belongs to one loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # the first requests, all at once, make one client
            if self._client is not None and self._loop is loop:
                return self._client
            return await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Redis | None:
        try:
            client, self._scripts = await open_client(self._redis_url, _SOCKET_TIMEOUT)
        except _Unavailable as exc:
            message = (
                f"SharedLimit {self.name!r} cannot reach Redis at {self.url} "
                f"({self._outage.reason(exc)})"
            )
            if self.on_unavailable == "local":
                _log.warning("%s; using local limits in this process for now", message)
                self._local_until = anyio.current_time() + _RETRY_REDIS
                return None
            raise ConfigError(
                f"{message}; start Redis there, fix the URL, or pass "
                'on_unavailable="local" to fall back to limits in each process'
            ) from None
        self._client, self._loop = client, loop
        return client

    async def _eval(self, name: str, keys: list[str], args: list[Any]) -> Any:
        answer = await run_script(self._scripts[name], keys, args)
        self._outage.back()
        return answer

    async def _lease_script(self, name: str, args: list[Any]) -> Any:
        """``acquire`` or ``renew``, told what they need to see that Redis restarted
        empty and hold new leases off while live processes put theirs back."""
        recover_us = round((self.lease_seconds / 3 + 2 * _RENEW_RETRY) * 1e6)
        keys = [self._keys[k] for k in ("leases", "epoch", "released")]
        answer = await self._eval(name, keys, [*args, int(self._known), recover_us])
        self._known = True
        return answer

    async def _acquire(self, client: Redis, lease: str) -> None:
        """Take ``lease``, waiting for a release or for the earliest lease to expire."""
        import redis

        lease_us = round(self.lease_seconds * 1e6)
        while True:
            wait_us = await self._lease_script("acquire", [self.concurrency, lease_us, lease])
            if wait_us == 0:
                return
            # Woken by a release, when the earliest lease expires (a dead process's) or a
            # restarted Redis's wait for the held leases ends, or within the socket timeout.
            timeout = max(0.001, min(int(wait_us) / 1e6, self.lease_seconds, _BLOCK))
            try:
                await client.blpop([self._keys["freed"]], timeout=timeout)
            except (redis.RedisError, OSError) as exc:
                raise _Unavailable(exc) from exc

    async def _take(self, client: Redis, lease: str | None) -> None:
        """Take the lease and the rate slot. Redis lost under ``"fail"``: wait for it to
        come back (a blip must fail no call), bounded by the call's deadline and
        `_WAIT_FOR_REDIS`, then re-register this process's leases before taking more."""
        since, held = None, False
        while True:
            try:
                if lease is not None and not held:
                    await self._acquire(client, lease)
                    held = True
                    self._held.add(lease)
                if self.rate is not None:
                    await self._wait_for_slot()
                return
            except _Unavailable as exc:
                now = anyio.current_time()
                since = now if since is None else since
                if self.on_unavailable == "local":
                    raise
                self._outage.lost(exc, _WAIT_FOR_REDIS)
                if now - since >= _WAIT_FOR_REDIS:
                    raise
                await anyio.sleep(min(1.0, 0.05 * 2 ** min(int(now - since), 5)))
                await self._quietly(self._reregister())

    async def _reregister(self) -> None:
        """Put this process's held leases back (a Redis restarted empty forgot them)."""
        lease_us = round(self.lease_seconds * 1e6)
        for lease in list(self._held):
            await self._lease_script("renew", [lease_us, lease])

    async def _release(self, lease: str) -> None:
        self._held.discard(lease)
        keys = [self._keys[k] for k in ("leases", "freed", "released")]
        lease_us = round(self.lease_seconds * 1e6)
        await self._quietly(self._eval("release", keys, [lease, self.concurrency, lease_us]))

    async def _renew(self, lease: str) -> None:
        """Renew ``lease`` every third of its life, and soon after a failure: a Redis
        restarted empty has it back before it gives new leases (`_lease_script`)."""
        import asyncio

        lease_us, every = round(self.lease_seconds * 1e6), self.lease_seconds / 3
        pause = every
        while True:
            await asyncio.sleep(pause)
            try:  # not shielded: cancelling ends it
                await self._lease_script("renew", [lease_us, lease])
                pause = every
            except _Unavailable as exc:
                if self.on_unavailable == "fail":
                    self._outage.lost(exc, _WAIT_FOR_REDIS)
                pause = min(every, _RENEW_RETRY)

    async def _wait_for_slot(self) -> None:
        assert self.rate is not None
        wait_us, interval_us, current = await self._eval(
            "reserve", [self._keys["slot"], self._keys["rate"]], [self.rate, self.burst]
        )
        self.current_rate = float(current)
        if wait_us > 0:
            try:
                await anyio.sleep(int(wait_us) / 1e6)
            except BaseException:  # cancelled before its slot: give the slot back
                await self._quietly(self._eval("give_back", [self._keys["slot"]], [interval_us]))
                raise

    async def _learn(self, response: httpx.Response) -> None:
        """A 429 lowers the shared rate for everyone; a success wins some of it back."""
        if self.rate is None:
            return
        if response.status_code == 429:
            pause = min(retry_after(response.headers) or 0.0, _MAX_PAUSE)
            current = await self._eval(
                "cut",
                [self._keys["slot"], self._keys["rate"]],
                [self.rate, self.min_rate, round(pause * 1e6)],
            )
            self.current_rate = float(current)
        elif (
            response.is_success and self.current_rate is not None and self.current_rate < self.rate
        ):
            current = await self._eval("win", [self._keys["rate"]], [self.rate])
            self.current_rate = float(current)

    async def _quietly(self, work: Any) -> None:
        """Best effort, even while cancelled: a lease not given back expires anyway."""
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(2),
            contextlib.suppress(_Unavailable),
        ):
            await work

    # --- without Redis ---------------------------------------------------------------

    async def _lost(self, exc: _Unavailable, call: Call, call_next: AttemptNext) -> httpx.Response:
        if self.on_unavailable == "local":
            if anyio.current_time() >= self._local_until:  # said once, not by each call
                _log.warning(
                    "SharedLimit %r lost Redis at %s (%s); using local limits for %g s",
                    self.name, self.url, self._outage.reason(exc), _RETRY_REDIS,
                )  # fmt: skip
                self._local_until = anyio.current_time() + _RETRY_REDIS
                self._client = None
            return await run_within(self._local_concurrency, self._local_rate, call, call_next)
        raise self._outage.gone(exc, call.provider_name, _WAIT_FOR_REDIS) from None
