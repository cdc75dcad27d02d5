"""GenerateRequest without pydantic's models: the same checks, messages and face.

The request was a pydantic ``BaseModel``; it is now checked by a pydantic-core schema so
that a first generate does not load pydantic's model machinery (issue 26). The old model
is rebuilt here as the reference, around the same field checks: every input gets the
same outcome and message from both, and a valid one the same dump, JSON and repr.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from typing import Annotated, Any

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictInt, field_validator

from flux_sdk import GenerateRequest, InvalidRequestError
from flux_sdk._base._request import _describe, _extra_is_json, _prompt_is_sendable


class Reference(BaseModel):
    """GenerateRequest as it was, a pydantic model (flux_sdk 0.x before issue 26)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: Annotated[str, Field(strict=True, min_length=1, max_length=20_000)]
    seed: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] | None = None
    steps: Annotated[StrictInt, Field(ge=1, le=1_000)] | None = None
    width: Annotated[StrictInt, Field(ge=1, le=8_192)] | None = None
    height: Annotated[StrictInt, Field(ge=1, le=8_192)] | None = None
    extra_body: dict[str, JsonValue] = Field(default_factory=dict)

    # The same checks as functions: what is compared is the schema around them.
    _prompt = field_validator("prompt")(staticmethod(_prompt_is_sendable))
    _extra = field_validator("extra_body")(staticmethod(_extra_is_json))


class Flag(int):
    pass


class Text(str):
    pass


INPUTS: list[dict[str, Any]] = [
    {"prompt": "a cat"},
    {"prompt": "a cat", "seed": 0, "steps": 1, "width": 8192, "height": 1},
    {"prompt": "a cat", "seed": 2**63 - 1, "extra_body": {"prompt2": "x", "n": [1, 2.5, None]}},
    {"prompt": "a cat", "extra_body": {"deep": {"a": [{"b": True}], "c": Flag(3), "t": Text("t")}}},
    {"prompt": "un chat, 月の猫 🐱"},
    {"prompt": ""},
    {"prompt": "   \n"},
    {"prompt": "a\x00b"},
    {"prompt": "bad \ud800 surrogate"},
    {"prompt": "x" * 20_001},
    {"prompt": 42},
    {"prompt": b"bytes"},
    {"prompt": None},
    {},
    {"seed": 3},
    {"prompt": "ok", "seed": -1},
    {"prompt": "ok", "seed": 2**63},
    {"prompt": "ok", "seed": True},
    {"prompt": "ok", "seed": "12345"},
    {"prompt": "ok", "seed": 7.0},
    {"prompt": "ok", "seed": Flag(5)},
    {"prompt": "ok", "steps": 0},
    {"prompt": "ok", "steps": "4"},
    {"prompt": "ok", "width": 0},
    {"prompt": "ok", "height": 10**6},
    {"prompt": "ok", "extra_body": None},
    {"prompt": "ok", "extra_body": [("a", 1)]},
    {"prompt": "ok", "extra_body": {"x": float("nan")}},
    {"prompt": "ok", "extra_body": {"x": [1, {"y": float("inf")}]}},
    {"prompt": "ok", "extra_body": {"x": object()}},
    {"prompt": "ok", "extra_body": {"x": (1, 2)}},
    {"prompt": "ok", "extra_body": {"x": {1, 2}}},
    {"prompt": "ok", "extra_body": {"x": b"raw"}},
    {"prompt": "ok", "extra_body": {1: "x"}},
    {"prompt": "ok", "extra_body": {"": 1}},
    {"prompt": "ok", "sede": 3},
    {"prompt": "", "seed": -1, "width": "a", "sede": 3},
]


def outcome(make: Any, fields: dict[str, Any]) -> tuple[str, Any]:
    try:
        made = make(**fields)
    except InvalidRequestError as exc:
        return "error", str(exc)
    except pydantic.ValidationError as exc:
        return "error", _describe(exc)
    return "ok", (made.model_dump(), made.model_dump_json(), repr(made).split("(", 1)[1])


@pytest.mark.parametrize("fields", INPUTS, ids=repr)
def test_every_input_gets_what_the_pydantic_model_gave(fields: dict[str, Any]) -> None:
    """Accepted or refused alike, with the same message, dump, JSON and repr."""
    assert outcome(GenerateRequest, fields) == outcome(Reference, fields)


