"""Keeping API keys out of httpx's, httpcore's and aiohttp's own log records.

At DEBUG, httpcore logs every response's status line and headers verbatim, and httpx
logs the reason phrase at INFO, so a server that echoes the key sends it through a
third-party logger into the user's log. flux_sdk therefore adds one `logging.Filter`
to those libraries' loggers when it is imported. The filter knows only the secrets of
requests flux_sdk has in flight right now (taken from their credential headers, held
for the duration of the send and then dropped), and it changes a record only when the
record's text holds one of them: it replaces the message with the redacted text.

Why this is acceptable without asking: it never drops a record, never touches one
without a secret in it, costs nothing unless those loggers are enabled (a disabled
level never builds a record), and holds no secret longer than its request. Turn it
off with ``flux_sdk.set_log_redaction(False)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ._redact import redact

__all__ = ["LOGGERS", "SecretLogFilter", "set_log_redaction", "sending_secrets"]

# The loggers those libraries write to (a filter on "httpcore" would not see the
# records of "httpcore.http11": logger filters do not apply to child loggers).
LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "aiohttp.client",
    "aiohttp.internal",
)


class SecretLogFilter(logging.Filter):
    """Redacts the secrets of requests in flight from any record that holds one."""

    def __init__(self) -> None:
        super().__init__()
        # One entry per request in flight. list.append and list.remove are atomic, so
        # threads each running their own loop need no lock (0.2 us a request, not 5).
        self._held: list[tuple[str, ...]] = []

    def hold(self, secrets: tuple[str, ...]) -> None:
        self._held.append(secrets)

    def drop(self, secrets: tuple[str, ...]) -> None:
        self._held.remove(secrets)

    @property
    def holding(self) -> int:
        """How many requests' secrets it is watching for right now."""
        return len(self._held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._held:
            return True
        secrets = tuple({secret for held in list(self._held) for secret in held})
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is the handler's business
            return True
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


FILTER = SecretLogFilter()
_installed = False


def set_log_redaction(enabled: bool) -> None:
    """Add (True, the default from import) or remove flux_sdk's filter on the loggers of
    httpx, httpcore and aiohttp, which blanks API keys a server echoed into their records."""
    global _installed
    if enabled == _installed:
        return
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if enabled:
            logger.addFilter(FILTER)
        else:
            logger.removeFilter(FILTER)
    _installed = enabled


@contextmanager
def sending_secrets(secrets: tuple[str, ...]) -> Iterator[None]:
    """Watch for ``secrets`` in those loggers while a request is being sent."""
    if not secrets:
        yield
        return
    FILTER.hold(secrets)
    try:
        yield
    finally:
        FILTER.drop(secrets)


set_log_redaction(True)
