"""The image the safety tests serve and save, one value so both modules check the same bytes."""

from __future__ import annotations

from ._images import image_bytes

PNG = image_bytes(color=(0, 90, 200))
