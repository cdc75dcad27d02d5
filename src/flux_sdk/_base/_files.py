"""Writing a file whole or not at all, and a one-line `SaveError` saying why it failed.

Shared by `GeneratedImage.save` and batch directories, so both answer a full disk, a name
that is too long or a parent that is a plain file the same way.
"""

from __future__ import annotations

import errno as errnos
import os
from pathlib import Path

from ._errors import SaveError

__all__ = ["save_error", "write_atomically"]

# What to do next, by errno; anything else gets the generic last resort.
_ADVICE = {
    errnos.ENOSPC: "free some disk space, then try again",
    errnos.EFBIG: "the file would pass this process's file size limit (ulimit -f); raise it",
    errnos.ENAMETOOLONG: "use a shorter file name",
    errnos.EACCES: "check the directory's permissions",
    errnos.EPERM: "check the directory's permissions",
    errnos.EROFS: "the file system is read-only; choose another directory",
    errnos.EISDIR: "a directory already has that name; choose another name",
}
if hasattr(errnos, "EDQUOT"):
    _ADVICE[errnos.EDQUOT] = "free some space within your disk quota, then try again"

# A temporary name is the final one plus 14 characters: keep it within the usual 255 bytes
# even when the final name is near that limit.
_TEMP_STEM_BYTES = 200


def save_error(what: str, exc: OSError) -> SaveError:
    """``what`` went wrong because of ``exc``: one line, with what to do about it."""
    if isinstance(exc, SaveError):
        return SaveError(f"{what}: {exc.message}", errno=exc.errno)
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0, "check the path and the disk")
    return SaveError(f"{what}: {reason}; {advice}", errno=exc.errno)


def write_atomically(data: bytes, target: Path) -> Path:
    """Write ``data`` to ``target`` through a temporary file renamed into place.

    Missing parent directories are created, and removed again if the write fails. Every
    failure is a `SaveError`.
    """
    what = f"could not save the image to {str(target)!r}"
    if "\x00" in str(target):
        raise SaveError(f"{what}: the path contains a NUL character; remove it")
    created = _make_parents(target, what)
    try:
        _write(data, target)
    except OSError as exc:
        _remove(created)
        raise save_error(what, exc) from exc
    except BaseException:
        _remove(created)
        raise
    return target


def _write(data: bytes, target: Path) -> None:
    # os.urandom, as secrets.token_hex uses, without loading secrets and hmac at a first save.
    temp = target.with_name(f".{_shortened(target.name)}.{os.urandom(4).hex()}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _shortened(name: str) -> str:
    encoded = os.fsencode(name)
    if len(encoded) <= _TEMP_STEM_BYTES:
        return name
    return os.fsdecode(encoded[:_TEMP_STEM_BYTES]).encode("utf-8", "ignore").decode()


def _make_parents(target: Path, what: str) -> list[Path]:
    """Create the missing parents of ``target``; return those this call created."""
    created: list[Path] = []
    try:
        missing: list[Path] = []
        parent = target.parent
        while not parent.is_dir():
            if parent.exists() or parent.is_symlink():
                raise _not_a_directory(what, parent)
            missing.append(parent)
            if parent.parent == parent:
                break
            parent = parent.parent
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                if not directory.is_dir():  # someone made a file there meanwhile
                    raise _not_a_directory(what, directory) from None
                continue  # made by a concurrent save: not ours to remove
            created.append(directory)
    except SaveError:
        _remove(created)
        raise
    except OSError as exc:
        _remove(created)
        raise save_error(what, exc) from exc
    return created


def _not_a_directory(what: str, path: Path) -> SaveError:
    return SaveError(f"{what}: {str(path)!r} is not a directory; choose another path")


def _remove(created: list[Path]) -> None:
    """Remove directories this save created, deepest first, if they are still empty."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (another save is using it) or gone: leave the rest too
