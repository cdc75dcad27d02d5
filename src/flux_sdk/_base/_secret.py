"""`SecretStr`: an API key that never prints, without importing pydantic.

pydantic's ``SecretStr`` would do, but ``from pydantic import SecretStr`` loads
``pydantic.types`` and with it most of the model machinery, about a third of a first
generate's import time (issue 26). This holder has the same face (``get_secret_value()``,
``SecretStr('**********')`` as its repr, pickled with its value as pydantic's is, so a
provider still travels to a worker process). pydantic's ``SecretStr`` (or any object with
a ``get_secret_value()`` that returns a str) is still accepted wherever a key is.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol

__all__ = ["SecretLike", "SecretStr", "secret_value"]

_MASK = "**********"


class SecretLike(Protocol):
    """What a key given as a secret holder offers: pydantic's ``SecretStr`` or ours."""

    def get_secret_value(self) -> str: ...


class SecretStr:
    """A secret string: ``repr``, ``str``, formatting and logging show ``**********``.

    Equal to another `SecretStr` holding the same value; immutable; copying returns the
    same object; a pickle carries the key, as pydantic's does (a provider handed to a
    worker process keeps working), so treat a pickle of a provider as the key itself.
    """

    __slots__ = ("_secret_value",)
    _secret_value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"SecretStr holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_secret_value", value)

    def get_secret_value(self) -> str:
        """The secret itself: only for the header or body that must carry it."""
        return self._secret_value

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"

    def __str__(self) -> str:
        return _MASK if self._secret_value else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return self._secret_value == other._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __len__(self) -> int:
        return len(self._secret_value)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("SecretStr is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("SecretStr is immutable")

    def __copy__(self) -> SecretStr:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretStr:
        return self

    def __reduce__(self) -> tuple[type[SecretStr], tuple[str]]:
        return (SecretStr, (self._secret_value,))


def secret_value(secret: str | SecretLike) -> str:
    """The text of a key given as a str, our `SecretStr`, pydantic's, or the like.

    Anything else is a `TypeError` that names its type, never its value.
    """
    if isinstance(secret, str):
        return secret
    getter = getattr(secret, "get_secret_value", None)
    value = getter() if callable(getter) else None
    if not isinstance(value, str):
        raise TypeError(f"a key must be a str or a SecretStr (got {type(secret).__name__})")
    return value
