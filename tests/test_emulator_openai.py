"""The emulator's OpenAI-style images route, checked with plain httpx as any client would."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._server import serve

pytestmark = pytest.mark.anyio

OPENAI = "/v1/images/generations"
BEARER = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
FOX = {"model": "gpt-image-1", "prompt": "a red fox", "response_format": "b64_json"}
MIB = 1024 * 1024


def client(app: EmulatorApp | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app or EmulatorApp(default_size=64))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def generate(app: EmulatorApp | None = None, **body: Any) -> httpx.Response:
    async with client(app) as http:
        return await http.post(OPENAI, headers=BEARER, json={**FOX, **body})


def fox(seed: int | None = None, width: int = 64, height: int = 64) -> bytes:
    return render_png("a red fox", seed=seed, steps=4, width=width, height=height)


def images(response: httpx.Response) -> list[bytes]:
    """Every image of an answer, from ``b64_json`` or from a ``data:`` URL."""
    found = []
    for item in response.json()["data"]:
        if "b64_json" in item:
            found.append(base64.b64decode(item["b64_json"], validate=True))
        else:
            header, _, data = item["url"].partition(",")
            assert header == "data:image/png;base64"
            found.append(base64.b64decode(data, validate=True))
    return found


def openai_error(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object, after checking it has exactly OpenAI's four fields."""
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# Answers


async def test_b64_json_answer_has_openais_shape_and_the_emulators_image() -> None:
    """An ImagesResponse: ``created`` (Unix seconds) and one ``b64_json`` PNG in ``data``."""
    before = int(time.time())
    response = await generate(seed=7)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "emu-000001"
    body = response.json()
    assert set(body) == {"created", "data"}
    assert isinstance(body["created"], int)
    assert before <= body["created"] <= int(time.time())
    assert [set(item) for item in body["data"]] == [{"b64_json"}]
    assert images(response) == [fox(7)]


async def test_same_prompt_and_seed_give_the_same_image_as_the_dataoorts_route() -> None:
    """Benchmarks compare clients across routes, so both must send the very same bytes."""
    app = EmulatorApp(default_size=64)
    async with client(app) as http:
        for seed in (None, 12345):
            data = {"prompt": "a red fox", "seed": seed}
            dataoorts = await http.post(
                "/api/v1",
                headers=BEARER,
                json={"model": "black-forest-labs/flux-1-schnell", "data": data},
            )
            openai = await http.post(OPENAI, headers=BEARER, json={**FOX, "seed": seed})
            png = base64.b64decode(dataoorts.json()["result"]["image_base64"])
            assert images(openai) == [png] == [fox(seed)]


async def test_missing_response_format_answers_b64_json() -> None:
    """As the GPT image models do, base64 is the default."""
    response = await generate(response_format=None)
    assert [set(item) for item in response.json()["data"]] == [{"b64_json"}]
    assert images(response) == [fox()]


async def test_url_format_answers_a_data_url_of_the_same_png() -> None:
    """``response_format: url`` gives a ``data:`` URL, which needs no second route to fetch."""
    response = await generate(response_format="url", seed=3)
    assert response.status_code == 200
    assert [set(item) for item in response.json()["data"]] == [{"url"}]
    assert images(response) == [fox(3)]


async def test_n_images_differ_and_follow_the_seed() -> None:
    """Image k of n is drawn with seed + k (no seed: None, then k), so all of them differ."""
    seeded = images(await generate(n=3, seed=10))
    assert seeded == [fox(10), fox(11), fox(12)]
    unseeded = images(await generate(n=3))
    assert unseeded == [fox(None), fox(1), fox(2)]
    assert len(set(unseeded)) == 3


@pytest.mark.parametrize(
    ("size", "expected"), [("96x64", (96, 64)), ("auto", (80, 80)), (None, (80, 80))]
)
async def test_size_sets_the_picture_and_auto_means_the_default(
    size: str | None, expected: tuple[int, int]
) -> None:
    """``WIDTHxHEIGHT`` is drawn as asked; ``auto`` or no size is ``default_size`` square."""
    response = await generate(EmulatorApp(default_size=80), size=size)
    assert images(response) == [fox(None, *expected)]


