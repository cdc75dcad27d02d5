"""Shared by the routing tests: hosts of the tests' own, a hand-moved clock, a client."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import httpx

from flux_sdk import FluxClient, GeneratedImage, GenerateRequest, ParamRules, Retry
from flux_sdk.providers import raise_for_status

from ._images import image_bytes

PNG = image_bytes(size=2)
OK = httpx.Response(200, json={"image": base64.b64encode(PNG).decode()})


class Host:
    """A one-request host of the tests' own, one per name."""

    def __init__(self, name: str, rules: ParamRules | None = None) -> None:
        self.name = name
        self.rules = rules or ParamRules()
        self.url = f"https://{name}.example/generate"

    def build_request(self, request: GenerateRequest) -> httpx.Request:
        return httpx.Request("POST", self.url, json={"prompt": request.prompt})

    def parse_response(self, request: GenerateRequest, response: httpx.Response) -> GeneratedImage:
        raise_for_status(response, provider=self.name)
        data = base64.b64decode(response.json()["image"])
        return GeneratedImage.from_data(data, provider=self.name, request=request)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def client(providers: list[Any], **options: Any) -> FluxClient:
    options.setdefault("max_retries", Retry(3, sleep=no_sleep))
    return FluxClient(providers, **options)


A, B, C = Host("alpha"), Host("beta"), Host("gamma")


def _circuit(flux: FluxClient, index: int) -> str:
    return flux.routes[index].circuit
