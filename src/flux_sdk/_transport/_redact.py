"""Blanking out API keys in text we did not write, in every form a key comes back in.

A server can echo the key it was sent anywhere: a status line, a header, a JSON error
body, a malformed chunk that a library then quotes in its exception. So every message
flux_sdk builds from outside text goes through `redact`, and it matches a key

- literally;
- JSON-escaped, any character as ``\\uXXXX`` (either case), ``/`` as ``\\/``, and ``"``
  and ``\\`` as ``\\"`` and ``\\\\``, in any mix;
- percent-encoded, any character as ``%XX`` (either case), in any mix with the above;
- inside base64 of any text that holds it (``Bearer key``, ``user:key`` as in Basic
  auth, the key alone), standard or URL-safe alphabet: base64 maps 3 bytes to 4
  characters, so for each of the 3 offsets the key can start at, the characters that
  depend on the key alone are fixed, and those are blanked.

Other encodings (HTML entities, double escaping, a hash) are not matched; a server
that sends those is not echoing but transforming. Secrets of a request come from its
own headers (`request_secrets`), so this also works for third-party providers.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable

import httpx

__all__ = ["MASK", "redact", "redact_exception", "request_secrets", "secrets_of"]

MASK = "**********"
# Headers whose value is a credential, beyond Authorization: anything named like one.
_CREDENTIAL_NAME = re.compile(rb"auth|key|token|secret|password|credential|signature", re.I)
_MIN_SECRET = 4  # shorter tokens would blank ordinary words


_SECRETS = "flux_sdk.secrets"


def secrets_of(request: httpx.Request) -> tuple[str, ...]:
    """`request_secrets` of a request, worked out once and kept in its extensions (a
    retry sends the same request again; its headers do not change)."""
    cached: tuple[str, ...] | None = request.extensions.get(_SECRETS)
    if cached is None:
        cached = request.extensions[_SECRETS] = request_secrets(request.headers)
    return cached


def request_secrets(headers: httpx.Headers) -> tuple[str, ...]:
    """The credentials a request carries: each credential header's value, and the part
    after the scheme (``Bearer``, ``Api-Key``, ``Basic``...), as a server may echo either."""
    found: list[str] = []
    for name, raw in headers.raw:  # bytes, undecoded: ~1 us for a request's headers
        if _CREDENTIAL_NAME.search(name) is None:
            continue
        value = raw.decode("latin-1").strip()
        scheme, _, token = value.partition(" ")
        for secret in (value, token.strip()):
            if len(secret) >= _MIN_SECRET and secret not in found:
                found.append(secret)
        if scheme.lower() == "basic" and token:
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode("latin-1")
            except ValueError:
                continue
            for part in (decoded, decoded.partition(":")[2]):
                if len(part) >= _MIN_SECRET and part not in found:
                    found.append(part)
    return tuple(found)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret, in any form above, blanked out."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:
            text = _pattern(secret).sub(MASK, text)
    return text


def redact_exception(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    """Blank secrets out of ``exc`` and the exceptions it was raised from, in place.

    Library exceptions quote what the server sent (a status line, a bad chunk), and a
    traceback prints them all. Their ``args`` and string attributes are redacted; an
    exception whose ``str`` or ``repr`` still shows a secret after that (one holding
    the request's headers, say) is cut out of the chain with everything behind it.
    Returns False when ``exc`` itself is such an exception: do not chain it.
    """
    if not secrets:
        return True
    seen: set[int] = set()
    previous: BaseException | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _scrub(current, secrets)
        if not _is_clean(current, secrets):
            if previous is None:
                return False
            previous.__cause__ = previous.__context__ = None
            previous.__suppress_context__ = True
            return True
        previous, current = current, current.__cause__ or current.__context__
    return True


def _scrub(exc: BaseException, secrets: tuple[str, ...]) -> None:
    try:
        exc.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in exc.args)
        for name, value in list(vars(exc).items()):
            if isinstance(value, str):
                setattr(exc, name, redact(value, secrets))
    except (AttributeError, TypeError):  # read-only attributes: judged by _is_clean
        pass


def _is_clean(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception:  # a broken __str__ cannot show a secret
            text = ""
        if redact(text, secrets) != text:
            return False
    return True


@functools.lru_cache(maxsize=128)
def _pattern(secret: str) -> re.Pattern[str]:
    forms = [_escaped(secret)]
    raw = secret.encode("utf-8")
    for offset in range(3):
        core = _base64_core(raw, offset)
        if len(core) >= _MIN_SECRET:
            forms.append(re.escape(core))
            urlsafe = core.replace("+", "-").replace("/", "_")
            if urlsafe != core:
                forms.append(re.escape(urlsafe))
    return re.compile("|".join(forms))


def _escaped(secret: str) -> str:
    """A regex for ``secret`` with each character literal, JSON-escaped or %-encoded."""
    parts = []
    for char in secret:
        code = ord(char)
        options = [re.escape(char)]
        if code < 0x10000:
            options.append(r"\\u" + "".join(f"[{c.lower()}{c.upper()}]" for c in f"{code:04x}"))
        if code < 0x80:
            options.append("%" + "".join(f"[{c.lower()}{c.upper()}]" for c in f"{code:02x}"))
        if char in '/"\\':
            options.append(re.escape("\\" + char))
        parts.append("(?:" + "|".join(options) + ")")
    return "".join(parts)


def _base64_core(raw: bytes, offset: int) -> str:
    """The base64 characters fixed by ``raw`` alone when it starts ``offset`` bytes into
    a 3-byte group of some longer text."""
    encoded = base64.b64encode(b"\x00" * offset + raw).decode("ascii")
    # Characters touching the made-up prefix or the unknown suffix vary with them.
    first = (offset * 8 + 5) // 6
    last = ((offset + len(raw)) * 8) // 6
    return encoded[first:last]
