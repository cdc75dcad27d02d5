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
import threading
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
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._secrets: tuple[str, ...] = ()

    def hold(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            for secret in secrets:
                self._counts[secret] = self._counts.get(secret, 0) + 1
            self._secrets = tuple(self._counts)

    def drop(self, secrets: tuple[str, ...]) -> None:
        with self._lock:
            for secret in secrets:
                left = self._counts.get(secret, 0) - 1
                if left > 0:
                    self._counts[secret] = left
                else:
                    self._counts.pop(secret, None)
            self._secrets = tuple(self._counts)

    @property
    def holding(self) -> int:
        """How many distinct secrets it is watching for right now."""
        return len(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
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
