"""Hypothesis against parse_response: whatever a server sends gives a FluxError or a real image."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from hypothesis import given

from ._fuzz import PROVIDERS, REQUEST, answers, check_result, fuzz_settings
from ._reliability import count, record

PARSE_EXAMPLES = count(quick=300, full=10_000)


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_any_response_gives_a_flux_error_or_a_real_image(name: str) -> None:
    """Whatever a server sends, parse_response raises a FluxError or returns a real image."""
    provider = PROVIDERS[name]()
    outcomes: Counter[str] = Counter()

    @fuzz_settings(PARSE_EXAMPLES)
    @given(answer=answers())
    def one(answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
        # As FluxClient hands it over: the body read whole, content-encoding removed.
        status, headers, body = answer
        kept = [
            (k, v)
            for k, v in headers
            if k.lower() not in (b"content-encoding", b"transfer-encoding")
        ]
        response = httpx.Response(status, headers=kept, content=body)
        outcomes[check_result(provider, lambda: provider.parse_response(REQUEST, response))] += 1

    start = time.perf_counter()
    one()
    seconds = time.perf_counter() - start
    record(
        f"fuzz.parse_response.{name}",
        examples=sum(outcomes.values()),
        images=outcomes["image"],
        errors=outcomes["error"],
        seconds=round(seconds, 2),
    )
    # The strategies must reach both outcomes, or the property says little.
    assert outcomes["image"] > 0
    assert outcomes["error"] > 0
    assert sum(outcomes.values()) >= PARSE_EXAMPLES
