"""The emulator's Baseten routes: paths, inputs and errors as truss and Baseten answer."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._emulator import API_KEY, SMALL, client, decode

pytestmark = pytest.mark.anyio

BASETEN_PATHS = [
    "/production/predict",
    "/development/predict",
    "/environments/staging-2/predict",
    "/deployment/abc_123/predict",
]


@pytest.mark.parametrize("path", BASETEN_PATHS)
@pytest.mark.parametrize("scheme", ["Api-Key", "Bearer"])
async def test_baseten_routes_answer_base64_png(path: str, scheme: str) -> None:
    """Every synchronous Baseten path answers {"data": base64 image} for either auth form."""
    headers = {"Authorization": f"{scheme} {DEFAULT_API_KEY}"}
    async with client() as http:
        response = await http.post(path, headers=headers, json={"prompt": "a red fox", **SMALL})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-baseten-request-id"] == response.headers["x-request-id"]
    png = base64.b64decode(response.json()["data"], validate=True)
    assert decode(png).size == (64, 64)


async def test_baseten_size_steps_and_seed_shape_the_image() -> None:
    """width/height set the image size (default default_size), and every input is honoured."""
    request = {"prompt": "a red fox", "seed": 3, "num_inference_steps": 2}
    async with client(EmulatorApp(default_size=128)) as http:
        default = await http.post("/production/predict", headers=API_KEY, json=request)
        wide = await http.post(
            "/production/predict", headers=API_KEY, json={**request, "width": 96, "height": 64}
        )
    default_png = base64.b64decode(default.json()["data"])
    assert decode(default_png).size == (128, 128)
    assert default_png == render_png("a red fox", seed=3, steps=2, width=128, height=128)
    assert decode(base64.b64decode(wide.json()["data"])).size == (96, 64)


async def test_baseten_ignores_guidance_and_unknown_keys_and_truncates_prompt() -> None:
    """As the real model does: guidance is forced to 0, extras are ignored, long prompts cut."""
    base = {"prompt": "a red fox", "seed": 0, **SMALL}
    variants = [
        {**base, "guidance_scale": 3.5, "extra": [1, 2]},
        {**base, "prompt": "a red fox jumping", "max_sequence_length": 3},
        {**base, "prompt2": None, "seed": 0},
    ]
    async with client() as http:
        expected = (await http.post("/production/predict", headers=API_KEY, json=base)).json()
        for variant in variants:
            response = await http.post("/production/predict", headers=API_KEY, json=variant)
            assert response.json() == expected, variant
        second = await http.post(
            "/production/predict", headers=API_KEY, json={**base, "prompt2": "x"}
        )
    assert second.status_code == 200
    assert second.json() != expected


async def test_baseten_without_authorization_is_a_plain_text_401() -> None:
    """No Authorization header: 401, plain text, and no WWW-Authenticate challenge."""
    async with client() as http:
        response = await http.post("/production/predict", json={"prompt": "hi"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content == b"No Authorization header provided"
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    "authorization",
    [
        "Api-Key wrong",
        f"Token {DEFAULT_API_KEY}",
        f"Api-Key{DEFAULT_API_KEY}",
        DEFAULT_API_KEY,
        f"Bearer {DEFAULT_API_KEY}x",
    ],
)
async def test_baseten_refuses_a_wrong_key_with_403_json(authorization: str) -> None:
    """A key Baseten does not accept is a 403 with its JSON message, the key not echoed."""
    async with client() as http:
        response = await http.post(
            "/production/predict", headers={"Authorization": authorization}, json={"prompt": "hi"}
        )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"error": "please check the api-key you provided"}'


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"prompt": null}',
        b'{"prompt": 12}',
        b'{"prompt": "a", "prompt2": 3}',
        b'{"prompt": "a", "guidance_scale": "high"}',
        b'{"prompt": "a", "max_sequence_length": "256"}',
        b'{"prompt": "a", "max_sequence_length": 513}',
    ],
)
async def test_baseten_input_that_crashes_the_model_is_a_generic_500(body: bytes) -> None:
    """As truss answers a model's exception: a generic body, the error-source headers."""
    async with client() as http:
        response = await http.post("/production/predict", headers=API_KEY, content=body)
    assert response.status_code == 500
    assert response.content == b'{"error":"Internal Server Error (in model/chainlet)."}'
    assert response.headers["x-baseten-error-source"] == "04"
    assert response.headers["x-baseten-error-code"] == "600"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'"a red fox"', 400),
        (b'{"prompt": "a", "seed": "1"}', 422),
        (b'{"prompt": "a", "seed": true}', 422),
        (b'{"prompt": "a", "seed": 1.0}', 422),
        (b'{"prompt": "a", "num_inference_steps": 0}', 422),
        (b'{"prompt": "a", "num_inference_steps": 51}', 422),
        (b'{"prompt": "a", "num_inference_steps": "4"}', 422),
        (b'{"prompt": "a", "width": 48}', 422),
        (b'{"prompt": "a", "width": 2064}', 422),
        (b'{"prompt": "a", "width": 100}', 422),
        (b'{"prompt": "a", "height": false}', 422),
        (b'{"prompt": "a", "height": 512.0}', 422),
    ],
)
async def test_baseten_refuses_invalid_input(body: bytes, status: int) -> None:
    """Bad JSON is 400; values past the emulator's own bounds are 422 with a message."""
    async with client() as http:
        response = await http.post("/production/predict", headers=API_KEY, content=body)
    assert response.status_code == status
    [(key, message)] = response.json().items()
    assert key == "error"
    assert isinstance(message, str)
    assert message
    assert "x-baseten-error-code" not in response.headers


@pytest.mark.parametrize(
    "request_",
    [{"width": 64, "height": 2048}, {"num_inference_steps": 1}, {"num_inference_steps": 50}],
)
async def test_baseten_accepts_limits(request_: dict[str, Any]) -> None:
    """Sizes 64..2048 in steps of 16 and 1..50 inference steps are accepted."""
    async with client() as http:
        response = await http.post(
            "/production/predict", headers=API_KEY, json={"prompt": "a", **SMALL, **request_}
        )
    assert response.status_code == 200, response.text


async def test_baseten_server_error_fault_is_the_generic_model_error() -> None:
    """An injected 500 looks like a model's exception under truss, headers included."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.SERVER_ERROR]))
    async with client(app) as http:
        response = await http.post("/production/predict", headers=API_KEY, json={"prompt": "a"})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal Server Error (in model/chainlet)."}
    assert response.headers["x-baseten-error-code"] == "600"
    assert response.headers["x-request-id"] == "emu-000001"
