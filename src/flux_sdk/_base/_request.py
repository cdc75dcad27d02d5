"""`GenerateRequest`: one image to generate, checked by a pydantic-core validator.

It was a pydantic ``BaseModel``. Defining a model loads pydantic's model machinery and,
at its first validation, the plugin loader with ``importlib.metadata``: about half of a
first generate's import time beyond its dependencies (issue 26). The same checks as a
core schema cost a fraction of a millisecond, give the same errors, and keep the model's
face a caller used: ``model_dump``, ``model_dump_json``, ``model_validate``,
``model_copy``, its repr, equality, pickling, and a field in a pydantic model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeAlias

from pydantic_core import SchemaValidator, ValidationError, core_schema, to_json

from ._errors import InvalidRequestError

__all__ = ["MAX_PROMPT_CHARS", "MAX_SEED", "GenerateRequest", "JsonValue"]

# Limits every provider shares; a provider's own `ParamRules` narrow them.
MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**63 - 1
MAX_STEPS = 1_000
MAX_SIDE = 8_192

JsonValue: TypeAlias = list["JsonValue"] | dict[str, "JsonValue"] | str | bool | int | float | None
"""A value JSON can carry (pydantic's ``JsonValue``, without importing pydantic)."""

_FIELDS = ("prompt", "seed", "steps", "width", "height", "extra_body")
_JSON_REF = "flux_sdk.JsonValue"
_JSON_TYPES = {t: t.__name__ for t in (type(None), bool, int, float, str, list, dict)}


def _prompt_is_sendable(value: str) -> str:
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


def _extra_is_json(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
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


def _json_kind(value: Any) -> str:
    """The branch of the JSON union a value takes: its type, or the JSON type it subclasses."""
    kind = _JSON_TYPES.get(type(value))
    if kind is not None:
        return kind
    for base in (int, float, str, list, dict):
        if isinstance(value, base):
            return base.__name__
    return type(value).__name__  # no branch: "input was not a valid JSON value"


def _schema() -> core_schema.CoreSchema:
    json_ref = core_schema.definition_reference_schema(_JSON_REF)
    json_value = core_schema.json_or_python_schema(
        json_schema=core_schema.any_schema(),
        python_schema=core_schema.tagged_union_schema(
            choices={
                "NoneType": core_schema.none_schema(),
                "bool": core_schema.bool_schema(),
                "int": core_schema.int_schema(),
                "float": core_schema.float_schema(),
                "str": core_schema.str_schema(),
                "list": core_schema.list_schema(json_ref),
                "dict": core_schema.dict_schema(core_schema.str_schema(), json_ref),
            },
            discriminator=_json_kind,
            custom_error_type="invalid-json-value",
            custom_error_message="input was not a valid JSON value",
        ),
        ref=_JSON_REF,
    )

    def number(low: int, high: int) -> core_schema.ModelField:
        checked = core_schema.int_schema(strict=True, ge=low, le=high)
        return core_schema.model_field(
            core_schema.with_default_schema(core_schema.nullable_schema(checked), default=None)
        )

    prompt = core_schema.str_schema(strict=True, min_length=1, max_length=MAX_PROMPT_CHARS)
    extra = core_schema.dict_schema(core_schema.str_schema(), json_ref)
    fields = {
        "prompt": core_schema.model_field(
            core_schema.no_info_after_validator_function(_prompt_is_sendable, prompt)
        ),
        "seed": number(0, MAX_SEED),
        "steps": number(1, MAX_STEPS),
        "width": number(1, MAX_SIDE),
        "height": number(1, MAX_SIDE),
        "extra_body": core_schema.model_field(
            core_schema.with_default_schema(
                core_schema.no_info_after_validator_function(_extra_is_json, extra),
                default_factory=dict,
            )
        ),
    }
    model = core_schema.model_fields_schema(
        fields, model_name="GenerateRequest", extra_behavior="forbid"
    )
    return core_schema.definitions_schema(model, [json_value])


_VALIDATOR = SchemaValidator(_schema(), {"title": "GenerateRequest"})


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


def _copy(value: JsonValue) -> JsonValue:
    """A deep copy of a checked JSON value, so a dump never shares the request's lists."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


class GenerateRequest:
    """One image to generate, checked before anything is sent.

    ``extra_body`` holds provider-specific fields (Baseten's ``prompt2``, say) that are
    sent unchanged; the provider refuses one that duplicates a field above. Invalid
    values raise `InvalidRequestError` (a `ValueError`).
    """

    __slots__ = _FIELDS

    if TYPE_CHECKING:
        # Read-only to a type checker, as the frozen model was; slots at run time.
        @property
        def prompt(self) -> str: ...
        @property
        def seed(self) -> int | None: ...
        @property
        def steps(self) -> int | None: ...
        @property
        def width(self) -> int | None: ...
        @property
        def height(self) -> int | None: ...
        @property
        def extra_body(self) -> dict[str, JsonValue]: ...

        # Any, as pydantic's mypy plugin typed a model's keywords: checked at run time.
        def __init__(
            self,
            *,
            prompt: Any,
            seed: Any = ...,
            steps: Any = ...,
            width: Any = ...,
            height: Any = ...,
            extra_body: Any = ...,
        ) -> None: ...

    else:

        def __init__(self, **data: Any) -> None:
            try:
                values, _, _ = _VALIDATOR.validate_python(data)
            except ValidationError as exc:
                raise InvalidRequestError(_describe(exc)) from None
            for name in _FIELDS:
                object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(
            f"GenerateRequest is frozen; use request.replace({name}=...) for a changed copy"
        )

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"GenerateRequest is frozen; {name} cannot be deleted")

    def replace(self, **changes: Any) -> GenerateRequest:
        """A copy with some fields changed, validated like a new request."""
        return GenerateRequest(**{**self.model_dump(), **changes})

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> GenerateRequest:
        """`replace` under pydantic's name (validated, unlike pydantic's)."""
        return self.replace(**(update or {}))

    @classmethod
    def model_validate(cls, obj: Any) -> GenerateRequest:
        """A request from a mapping of its fields (or a request, returned as is)."""
        if isinstance(obj, GenerateRequest):
            return obj
        if not isinstance(obj, Mapping):
            raise InvalidRequestError(
                f"invalid request: expected a mapping of its fields (got {type(obj).__name__})"
            )
        return cls(**{str(key): value for key, value in obj.items()})

    def model_dump(
        self,
        *,
        mode: Literal["python", "json"] | str = "python",
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        exclude_none: bool = False,
    ) -> dict[str, Any]:
        """The fields as a new dict (``mode`` is accepted for pydantic's sake: every field
        is a JSON value already)."""
        wanted = _FIELDS if include is None else tuple(f for f in _FIELDS if f in set(include))
        dropped = set(exclude or ())
        out: dict[str, Any] = {}
        for name in wanted:
            value = getattr(self, name)
            if name not in dropped and not (exclude_none and value is None):
                out[name] = _copy(value)
        return out

    def model_dump_json(
        self,
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        exclude_none: bool = False,
        indent: int | None = None,
    ) -> str:
        """The fields as compact JSON, in field order: a ready cache key."""
        fields = self.model_dump(include=include, exclude=exclude, exclude_none=exclude_none)
        return to_json(fields, indent=indent).decode()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GenerateRequest):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # extra_body is a dict

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"GenerateRequest({shown})"

    def __reduce__(self) -> tuple[Callable[[dict[str, Any]], GenerateRequest], tuple[Any]]:
        return (_rebuild, (self.model_dump(),))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        """As a field of a pydantic model: validated from a request or a dict, dumped as a
        dict."""
        return core_schema.no_info_plain_validator_function(
            cls.model_validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda request: request.model_dump()
            ),
        )


def _rebuild(fields: dict[str, Any]) -> GenerateRequest:
    """Unpickle a request: its fields, checked again."""
    return GenerateRequest(**fields)