def test_a_request_is_frozen_equal_by_value_and_unhashable_like_the_model() -> None:
    request = GenerateRequest(prompt="a cat", seed=1, extra_body={"x": [1]})
    assert request == GenerateRequest(prompt="a cat", seed=1, extra_body={"x": [1]})
    assert request != GenerateRequest(prompt="a cat", seed=2, extra_body={"x": [1]})
    with pytest.raises(TypeError):
        hash(request)
    with pytest.raises(AttributeError, match="replace"):
        request.prompt = "a dog"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del request.seed
    with pytest.raises(AttributeError):
        request.colour = "red"


def test_a_dump_is_a_copy_the_request_does_not_share() -> None:
    request = GenerateRequest(prompt="a cat", extra_body={"x": [1, {"y": 2}]})
    dumped = request.model_dump()
    dumped["extra_body"]["x"][1]["y"] = 3
    assert request.extra_body == {"x": [1, {"y": 2}]}
    assert request.model_dump(exclude={"extra_body"}) == {
        "prompt": "a cat", "seed": None, "steps": None, "width": None, "height": None,
    }  # fmt: skip
    assert request.model_dump(include={"prompt", "seed"}, exclude_none=True) == {"prompt": "a cat"}
    assert request.model_dump(mode="json") == dumped | {"extra_body": {"x": [1, {"y": 2}]}}


def test_copies_and_pickles_keep_the_request() -> None:
    request = GenerateRequest(prompt="a cat", steps=4, extra_body={"x": {"y": [1.5]}})
    for copied in (
        pickle.loads(pickle.dumps(request)),  # noqa: S301 (our own bytes)
        copy.copy(request),
        copy.deepcopy(request),
        request.model_copy(update={}),
        GenerateRequest.model_validate(request.model_dump()),
    ):
        assert copied == request
        assert type(copied) is GenerateRequest
    assert request.model_copy(update={"steps": 2}).steps == 2
    with pytest.raises(InvalidRequestError, match="steps"):
        request.model_copy(update={"steps": 0})
    with pytest.raises(InvalidRequestError, match="mapping"):
        GenerateRequest.model_validate(["a cat"])


def test_a_request_is_a_field_of_a_pydantic_model() -> None:
    """An application's own pydantic model can hold a request, from a dict or JSON."""

    class Job(BaseModel):
        name: str
        request: GenerateRequest

    job = Job(name="one", request={"prompt": "a cat", "seed": 3})
    assert job.request == GenerateRequest(prompt="a cat", seed=3)
    assert Job.model_validate_json(job.model_dump_json()) == job
    assert job.model_dump()["request"]["seed"] == 3
    with pytest.raises(pydantic.ValidationError, match="seed"):
        Job(name="two", request={"prompt": "a cat", "seed": -1})


MODEL_MACHINERY = ("pydantic.main", "pydantic.types", "importlib.metadata", "annotated_types")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_first_generate_loads_no_pydantic_model_machinery(
    emulator_url: str, backend: str
) -> None:
    """One image made in a fresh interpreter, a refused request, a key as pydantic's
    SecretStr would have been: none of it loads pydantic's models or importlib.metadata
    (a third of a first generate's import time, issue 26)."""
    code = f"""
import sys, anyio
from flux_sdk import Dataoorts, FluxClient, GenerateRequest, InvalidRequestError
from flux_sdk.emulator import DEFAULT_API_KEY
async def main():
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url={emulator_url + "/api/v1"!r})
    async with FluxClient(provider) as client:
        image = await client.generate("a lighthouse at dawn", seed=3)
    try:
        GenerateRequest(prompt="", seed=-1)
    except InvalidRequestError as exc:
        print(exc)
    print(image.media_type, repr(provider.api_key))
anyio.run(main, backend={backend!r})
print(" ".join(m for m in {MODEL_MACHINERY!r} if m in sys.modules) or "none")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "invalid request: prompt: String should have at least 1 character (got ''); "
        "seed: Input should be greater than or equal to 0 (got -1)",
        "image/png SecretStr('**********')",
        "none",
    ]
