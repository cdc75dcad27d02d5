"""Records that cost little to build at import, for a client's first generate (issue 26).

Python 3.11 builds a dataclass by compiling each method it writes, at import: about a
millisecond for a frozen class of a dozen fields, half of it ``__eq__``, ``__hash__``
and ``__repr__``. `ByValue` writes those three once, as a dataclass would, for the
dataclasses on that path: they are declared ``eq=False, repr=False`` and stay frozen
dataclasses (``fields``, ``replace``, ``asdict`` and subclassing as before). `Frozen`
is the rest of a frozen dataclass, for the small flow messages: plain slotted classes
that set ``__slots__ = __match_args__`` to their fields, in the order ``__init__``
takes them, and write that ``__init__`` with ``object.__setattr__``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

__all__ = ["ByValue", "Frozen"]


class ByValue:
    """``__eq__``, ``__hash__`` and ``__repr__`` over a record's fields, as a frozen
    dataclass writes them: equal when of the same class with equal fields."""

    __slots__: tuple[str, ...] = ()
    __match_args__: tuple[str, ...] = ()

    def _names(self, use: str) -> tuple[str, ...]:
        """The fields taking part in ``use`` ("compare" or "repr")."""
        if hasattr(self, "__dataclass_fields__"):
            fields = dataclasses.fields(cast(Any, self))
            return tuple(f.name for f in fields if getattr(f, use))
        return self.__match_args__

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names("compare"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ByValue) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names("repr"))
        return f"{type(self).__qualname__}({fields})"


class Frozen(ByValue):
    """A value that cannot be changed after ``__init__``: make a new one instead."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Frozen], tuple[Any, ...]]:
        return type(self), tuple(getattr(self, name) for name in self.__match_args__)
