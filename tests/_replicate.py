"""Shared by the Replicate tests: its URLs, the key, and canned prediction answers."""

from __future__ import annotations

from typing import Any

KEY = "r8_SeCrEt.replicate.5e4d3c2b1a"
BASE = "https://api.replicate.com"
CREATE = f"{BASE}/v1/models/black-forest-labs/flux-schnell/predictions"
GET = f"{BASE}/v1/predictions/p1"
CANCEL = f"{GET}/cancel"


def prediction(status: str, **more: Any) -> dict[str, Any]:
    return {"id": "p1", "status": status, "urls": {"get": GET, "cancel": CANCEL}, **more}