@pytest.mark.parametrize(
    ("model", "revised"), [("dall-e-3", True), ("dall-e-2", False), ("gpt-image-1", False)]
)
async def test_only_dall_e_3_answers_a_revised_prompt(model: str, revised: bool) -> None:
    """DALL-E 3 reports the prompt it used; the emulator's "revision" is the prompt itself."""
    prompt = 'a "quoted" fox\non two lines'
    response = await generate(model=model, prompt=prompt)
    [item] = response.json()["data"]
    assert item.get("revised_prompt") == (prompt if revised else None)
    assert ("revised_prompt" in item) is revised


async def test_unknown_fields_and_any_model_name_are_accepted() -> None:
    """The emulator is not OpenAI: any model name works and unknown fields are ignored."""
    response = await generate(model="my-model", quality="hd", style="vivid", user="u1")
    assert images(response) == [fox()]
    no_model = await generate(model=None)
    assert no_model.status_code == 200


async def test_image_bytes_pads_to_a_two_mebibyte_png() -> None:
    """``image_bytes`` applies here too: a 2 MiB PNG, about 2.8 MB of JSON."""
    response = await generate(EmulatorApp(default_size=64, image_bytes=2 * MIB))
    [png] = images(response)
    assert len(png) == 2 * MIB
    assert png.startswith(fox()[:33])  # the same signature and IHDR, then the padding
    assert 2.7e6 < int(response.headers["content-length"]) < 2.9e6


# Refusals


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Api-Key {DEFAULT_API_KEY}"},
        {"Authorization": DEFAULT_API_KEY},
    ],
)
async def test_bad_auth_is_401_invalid_api_key(headers: dict[str, str]) -> None:
    """Only ``Bearer KEY`` passes; the 401 carries OpenAI's ``invalid_api_key`` code."""
    async with client() as http:
        response = await http.post(OPENAI, headers=headers, json=FOX)
    assert response.status_code == 401
    error = openai_error(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert DEFAULT_API_KEY not in response.text


async def test_custom_api_key() -> None:
    """``api_key=`` replaces the default key on this route as on the others."""
    app = EmulatorApp(api_key="sk-local", default_size=64)
    async with client(app) as http:
        accepted = await http.post(OPENAI, headers={"Authorization": "Bearer sk-local"}, json=FOX)
        refused = await http.post(OPENAI, headers=BEARER, json=FOX)
    assert (accepted.status_code, refused.status_code) == (200, 401)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x" * 32001}, "prompt"),
        ({"model": 3}, "model"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"n": "2"}, "n"),
        ({"n": True}, "n"),
        ({"seed": -1}, "seed"),
        ({"size": "1024"}, "size"),
        ({"size": "32x32"}, "size"),
        ({"size": "4096x1024"}, "size"),
        ({"size": [64, 64]}, "size"),
        ({"response_format": "png"}, "response_format"),
    ],
)
async def test_invalid_fields_are_400_naming_the_param(body: dict[str, Any], param: str) -> None:
    """A bad field is a 400 ``invalid_request_error`` whose ``param`` names the field."""
    response = await generate(**body)
    assert response.status_code == 400, response.text
    error = openai_error(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, None)


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'"a red fox"'])
async def test_a_body_that_is_not_a_json_object_is_400(content: bytes) -> None:
    """The body must be a JSON object; anything else is refused before any field is read."""
    async with client() as http:
        response = await http.post(OPENAI, headers=BEARER, content=content)
    assert response.status_code == 400
    assert openai_error(response)["param"] is None


async def test_prompt_of_the_maximum_length_is_accepted() -> None:
    """32000 characters is OpenAI's limit for its GPT image models, and still accepted."""
    response = await generate(prompt="x" * 32000)
    assert response.status_code == 200


