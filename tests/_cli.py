"""Running the flux-sdk command in a subprocess, with this tree's sources and no real keys."""

from __future__ import annotations

import os
import sys
from typing import Any

from flux_sdk.emulator import DEFAULT_API_KEY

FLUX_SDK = [sys.executable, "-m", "flux_sdk"]


def environment(**extra: str) -> dict[str, str]:
    """The suite's environment without a developer's keys, unbuffered, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATAOORTS_", "BASETEN_"))}
    return {**clean, "PYTHONUNBUFFERED": "1", **extra}


def dataoorts(url: str) -> dict[str, Any]:
    """Options and environment that point a command at an emulator served on ``url``."""
    return {
        "args": ["--provider", "dataoorts", "--base-url", f"{url}/api/v1"],
        "env": environment(DATAOORTS_API_KEY=DEFAULT_API_KEY),
    }
