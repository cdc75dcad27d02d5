"""A provider's flow driven by hand: each Step answered with the next canned response."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from flux_sdk import FlowProvider, GeneratedImage, GenerateRequest
from flux_sdk.providers import Accepted, Ended, Step, Wait

REQ = GenerateRequest(prompt="a red fox", seed=42)
Item = Step | Wait | Accepted | Ended


def drive(
    provider: FlowProvider, answers: Iterable[httpx.Response], request: GenerateRequest = REQ
) -> tuple[GeneratedImage, list[Item]]:
    """Run the flow, answering each Step with the next response; return the image and
    every item the flow yielded."""
    flow = provider.generate_flow(request)
    answers = iter(answers)
    seen: list[Item] = []
    value: Any = None
    try:
        while True:
            item = flow.send(value)
            seen.append(item)
            value = None
            if isinstance(item, Step):
                response = next(answers)
                response.request = item.request
                value = item.parse(response)
    except StopIteration as done:
        return done.value, seen
