"""Where ``flux-sdk generate`` saves its image, checked before anything is sent, and a
save that never replaces a file unless ``--force`` says so.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flux_sdk import GeneratedImage, SaveError
from flux_sdk._batching._batch import slug

__all__ = ["IMAGE_SUFFIXES", "save", "target"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_SLUG_CHARS = 48


def target(out: str | None, prompt: str, *, force: bool) -> Path:
    """The path to save to, its extension possibly still to come from the image.

    ``out`` may name a file, or a directory (one that exists, or any path ending in a
    separator), which then gets a name made from the prompt. Raises `SaveError` when a
    parent is a file, or when the file (under any image extension, if ``out`` has
    none) exists and ``force`` is false: better refused now than after paying for it.
    """
    try:
        return _target(out, prompt, force=force)
    except SaveError:
        raise
    except OSError as exc:  # a name too long, say: is_dir() and exists() raise for those
        where = slug(prompt, limit=_SLUG_CHARS) if out is None else out
        raise SaveError(
            f"cannot save to {where!r}: {exc.strerror or exc}", errno=exc.errno
        ) from None


def _target(out: str | None, prompt: str, *, force: bool) -> Path:
    name = slug(prompt, limit=_SLUG_CHARS)
    if out is None:
        path = Path(name)
    elif out.endswith(("/", os.sep)) or Path(out).is_dir():
        path = Path(out) / name
    else:
        path = Path(out)
    _check_parents(path)
    if not force:
        for candidate in _candidates(path):
            if candidate.exists():
                raise _exists(candidate)
    return path


def save(image: GeneratedImage, path: Path, *, force: bool) -> Path:
    """Write ``image`` to ``path`` (plus its extension if it has none) and return it.

    Atomic either way: the bytes go to a temporary file that is then renamed into place
    (``force``) or hard-linked there, which fails if a file has appeared meanwhile.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        path = path.with_name(path.name + image.extension)
    try:
        if force:
            return image.save(path)
        _check_parents(path)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        image.save(temp)
        try:
            _link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except SaveError:
        raise
    except OSError as exc:
        raise SaveError(
            f"could not save the image to {str(path)!r}: {exc.strerror or exc}", errno=exc.errno
        ) from None
    return path


def _link(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise _exists(path) from None
        os.replace(temp, path)


def _candidates(path: Path) -> list[Path]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return [path.with_name(path.name + suffix) for suffix in IMAGE_SUFFIXES]


def _check_parents(path: Path) -> None:
    """Refuse a path under a regular file, naming that file (mkdir would say only
    "File exists")."""
    for parent in path.absolute().parents:
        if parent.is_dir():
            return
        if parent.exists():
            raise SaveError(
                f"cannot save to {str(path)!r}: {str(parent)!r} is a file, not a directory"
            )


def _exists(path: Path) -> SaveError:
    return SaveError(
        f"{str(path)!r} already exists; pass --force to overwrite it, or choose another --out"
    )
