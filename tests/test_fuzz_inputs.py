"""Hypothesis against callers: any input is refused before sending or sent exactly as asked."""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flux_sdk import (
    Baseten,
    Dataoorts,
    FluxClient,
    FluxWarning,
    GeneratedImage,
    InvalidRequestError,
)

from ._fuzz import IMAGES, KEY, PROVIDERS, fuzz_settings, json_values_of
from ._reliability import count, record
from .conftest import SECRET_WATCH

INPUT_EXAMPLES = count(quick=100, full=3_000)


# What a caller might pass

ODD_TEXT = [
    "",
    " ",
    "\t\n ",
    "x",
    "\x00",
    "a cat\x00",
    "\ud800 lone surrogate",
    "a cat \udfff",
    "\u202eevil right-to-left override",
    "עברית וערבית عربى",
    "e\u0301\u0301\u0301\u0301 combining",
    "\ufeffzero width\u200b joiner\u200d",
    "🚀" * 30,
    "a\r\nb",
    '"}, "model": "injected", "x": {"',
]


def _holds_no_key(value: object) -> bool:
    """Hypothesis also tries string literals it finds in our code, the emulator's key
    among them; a caller who types a key into a prompt sends it, which is not a leak."""
    text = repr(value)
    return not any(key in text for key in SECRET_WATCH.keys)


any_prompts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(ODD_TEXT),
    st.text(alphabet=st.characters(categories=["Cs", "Mn", "Cf", "Zs"]), max_size=10),
    st.integers(0, 25_000).map(lambda n: "a" * n),
    st.sampled_from([1, 1.5, True, None, b"a cat", ["a cat"], {"prompt": "a cat"}]),
).filter(_holds_no_key)
any_numbers = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 4, 8, 16, 64, 256, 1024, 2**63 - 1, 2**63, 2**64]),
    st.sampled_from([1.0, 4.0, float("nan"), float("inf"), True, False, "4", b"4", [4], {4: 4}]),
)
# A caller's own input never holds the key: a user who puts it in a prompt sends it.
any_extra_values = st.one_of(
    json_values_of(st.text(max_size=30)),
    st.sampled_from([b"bytes", float("nan"), float("-inf"), {1, 2}, (1, 2), object(), 1j]),
    st.dictionaries(st.text(max_size=5), st.sampled_from([float("inf"), b"x", None]), max_size=2),
)
any_extras = st.dictionaries(
    st.text(max_size=12)
    | st.sampled_from(["prompt", "seed", "num_steps", "num_inference_steps", "prompt2", "timeout"]),
    any_extra_values,
    max_size=3,
).filter(_holds_no_key)
any_knobs = st.fixed_dictionaries(
    {},
    optional={
        "max_retries": st.sampled_from([-1, 1.5, "3", True, None, 0, 2]),
        "deadline": st.sampled_from([0, -1, float("nan"), "10", True, None, 60.0]),
        "timeout": st.sampled_from([0, -5, float("nan"), [1], None, 60, httpx.Timeout(60)]),
    },
)
ARBITRARY: dict[str, st.SearchStrategy[Any]] = {
    "prompt": any_prompts,
    "seed": any_numbers,
    "steps": any_numbers,
    "width": any_numbers,
    "height": any_numbers,
    "extra": any_extras,
    "knobs": any_knobs,
}


@st.composite
def calls(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments every provider accepts, then one to three of them replaced by anything."""
    args: dict[str, Any] = {
        "prompt": draw(st.text(min_size=2, max_size=40) | st.sampled_from(ODD_TEXT[8:])),
        "seed": draw(st.none() | st.integers(1, 2**63 - 1)),
        "steps": draw(st.none() | st.integers(1, 4)),
        "width": None,
        "height": None,
        "extra": draw(st.dictionaries(st.sampled_from(["note", "tag"]), st.text(), max_size=1)),
        "knobs": {},
    }
    for field in draw(st.sets(st.sampled_from(sorted(ARBITRARY)), min_size=1, max_size=3)):
        args[field] = draw(ARBITRARY[field])
    return args


INPUT_PROVIDERS: dict[str, Callable[[], Dataoorts | Baseten]] = {
    **PROVIDERS,
    "dataoorts-sdxl": lambda: Dataoorts(
        api_key=KEY, model="stabilityai/stable-diffusion-xl-base-1.0"
    ),
}


def _strict_json(body: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def _sent_fields(provider: Dataoorts | Baseten, sent: httpx.Request) -> dict[str, Any]:
    document = _strict_json(sent.content)
    assert isinstance(document, dict)
    if isinstance(provider, Dataoorts):
        assert document["model"] == provider.model
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        fields = document["data"]
    else:
        assert sent.headers["authorization"] == f"Api-Key {KEY}"
        fields = document
    assert isinstance(fields, dict)
    return fields


@pytest.mark.parametrize("name", list(INPUT_PROVIDERS))
def test_any_caller_input_is_refused_before_sending_or_sent_as_asked(
    name: str, anyio_backend: str
) -> None:
    """Any arguments to generate() raise InvalidRequestError before sending, or go as given."""
    provider = INPUT_PROVIDERS[name]()
    answer = IMAGES[0]
    outcomes: Counter[str] = Counter()

    @fuzz_settings(INPUT_EXAMPLES)
    @given(args=calls())
    def one(args: dict[str, Any]) -> None:
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200, headers={"content-type": "image/png"}, content=answer)

        async def call() -> GeneratedImage:
            transport = httpx.MockTransport(handler)
            async with httpx.AsyncClient(transport=transport) as http:
                client = FluxClient(provider, max_retries=0, http_client=http)
                return await client.generate(
                    args["prompt"],
                    seed=args["seed"],
                    steps=args["steps"],
                    width=args["width"],
                    height=args["height"],
                    extra_body=args["extra"],
                    **args["knobs"],
                )

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                image = anyio.run(call, backend=anyio_backend)
            except InvalidRequestError as exc:
                assert sent == [], "a refused request must not reach the network"
                message = str(exc)
                assert message.strip(), "the refusal must say why"
                assert len(message) < 1_000, "the refusal must not echo a huge input"
                outcomes["refused"] += 1
                return
        # Accepted: exactly one request, carrying exactly what was asked for.
        assert {w.category for w in caught} <= {FluxWarning}
        assert len(sent) == 1
        assert image.data == answer
        fields = _sent_fields(provider, sent[0])
        prompt = args["prompt"]
        assert isinstance(prompt, str)
        assert prompt.strip()
        assert "\x00" not in prompt
        assert fields["prompt"] == prompt
        steps_field = {"dataoorts": "steps", "baseten": "num_inference_steps"}.get(
            name, "num_steps"
        )
        for field, sent_as in [
            ("seed", "seed"),
            ("steps", steps_field),
            ("width", "width"),
            ("height", "height"),
        ]:
            value = args[field]
            assert value is None or (type(value) is int and value >= 0)
            assert fields.get(sent_as) == value
        assert set(fields) - {"prompt", "seed", steps_field, "width", "height"} == set(
            args["extra"]
        )
        for key, value in args["extra"].items():
            assert fields[key] == _strict_json(json.dumps(value).encode())
        outcomes["sent"] += 1

    start = time.perf_counter()
    one()
    record(
        f"fuzz.generate_input.{name}.{anyio_backend}",
        examples=sum(outcomes.values()),
        refused=outcomes["refused"],
        sent=outcomes["sent"],
        seconds=round(time.perf_counter() - start, 2),
    )
    assert outcomes["refused"] > 0
    assert outcomes["sent"] > 0
