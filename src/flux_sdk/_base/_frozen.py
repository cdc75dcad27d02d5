"""`Frozen`: what a frozen dataclass gives, for the small records on a first generate's path.

Python 3.11 builds a dataclass by compiling each of its methods at import, about a
millisecond a class, and a client's first generate imports several (issue 26). A record
here is a plain slotted class that writes its own ``__init__`` (with
``object.__setattr__``) and sets ``__slots__ = __match_args__`` to its fields in the
order ``__init__`` takes them; this base gives it the rest, as a frozen dataclass has
it: a repr, equality and a hash by value, no assignment, pickling, ``match``.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

__all__ = ["Frozen"]


class Frozen:
    """A value that cannot be changed after ``__init__``: make a new one instead."""

    __slots__: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen) or type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Frozen], tuple[Any, ...]]:
        return type(self), self._values()
