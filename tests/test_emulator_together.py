"""The emulator's Together route, checked with plain httpx as any client would, and the
OpenAI-style route on DeepInfra's path."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx
import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

pytestmark = pytest.mark.anyio

TOGETHER = "/together/v1/images/generations"
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
FOX = {"model": "black-forest-labs/FLUX.1-schnell", "prompt": "a red fox"}


async def post(
    body: Any = None,
    *,
    app: EmulatorApp | None = None,
    path: str = TOGETHER,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app or EmulatorApp(default_size=64))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        return await http.request(
            method, path, headers=BEARER if headers is None else headers, json=body
        )


def fox(seed: int | None, steps: int = 20, width: int = 64, height: int = 64) -> bytes:
    return render_png("a red fox", seed=seed, steps=steps, width=width, height=height)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


async def test_answer_has_togethers_shape_and_rate_limit_headers() -> None:
    response = await post({**FOX, "seed": 7, "steps": 4, "response_format": "base64"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == response.headers["x-request-id"]
    assert body["model"] == FOX["model"]
    assert body["object"] == "list"
    (item,) = body["data"]
    assert set(item) == {"index", "type", "b64_json"}
    assert (item["index"], item["type"]) == (0, "b64_json")
    assert base64.b64decode(item["b64_json"]) == fox(7, steps=4)
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert response.headers[name].isdigit()


async def test_steps_default_to_twenty_as_the_spec_says() -> None:
    """Together's own default is 20 steps: the reason the provider always sends steps."""
    response = await post({**FOX, "seed": 1, "response_format": "base64"})
    assert base64.b64decode(response.json()["data"][0]["b64_json"]) == fox(1, steps=20)


async def test_n_images_use_consecutive_seeds_and_sizes() -> None:
    body = {**FOX, "seed": 10, "n": 3, "width": 128, "height": 64, "response_format": "base64"}
    items = (await post(body)).json()["data"]
    assert [item["index"] for item in items] == [0, 1, 2]
    assert [base64.b64decode(i["b64_json"]) for i in items] == [
        fox(10 + k, width=128, height=64) for k in range(3)
    ]


@pytest.mark.parametrize("fields", [{"response_format": "url"}, {}])
async def test_url_format_is_a_data_url(fields: dict[str, Any]) -> None:
    """A URL answer (also the default) is a data: URL, so it needs no second route."""
    (item,) = (await post({**FOX, "seed": 2, **fields})).json()["data"]
    assert item["type"] == "url"
    head, _, data = item["url"].partition(",")
    assert head == "data:image/png;base64"
    assert base64.b64decode(data) == fox(2)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "b64_json"}, "response_format"),
        ({"model": None}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"steps": 51}, "steps"),
        ({"steps": 0}, "steps"),
        ({"n": 5}, "n"),
        ({"width": 100}, "width"),
        ({"height": 4096}, "height"),
        ({"seed": -1}, "seed"),
        ({"output_format": "webp"}, "output_format"),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    response = await post({**FOX, **fields})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Api-Key {DEFAULT_API_KEY}"}],
)
async def test_a_wrong_key_is_401(headers: dict[str, str]) -> None:
    response = await post(FOX, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


async def test_get_is_405() -> None:
    response = await post(method="GET")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    error_of(response)


async def test_rate_limit_fault_sends_the_wait_in_x_ratelimit_reset() -> None:
    """Together's 429 says when to come back in x-ratelimit-reset, not Retry-After."""
    app = EmulatorApp(faults=FaultPlan([Fault.RATE_LIMIT], retry_after=2.5))
    response = await post(FOX, app=app)
    assert response.status_code == 429
    assert response.headers["x-ratelimit-reset"] == "2.5"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert "retry-after" not in response.headers
    assert error_of(response)["type"] == "dynamic_request_limited"


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.SERVER_ERROR, 500), (Fault.BAD_GATEWAY, 502), (Fault.UNAVAILABLE, 503)],
)
async def test_server_faults_in_the_error_shape(fault: Fault, status: int) -> None:
    response = await post(FOX, app=EmulatorApp(faults=FaultPlan([fault])))
    assert response.status_code == status
    assert error_of(response)["type"] == "server_error"


async def test_invalid_json_and_base64_faults() -> None:
    app = EmulatorApp(faults=FaultPlan([Fault.INVALID_JSON, Fault.INVALID_BASE64]))
    cut = await post(FOX, app=app)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    broken = (await post(FOX, app=app)).json()["data"][0]["b64_json"]
    with pytest.raises(binascii.Error):
        base64.b64decode(broken, validate=True)


async def test_deepinfra_path_is_the_openai_route() -> None:
    """DeepInfra's /v1/openai/images/generations answers exactly as /v1/images/generations."""
    body = {"model": "black-forest-labs/FLUX-1-schnell", "prompt": "a red fox", "seed": 3}
    body |= {"size": "96x64", "response_format": "b64_json"}
    deepinfra = await post(body, path="/v1/openai/images/generations")
    openai = await post(body, path="/v1/images/generations")
    assert deepinfra.status_code == openai.status_code == 200
    assert deepinfra.json()["data"] == openai.json()["data"]
    image = base64.b64decode(deepinfra.json()["data"][0]["b64_json"])
    assert image == render_png("a red fox", seed=3, steps=4, width=96, height=64)


async def test_together_format_is_refused_on_the_openai_route() -> None:
    """The two shapes really differ: OpenAI's route refuses Together's 'base64'."""
    response = await post({**FOX, "response_format": "base64"}, path="/v1/images/generations")
    assert response.status_code == 400
    assert error_of(response)["param"] == "response_format"