async def test_wrong_method_is_405_in_openais_shape() -> None:
    """Only POST is served; a GET gets 405, ``Allow: POST`` and an OpenAI error body."""
    async with client() as http:
        response = await http.get(OPENAI, headers=BEARER)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert openai_error(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/images/generations/", "/v1/images/edits", "/v1"])
async def test_neighbouring_paths_are_404(path: str) -> None:
    """Only the exact path is served, so a wrong base URL fails loudly."""
    async with client() as http:
        response = await http.post(path, headers=BEARER, json=FOX)
    assert response.status_code == 404


# Faults

HTTP_ERRORS = {
    Fault.RATE_LIMIT: (429, "requests", "rate_limit_exceeded"),
    Fault.SERVER_ERROR: (500, "server_error", None),
    Fault.BAD_GATEWAY: (502, "server_error", None),
    Fault.UNAVAILABLE: (503, "server_error", None),
}


@pytest.mark.parametrize("fault", list(HTTP_ERRORS))
async def test_error_faults_answer_in_openais_error_shape(fault: Fault) -> None:
    """429/500/502/503 carry OpenAI's error object; only the 429 has Retry-After."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([fault], retry_after=0.25))
    response = await generate(app)
    status, kind, code = HTTP_ERRORS[fault]
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "emu-000001"
    assert response.headers.get("retry-after") == ("0.25" if code else None)
    error = openai_error(response)
    assert (error["type"], error["param"], error["code"]) == (kind, None, code)


async def test_faults_come_before_the_key_is_checked() -> None:
    """As on the other routes, an outage does not care whether the request was valid."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.UNAVAILABLE]))
    async with client(app) as http:
        response = await http.post(OPENAI, json={"prompt": ""})
    assert response.status_code == 503


async def test_invalid_json_fault_is_cut_off_inside_the_image() -> None:
    """INVALID_JSON: a 200 typed application/json that stops in the middle of ``b64_json``."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.INVALID_JSON]))
    response = await generate(app)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{"created": ')
    assert b'"b64_json": "iVBORw0KGgo' in response.content
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_invalid_base64_fault_keeps_openais_shape() -> None:
    """INVALID_BASE64: a well-formed ImagesResponse whose ``b64_json`` no decoder accepts."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.INVALID_BASE64]))
    response = await generate(app)
    assert response.status_code == 200
    [item] = response.json()["data"]
    for validate in (False, True):
        with pytest.raises(binascii.Error):
            base64.b64decode(item["b64_json"], validate=validate)


async def test_html_fault_is_a_proxy_error_page() -> None:
    """HTML: a 200 ``text/html`` page, the same one the other routes get."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.HTML]))
    response = await generate(app)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


async def test_script_then_normal_answers() -> None:
    """A scripted fault hits one request; the next one is answered normally."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.RATE_LIMIT, None]))
    async with client(app) as http:
        statuses = [
            (await http.post(OPENAI, headers=BEARER, json=FOX)).status_code for _ in range(3)
        ]
    assert statuses == [429, 200, 200]
    assert app.faults.requests == 3


# Over a real server


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, EmulatorApp]]:
    app = EmulatorApp(default_size=64, image_bytes=2 * MIB)
    with serve(app) as url:
        yield url, app


async def test_a_two_mebibyte_image_over_loopback(server: tuple[str, EmulatorApp]) -> None:
    """Over uvicorn the route sends the whole 2.8 MB answer, with its exact length."""
    url, app = server
    app.faults = FaultPlan()
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(OPENAI, headers=BEARER, json={**FOX, "seed": 1})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    [png] = images(response)
    assert png == render_png(
        "a red fox", seed=1, steps=4, width=64, height=64, target_bytes=2 * MIB
    )


async def test_reset_drops_the_connection_mid_body(server: tuple[str, EmulatorApp]) -> None:
    """Transport-level faults apply to this route too: RESET is a protocol error."""
    url, app = server
    app.faults = FaultPlan([Fault.RESET, None])
    async with httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(OPENAI, headers=BEARER, json=FOX)
        after = await http.post(OPENAI, headers=BEARER, json=FOX)
    assert after.status_code == 200
