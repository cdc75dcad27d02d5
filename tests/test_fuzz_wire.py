"""Hypothesis against the wire: any response through FluxClient is a FluxError or a real image."""

from __future__ import annotations

import gzip
import itertools
import time
import zlib
from collections import Counter

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flux_sdk import FluxClient, GeneratedImage

from ._fuzz import PROVIDERS, REQUEST, answers, check_result, fuzz_settings
from ._reliability import count, record

CLIENT_EXAMPLES = count(quick=100, full=2_000)


# The same, through FluxClient's sending, size cap, decoding and error mapping


def _encoded(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "raw-deflate":
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return squeeze.compress(body) + squeeze.flush()
    return body


class Pieces(httpx.AsyncByteStream):
    """A body that arrives in several network reads (an iterator, not an async generator,
    so nothing is left for the garbage collector when the client stops reading early)."""

    def __init__(self, body: bytes, cuts: list[int]) -> None:
        edges = [0, *sorted(cut % (len(body) + 1) for cut in cuts), len(body)]
        self.pieces = iter([body[a:b] for a, b in itertools.pairwise(edges)])

    def __aiter__(self) -> Pieces:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self.pieces)
        except StopIteration:
            raise StopAsyncIteration from None


@st.composite
def wire_responses(draw: st.DrawFn) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A response as it comes off the wire: maybe compressed, maybe lying about it."""
    status, headers, body = draw(answers())
    coding = draw(st.sampled_from(["", "", "", "gzip", "deflate", "raw-deflate", "gzip-lie", "br"]))
    if coding == "gzip-lie":
        headers.append((b"content-encoding", b"gzip"))  # says gzip, sends plain bytes
    elif coding:
        body = _encoded(body, coding)
        header = b"deflate" if coding == "raw-deflate" else coding.encode()
        headers.append((b"content-encoding", header))
    return status, headers, body


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_any_wire_response_through_the_client_gives_a_flux_error_or_a_real_image(
    name: str, anyio_backend: str
) -> None:
    """Whatever comes off the wire, generate() raises a FluxError or returns a real image."""
    provider = PROVIDERS[name]()
    outcomes: Counter[str] = Counter()

    @fuzz_settings(CLIENT_EXAMPLES)
    @given(
        wire=wire_responses(),
        cuts=st.lists(st.integers(0, 10_000), max_size=6),
        cap=st.sampled_from([64 * 1024 * 1024, 700]),
    )
    def one(wire: tuple[int, list[tuple[bytes, bytes]], bytes], cuts: list[int], cap: int) -> None:
        status, headers, body = wire

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, headers=headers, stream=Pieces(body, cuts))

        async def call() -> GeneratedImage:
            transport = httpx.MockTransport(handler)
            async with httpx.AsyncClient(transport=transport) as http:
                client = FluxClient(
                    provider, max_retries=0, http_client=http, max_response_bytes=cap
                )
                return await client.generate(REQUEST)

        outcome = check_result(provider, lambda: anyio.run(call, backend=anyio_backend))
        outcomes[outcome] += 1

    start = time.perf_counter()
    one()
    record(
        f"fuzz.client.{name}.{anyio_backend}",
        examples=sum(outcomes.values()),
        images=outcomes["image"],
        errors=outcomes["error"],
        seconds=round(time.perf_counter() - start, 2),
    )
    assert outcomes["image"] > 0
    assert outcomes["error"] > 0
