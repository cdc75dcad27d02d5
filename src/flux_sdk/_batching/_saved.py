"""What a batch keeps of an image on disk, and the names and keys that find it again.

A file's name from its item's index and prompt, a request's fingerprint, and
`SavedImage`, the record of one image a batch wrote; shared by batch directories and
the readers of a finished one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from flux_sdk._base._models import GeneratedImage, GenerateRequest

__all__ = ["SavedImage", "cost_of", "file_stem", "request_key", "seconds_of", "slug"]


def slug(prompt: str, limit: int = 40) -> str:
    """A short file-name-safe stand-in for a prompt: lower-case ASCII words and hyphens."""
    text = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:limit].rstrip("-")
    return text or "image"


def file_stem(index: int, prompt: str) -> str:
    """The name of item ``index``'s image without its extension: ``000042-a-red-fox``."""
    return f"{index:06d}-{slug(prompt)}"


def request_key(request: GenerateRequest) -> str:
    """A fingerprint of everything that shapes the image, to match a re-run's items."""
    text = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SavedImage:
    """An image a batch wrote to disk and did not keep in memory (``keep_images=False``).

    ``skipped`` is true when the file was already there from an earlier run. ``cost``
    is what making it may have cost at most, in USD (as the manifest recorded it).
    """

    index: int
    path: Path
    sha256: str
    size: int
    media_type: str
    provider: str
    request: GenerateRequest
    seed: int | None = None
    attempts: int = 1
    elapsed: float = 0.0
    request_id: str | None = None
    skipped: bool = False
    cost: float | None = None

    def __repr__(self) -> str:
        return (
            f"SavedImage(index={self.index}, path={str(self.path)!r}, bytes={self.size}, "
            f"media_type={self.media_type!r}, seed={self.seed!r}, attempts={self.attempts}, "
            f"skipped={self.skipped})"
        )

    def read_bytes(self) -> bytes:
        """The image bytes, read back from ``path``."""
        return self.path.read_bytes()

    def load(self) -> GeneratedImage:
        """The image as a `GeneratedImage`, read back from ``path``."""
        return self._image(self.read_bytes())

    def _image(self, data: bytes) -> GeneratedImage:
        return GeneratedImage(
            data=data,
            media_type=self.media_type,
            provider=self.provider,
            request=self.request,
            seed=self.seed,
            elapsed=self.elapsed,
            attempts=self.attempts,
            request_id=self.request_id,
            path=self.path,
            cost=self.cost,
        )


def seconds_of(value: object) -> float:
    """A duration from a manifest line, or 0 for anything that is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0


def cost_of(value: object) -> float | None:
    """A cost from a manifest line, or None for anything that is not one."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
