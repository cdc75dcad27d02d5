"""Shared by the FluxClient tests: a Dataoorts client, its URL and key, and a good answer."""

from __future__ import annotations

import base64
from typing import Any

from flux_sdk import Dataoorts, FluxClient

from ._images import image_bytes

KEY = "sk-test-4f9a-very-secret"
URL = "https://cloud.dataoorts.com/api/v1"


PNG = image_bytes(color=(10, 200, 30))
OK_JSON = {"result": {"image_base64": base64.b64encode(PNG).decode()}, "success": True}


def _client(**kwargs: Any) -> FluxClient:
    """A Dataoorts client; one attempt per call unless a test asks for retries."""
    return FluxClient(Dataoorts(api_key=KEY), **{"max_retries": 0, **kwargs})
