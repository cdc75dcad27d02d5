"""``FLUX_SDK_LOG``: log lines on stderr for a script, with no logging code in it.

Read once, when flux_sdk is imported (as openai-python reads ``OPENAI_LOG``), so that
the setting also covers what happens before the first client exists. It only ever adds
a handler to a ``flux_sdk`` logger that has none: an application that configured
logging itself keeps its own setup.
"""

from __future__ import annotations

import logging
import os
import sys

from ._errors import warn

__all__ = ["ENV_VAR", "configure_from_env"]

ENV_VAR = "FLUX_SDK_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"


def configure_from_env(
    value: str | None = None, logger: logging.Logger | None = None
) -> logging.Handler | None:
    """Set up ``logger`` (``flux_sdk``) for ``value`` (``$FLUX_SDK_LOG``): ``debug``,
    ``info`` or ``warning``, any case. Returns the handler it added, if any; an unknown
    value is ignored with a `FluxWarning`."""
    if value is None:
        value = os.environ.get(ENV_VAR)
    if not value or not value.strip():
        return None
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        warn(
            f"{ENV_VAR}={value[:40]!r} is not a log level and was ignored; use {', '.join(_LEVELS)}"
        )
        return None
    if logger is None:
        logger = logging.getLogger("flux_sdk")
    logger.setLevel(level)
    if logger.handlers:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    return handler
