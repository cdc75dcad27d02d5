"""What goes in (`GenerateRequest`) and what comes out (`GeneratedImage`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import InvalidResponseError
from ._frozen import ByValue
from ._request import MAX_PROMPT_CHARS, MAX_SEED, GenerateRequest, JsonValue

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "GenerateRequest",
    "GeneratedImage",
    "JsonValue",
    "sniff_media_type",
]

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def sniff_media_type(data: bytes) -> str | None:
    """The image type named by the magic bytes, or None if ``data`` is not an image.

    Only the first bytes are read: `GeneratedImage.from_data` also checks that the
    image is whole.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)  # ByValue's eq
class GeneratedImage(ByValue):
    """An image a provider returned, with how it was made.

    ``media_type`` comes from the bytes themselves, never from a header or a file name.
    ``elapsed`` is the whole call in seconds, retries included; ``attempts`` counts them.
    ``path`` is where a batch saved it (`FluxClient.generate_many` with ``save_dir``).
    ``hosts`` names the provider of each HTTP request the call sent, in order: with
    several providers, which hosts were tried before ``provider`` made it.
    ``cost`` is what the call may have cost at most, in USD (0 from a cache; None when
    the host has no known price).
    """

    data: bytes
    media_type: str
    provider: str
    request: GenerateRequest
    seed: int | None = None
    elapsed: float = 0.0
    attempts: int = 1
    request_id: str | None = None
    path: Path | None = None
    hosts: tuple[str, ...] = ()
    cost: float | None = None

    @classmethod
    def from_data(
        cls,
        data: bytes,
        *,
        provider: str,
        request: GenerateRequest,
        seed: int | None = None,
        request_id: str | None = None,
    ) -> GeneratedImage:
        """Wrap image bytes, or raise `InvalidResponseError` if they are not a whole image.

        Both are retryable: bytes of another kind, and an image cut off part way (see
        ``_imagecheck``), which a body without ``Content-Length`` can be.
        """
        from ._imagecheck import image_problem

        media_type = sniff_media_type(data)
        if media_type is None:
            # The bytes are not quoted: they could echo a credential back.
            raise InvalidResponseError(
                f"{provider} returned {len(data)} bytes that are not a PNG, JPEG or WebP image",
                provider=provider,
                request_id=request_id,
            )
        problem = image_problem(data, media_type)
        if problem is not None:
            raise InvalidResponseError(
                f"{provider} returned an incomplete {_EXTENSIONS[media_type][1:].upper()} "
                f"image of {len(data)} bytes ({problem}); the body was probably cut off "
                "in transit, so it is retried",
                provider=provider,
                request_id=request_id,
                retryable=True,
            )
        return cls(
            data=data,
            media_type=media_type,
            provider=provider,
            request=request,
            seed=request.seed if seed is None else seed,
            request_id=request_id,
        )

    @property
    def extension(self) -> str:
        """The file extension for this image's type, with its dot: ``.png``."""
        return _EXTENSIONS[self.media_type]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image atomically and return where it went.

        A path without an image extension gets the right one (``"cat"`` becomes
        ``cat.webp`` for a WebP image). The bytes go to a temporary file in the same
        directory first and are renamed into place, so a crash never leaves half an image
        under the final name. Missing parent directories are created (and removed again
        if the write fails). Any failure is a `SaveError` that says what to do.
        """
        from ._errors import SaveError
        from ._files import write_atomically

        target = Path(path)
        if not target.name:
            raise SaveError(f"could not save the image to {str(path)!r}: give a file name")
        if target.suffix.lower() not in _IMAGE_SUFFIXES:
            target = target.with_name(target.name + self.extension)
        return write_atomically(self.data, target)

    async def asave(self, path: str | os.PathLike[str]) -> Path:
        """`save` in a worker thread, so an event loop never waits on the disk."""
        from anyio import to_thread

        return await to_thread.run_sync(self.save, path)

    def to_pil(self) -> PILImage:
        """The image as a Pillow ``Image`` (needs ``pip install 'flux-sdk[pil]'``)."""
        try:
            from PIL import Image
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "GeneratedImage.to_pil() needs Pillow: pip install 'flux-sdk[pil]'"
            ) from None
        import io

        return Image.open(io.BytesIO(self.data))

    def base64(self) -> str:
        """The image bytes as standard base64 text."""
        import pybase64

        return pybase64.b64encode(self.data).decode("ascii")

    def __repr__(self) -> str:
        return (
            f"GeneratedImage(media_type={self.media_type!r}, bytes={len(self.data)}, "
            f"provider={self.provider!r}, seed={self.seed!r}, attempts={self.attempts}, "
            f"elapsed={self.elapsed:.3f}, request_id={self.request_id!r}"
            + ("" if self.path is None else f", path={str(self.path)!r}")
            + ")"
        )
