"""The response size cap against compressed bodies: decoded within the cap, or refused."""

from __future__ import annotations

import functools
import gzip
import struct
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from flux_sdk import Dataoorts, FluxClient, GeneratedImage, InvalidResponseError, ServerError
from flux_sdk.emulator import render_png

from ._images import image_bytes
from ._reliability import record
from ._server import serve

pytestmark = pytest.mark.anyio

KEY = "sk-size-cap-3c1f9a"
URL = "https://cloud.dataoorts.com/api/v1"
PNG = image_bytes(size=64, color=(250, 20, 20))
MiB = 1024 * 1024
CAP = 8 * MiB
BOMB_BYTES = 1024 * MiB


@functools.lru_cache(maxsize=2)
def gzip_bomb(inflated: int) -> bytes:
    """A valid gzip member of ``inflated`` zero bytes (a multiple of 1 MiB), about 1/1000 the size.

    Built without inflating or deflating it all: after a full flush, deflate forgets its
    history, so each further MiB of zeros compresses to the same bytes, repeated.
    """
    zeros = bytes(MiB)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    head = squeeze.compress(zeros) + squeeze.flush(zlib.Z_FULL_FLUSH)
    again = squeeze.compress(zeros) + squeeze.flush(zlib.Z_FULL_FLUSH)
    assert head.endswith(again)
    end = squeeze.flush()[:-8]  # the final empty block, without this short member's trailer
    crc = 0
    for _ in range(inflated // MiB):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return b"".join((head, again * (inflated // MiB - 1), end, trailer))


def test_the_bomb_is_what_it_claims() -> None:
    """The bomb used below really inflates to its full size (checked on a small one)."""
    bomb = gzip_bomb(8 * MiB)
    assert gzip.decompress(bomb) == bytes(8 * MiB)
    assert len(gzip_bomb(BOMB_BYTES)) < BOMB_BYTES // 500


class Pieces(httpx.AsyncByteStream):
    """A body arriving in the pieces given (an iterator, not a generator, so nothing is left
    for the garbage collector when the client stops reading early)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = iter(pieces)

    def __aiter__(self) -> Pieces:
        return self

    async def __anext__(self) -> bytes:
        try:
            return next(self.pieces)
        except StopIteration:
            raise StopAsyncIteration from None


def answering(
    body: bytes | list[bytes], headers: dict[str, str], status: int = 200
) -> httpx.MockTransport:
    """A transport answering every request with ``body``, streamed in the pieces given."""
    pieces = body if isinstance(body, list) else [body]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=Pieces(pieces))

    return httpx.MockTransport(handler)


def client_over(transport: httpx.AsyncBaseTransport, cap: int = CAP) -> FluxClient:
    http = httpx.AsyncClient(transport=transport)
    return FluxClient(
        Dataoorts(api_key=KEY, base_url=URL),
        max_retries=0,
        http_client=http,
        max_response_bytes=cap,
    )


def peak_while(run: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[int]]:
    """``run``, returning the peak of memory allocated while it ran, in bytes."""

    async def measured() -> int:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            await run()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    return measured


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_bomb_in_one_chunk_is_refused_within_the_cap(coding: str) -> None:
    """A 1 GiB bomb arriving all at once is refused while holding about the cap, not 1 GiB."""
    bomb = gzip_bomb(BOMB_BYTES)
    if coding == "deflate":  # the same deflate stream in a zlib wrapper
        bomb = b"\x78\xda" + bomb[10:-8] + struct.pack(">I", 1)  # adler32 is never reached
    headers = {"content-type": "image/png", "content-encoding": coding}
    client = client_over(answering(bomb, headers))

    async def call() -> None:
        with pytest.raises(InvalidResponseError, match="over the cap") as caught:
            await client.generate("a cat")
        assert caught.value.retryable is False

    peak = await peak_while(call)()
    await client.aclose()
    record(
        f"size_cap.bomb_one_chunk.{coding}",
        inflated_bytes=BOMB_BYTES,
        compressed_bytes=len(bomb),
        cap_bytes=CAP,
        peak_bytes=peak,
        peak_over_cap=round(peak / CAP, 3),
    )
    assert peak < 1.5 * CAP


async def gzip_bomb_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering every request with the 1 GiB gzip bomb."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    bomb = gzip_bomb(BOMB_BYTES)
    headers = [
        (b"content-type", b"image/png"),
        (b"content-encoding", b"gzip"),
        (b"content-length", str(len(bomb)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": bomb})


@pytest.fixture(scope="module")
def bomb_url() -> Iterator[str]:
    gzip_bomb(BOMB_BYTES)  # built before any measuring starts
    with serve(gzip_bomb_app) as url:
        yield url


async def test_a_bomb_over_loopback_is_refused_within_the_cap(bomb_url: str) -> None:
    """Over a real socket too, a gzip bomb is refused holding about the cap in memory."""
    client = FluxClient(
        Dataoorts(api_key=KEY, base_url=f"{bomb_url}/api/v1"), max_retries=0, max_response_bytes=CAP
    )

    async def call() -> None:
        with pytest.raises(InvalidResponseError, match="over the cap"):
            await client.generate("a cat")

    peak = await peak_while(call)()
    await client.aclose()
    record("size_cap.bomb_loopback.gzip", cap_bytes=CAP, peak_bytes=peak)
    assert peak < 1.5 * CAP


async def test_a_nested_bomb_is_refused_too() -> None:
    """gzip inside gzip: each layer is inflated only as far as the cap needs."""
    nested = gzip.compress(gzip_bomb(64 * MiB))
    headers = {"content-type": "image/png", "content-encoding": "gzip, gzip"}
    async with client_over(answering(nested, headers), cap=MiB) as client:
        with pytest.raises(InvalidResponseError, match="over the cap"):
            await client.generate("a cat")


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _envelope(image: bytes) -> bytes:
    import base64
    import json

    return json.dumps({"result": {"image_base64": base64.b64encode(image).decode()}}).encode()


def _raw_deflate(data: bytes) -> bytes:
    squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return squeeze.compress(data) + squeeze.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),  # what some servers send as "deflate"
        ("identity", lambda data: data),
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
        ("deflate, gzip", lambda data: gzip.compress(zlib.compress(data))),
        ("identity, gzip", gzip.compress),
        ("made-up", lambda data: data),  # an unknown coding passes through, as in httpx
    ],
)
@pytest.mark.parametrize("piece", [1, 7, 4096, 10**9])
async def test_compressed_answers_decode_to_the_same_image(
    coding: str, encode: Callable[[bytes], bytes], piece: int
) -> None:
    """Any usual encoding, arriving in any chunking, decodes to exactly the image sent."""
    body = encode(_envelope(PNG))
    headers = {"content-type": "application/json", "content-encoding": coding}
    async with client_over(answering(_split(body, piece), headers)) as client:
        image = await client.generate("a cat")
    assert image.data == PNG


async def test_a_body_larger_than_the_inflate_step_decodes_whole() -> None:
    """An image bigger than one inflate step (64 KiB) comes through gzip byte for byte."""
    big = render_png("big", seed=1, steps=4, width=64, height=64, target_bytes=300_000)
    body = gzip.compress(_envelope(big))
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with client_over(answering(_split(body, 65_536), headers)) as client:
        image = await client.generate("a cat")
    assert image.data == big


async def test_a_body_just_under_the_cap_is_kept_and_one_byte_over_is_refused() -> None:
    """The cap counts decoded bytes exactly: equal to the cap passes, one more is refused."""
    body = _envelope(PNG)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with client_over(answering(gzip.compress(body), headers), cap=len(body)) as client:
        assert (await client.generate("a cat")).data == PNG
    async with client_over(answering(gzip.compress(body), headers), cap=len(body) - 1) as client:
        with pytest.raises(InvalidResponseError, match="over the cap"):
            await client.generate("a cat")


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("br", b"\x1b\x00\x00", "br-encoded"),
        ("zstd", b"\x28\xb5\x2f\xfd", "zstd-encoded"),
        ("gzip", b"not gzip at all", "could not be decoded"),
        ("gzip, " * 6 + "gzip", gzip.compress(b"x"), "7 layers"),
    ],
)
async def test_bodies_that_cannot_be_decoded_safely_are_refused(
    coding: str, body: bytes, message: str
) -> None:
    """br, zstd, corrupt gzip and absurd layering are refused with a clear FluxError."""
    headers = {"content-type": "image/png", "content-encoding": coding}
    async with client_over(answering(body, headers)) as client:
        with pytest.raises(InvalidResponseError, match=message):
            await client.generate("a cat")


async def test_trailing_bytes_after_a_gzip_member_are_ignored_as_httpx_does() -> None:
    """Junk after the end of a gzip stream does not spoil the image before it."""
    body = gzip.compress(_envelope(PNG)) + b"\x00junk"
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with client_over(answering(body, headers)) as client:
        assert (await client.generate("a cat")).data == PNG


async def test_a_compressed_error_body_is_quoted_and_cut_short() -> None:
    """A gzip error page is decoded for its message, reading only the first 64 KiB."""
    page = b'{"errors": [{"code": 3000, "message": "overloaded"}]}' + b" " * (10 * MiB)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    async with client_over(answering(gzip.compress(page), headers, status=503)) as client:
        with pytest.raises(ServerError) as caught:
            await client.generate("a cat")
    assert "HTTP 503" in str(caught.value)


async def test_only_decodable_encodings_are_asked_for() -> None:
    """The request never offers br or zstd, even from an http client configured to."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)

    for offered in ["gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.5", "br", "identity"]:
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(handler), headers={"accept-encoding": offered}
        )
        async with http, FluxClient(Dataoorts(api_key=KEY), http_client=http) as client:
            image: GeneratedImage = await client.generate("a cat")
        assert image.data == PNG
    assert seen == ["gzip, deflate", "gzip;q=0.5", "identity", "identity"]
