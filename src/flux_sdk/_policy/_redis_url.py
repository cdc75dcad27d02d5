"""Redis URLs shown without their secrets, in every form redis-py reads them."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from flux_sdk._base._errors import ConfigError

__all__ = ["check_shared", "safe_text", "safe_url"]

_SECRET_PARAMS = frozenset({"password", "username"})


def safe_url(url: object) -> str:
    """The URL without its user name or password in any form redis-py reads (userinfo,
    ``password=``/``username=`` query parameters), for messages and reprs."""
    try:
        parts = urlsplit(str(url))
        query = parse_qsl(parts.query, keep_blank_values=True)
    except Exception:  # not a URL at all: show its kind only
        return f"<{type(url).__name__}>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    if any(key.lower() in _SECRET_PARAMS for key, _ in query):
        shown = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in query]
        parts = parts._replace(query=urlencode(shown, safe="*"))
    return urlunsplit(parts._replace(netloc=netloc))


def url_secrets(url: str) -> list[str]:
    """Every user name and password in ``url``, as written and as decoded."""
    try:
        parts = urlsplit(url)
        found = [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS]
        raw = [v for k, _, v in (p.partition("=") for p in parts.query.split("&"))
               if k.lower() in _SECRET_PARAMS]  # fmt: skip
    except Exception:
        return []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    for piece in userinfo.split(":"):
        found += [piece, unquote(piece)]
    return sorted({x for x in found + raw if x}, key=len, reverse=True)


def safe_text(exc: BaseException, url: str) -> str:
    text = str(exc)
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def check_shared(
    redis_url: object, name: object, concurrency: object, rate: object, on_unavailable: object
) -> None:
    """`SharedLimit`'s settings that are not numbers, checked before anything connects
    (the numbers are checked by the local limits, which share their messages)."""
    if not isinstance(redis_url, str) or not redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            "SharedLimit needs a Redis URL such as 'redis://localhost:6379/0' "
            f"(got {safe_url(redis_url)!r})"
        )
    if not isinstance(name, str) or not name:
        raise ConfigError(f"SharedLimit needs a non-empty name (got {name!r})")
    if concurrency is None and rate is None:
        raise ConfigError(f"SharedLimit {name!r} needs concurrency=, rate=, or both")
    if on_unavailable not in ("fail", "local"):
        raise ConfigError(f'on_unavailable must be "fail" or "local" (got {on_unavailable!r})')
