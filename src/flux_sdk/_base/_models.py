"""What goes in (`GenerateRequest`) and what comes out (`GeneratedImage`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    ValidationError,
    field_validator,
)

from ._errors import InvalidRequestError, InvalidResponseError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["GenerateRequest", "GeneratedImage", "sniff_media_type"]

# Limits every provider shares; a provider's own `ParamRules` narrow them.
MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**63 - 1
MAX_STEPS = 1_000
MAX_SIDE = 8_192

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


class GenerateRequest(BaseModel):
    """One image to generate, checked before anything is sent.

    ``extra_body`` holds provider-specific fields (Baseten's ``prompt2``, say) that are
    sent unchanged; the provider refuses one that duplicates a field above. Invalid
    values raise `InvalidRequestError` (a `ValueError`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    prompt: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_PROMPT_CHARS)]
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] | None = None
    steps: Annotated[StrictInt, Field(ge=1, le=MAX_STEPS)] | None = None
    width: Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)] | None = None
    height: Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)] | None = None
    extra_body: dict[str, JsonValue] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidRequestError(_describe(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"GenerateRequest is frozen; use request.replace({name}=...) for a changed copy"
        )

    def replace(self, **changes: Any) -> GenerateRequest:
        """A copy with some fields changed, validated like a new request."""
        return GenerateRequest(**{**self.model_dump(), **changes})

    @field_validator("prompt")
    @classmethod
    def _prompt_is_sendable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is blank")
        if "\x00" in value:
            raise ValueError("the prompt contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates cannot be sent as UTF-8 JSON.
            raise ValueError("the prompt contains text that is not valid Unicode") from None
        return value

    @field_validator("extra_body")
    @classmethod
    def _extra_is_json(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for key, item in value.items():
            if not key:
                raise ValueError("extra_body has an empty key")
            _check_finite(item, key)
        return value


def _check_finite(value: JsonValue, where: str) -> None:
    # JSON has no NaN or Infinity; httpx and most servers refuse them.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"extra_body[{where!r}] is {value}, which JSON cannot carry")
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item, where)


def _describe(exc: ValidationError) -> str:
    """A one-line message a person can act on, without echoing huge inputs."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "request"
        message = error["msg"].removeprefix("Value error, ")
        given = repr(error.get("input"))
        if len(given) > 60:
            given = given[:57] + "..."
        if error["type"] in ("missing", "extra_forbidden"):
            parts.append(f"{field}: {message}")
        else:
            parts.append(f"{field}: {message} (got {given})")
    return "invalid request: " + "; ".join(parts)


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


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class GeneratedImage:
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
