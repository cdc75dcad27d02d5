"""redis-py's asyncio client as `SharedLimit` uses it: opened, pinged and given the Lua
scripts in one step, with Redis's failures told apart from everything else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flux_sdk._base._errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Unavailable", "open_client", "run_script"]

_SCRIPTS = ("acquire", "renew", "release", "reserve", "give_back", "cut", "win")


class Unavailable(Exception):
    """Redis failed (refused, reset, timed out, an error reply); carries why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def open_client(url: str, socket_timeout: float) -> tuple[Redis, dict[str, Any]]:
    """A client that answered a PING, and SharedLimit's scripts registered on it;
    `Unavailable` when Redis cannot be reached (the client is closed again)."""
    try:
        import redis.asyncio
    except ImportError:
        raise ConfigError(
            "SharedLimit needs the redis package: pip install 'flux-sdk[redis]'"
        ) from None
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from . import _shared_scripts as lua  # with the client: no SharedLimit, no Lua loaded

    # One retry, at once and on a new connection, for a pooled connection that died with
    # a restarted Redis; no more. redis-py's default (ten, with backoff, for ~5 s) hid a
    # Redis that was down from SharedLimit, which waits for it itself, and says so.
    client = redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        await client.aclose(close_connection_pool=True)
        raise Unavailable(exc) from None
    scripts = {name: client.register_script(getattr(lua, name.upper())) for name in _SCRIPTS}
    return client, scripts


async def run_script(script: Any, keys: list[str], args: list[Any]) -> Any:
    """One script's answer; `Unavailable` if Redis failed under it."""
    import redis

    try:
        return await script(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        raise Unavailable(exc) from exc
