"""Hostile answers that must not be taken for success or paid for twice.

- An image cut off in transit (no Content-Length) is a retryable InvalidResponseError,
  never a saved success, and a resumed batch does not trust a half image on disk.
- A server that answers 413 before reading a large body and closes is not sent the
  body again and again.
- Image bytes labelled application/json are an image, not bad JSON.
- Backoff after thousands of retries does not overflow.
- Cancelled rate-limit waiters give their slots back.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
import zlib
from pathlib import Path

import anyio
import httpx
import pytest
from PIL import Image

from flux_sdk import (
    DEFAULT_TIMEOUT,
    AiohttpTransport,
    BadRequestError,
    Baseten,
    Dataoorts,
    FluxClient,
    FluxError,
    GeneratedImage,
    GenerateRequest,
    InvalidResponseError,
    RateLimit,
    Retry,
    RetryBudget,
)
from flux_sdk._base._imagecheck import image_problem

from ._hostile import hostile_server

KEY = "sk-hostile-input-5c1e"
REQUEST = GenerateRequest(prompt="a red fox")


def _encoded(fmt: str, size: int = 64) -> bytes:
    # Noise, so the formats have real entropy-coded data to cut into.
    noise = Image.frombytes("RGB", (size, size), bytes(range(256)) * (size * size * 3 // 256))
    buffer = io.BytesIO()
    noise.save(buffer, format=fmt)
    return buffer.getvalue()


PNG, JPEG, WEBP = _encoded("PNG"), _encoded("JPEG"), _encoded("WEBP")
TYPES = {"png": (PNG, "image/png"), "jpeg": (JPEG, "image/jpeg"), "webp": (WEBP, "image/webp")}


# Whole images, one format at a time


@pytest.mark.parametrize("kind", list(TYPES))
def test_a_whole_image_passes(kind: str) -> None:
    data, media = TYPES[kind]
    assert image_problem(data, media) is None
    assert GeneratedImage.from_data(data, provider="t", request=REQUEST).media_type == media


@pytest.mark.parametrize("kind", list(TYPES))
def test_an_image_cut_anywhere_is_refused(kind: str) -> None:
    """Every cut after the magic bytes (every 7th byte, and the last 16) is refused."""
    data, media = TYPES[kind]
    cuts = [*range(16, len(data), 7), *range(len(data) - 16, len(data))]
    for cut in cuts:
        assert image_problem(data[:cut], media) is not None, cut
        with pytest.raises(InvalidResponseError, match="incomplete") as caught:
            GeneratedImage.from_data(data[:cut], provider="t", request=REQUEST)
        assert caught.value.retryable


@pytest.mark.parametrize("kind", list(TYPES))
def test_trailing_garbage_is_refused(kind: str) -> None:
    data, media = TYPES[kind]
    tails = [b"\x00", b"<html>error</html>", b"\xff\xd9\x00"]
    if kind != "jpeg":  # a JPEG appended to a JPEG is not caught (see _imagecheck)
        tails.append(data)
    for tail in tails:
        assert image_problem(data + tail, media) is not None


def test_png_chunks_are_walked_to_iend() -> None:
    # A chunk whose length runs past the end, and a fake IEND with a wrong CRC.
    ihdr_end = 8 + 12 + 13
    overlong = PNG[:ihdr_end] + struct.pack(">I", 10**6) + b"IDAT" + b"\x00" * 40
    assert "cut off" in str(image_problem(overlong, "image/png"))
    bad_crc = PNG[:-4] + b"\x00\x00\x00\x00"
    assert "IEND" in str(image_problem(bad_crc, "image/png"))
    no_iend = PNG[:-12]
    assert image_problem(no_iend, "image/png") == "it ends before its IEND chunk"
    assert image_problem(PNG[:-12] + _chunk(b"tEXt", b"x") + PNG[-12:], "image/png") is None


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def test_jpeg_segments_are_walked_and_it_must_end_with_eoi() -> None:
    assert image_problem(JPEG[:-2], "image/jpeg") is not None  # no EOI
    # A cut inside the headers that happens to end in FF D9 is still refused.
    assert image_problem(JPEG[:30] + b"\xff\xd9", "image/jpeg") is not None
    assert image_problem(b"\xff\xd8\xff\xd9", "image/jpeg") is not None  # no image data


def test_webp_riff_size_must_match() -> None:
    too_big = WEBP[:4] + struct.pack("<I", len(WEBP)) + WEBP[8:]
    too_small = WEBP[:4] + struct.pack("<I", len(WEBP) - 20) + WEBP[8:]
    assert "declares" in str(image_problem(too_big, "image/webp"))
    assert "follow" in str(image_problem(too_small, "image/webp"))
    assert image_problem(WEBP[:14], "image/webp") is not None


# Over loopback: a 200 image/png without Content-Length, cut half way


def _cut_png(head: bytes) -> bytes:
    # No Content-Length and Connection: close: the body ends where the server stops.
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
        + PNG[: len(PNG) // 2]
    )


async def _no_sleep(seconds: float) -> None:
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_a_cut_image_is_retried_and_never_saved(
    transport: str, anyio_backend: str, tmp_path: Path
) -> None:
    if transport == "aiohttp" and anyio_backend != "asyncio":
        pytest.skip("AiohttpTransport runs on asyncio only")
    http = (
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
        if transport == "aiohttp"
        else None
    )
    async with hostile_server(_cut_png) as server:
        async with FluxClient(
            Dataoorts(KEY, base_url=server.url),
            max_retries=Retry(2, sleep=_no_sleep),
            http_client=http,
        ) as client:
            results = await client.generate_many(["a red fox"], save_dir=tmp_path)
        if http is not None:
            await http.aclose()
    error = results[0]
    assert isinstance(error, InvalidResponseError)
    assert "incomplete PNG" in str(error)
    assert error.attempts == len(server.heads) == 3  # retried, as a cut body should be
    assert not await anyio.Path(tmp_path).joinpath("000000-a-red-fox.png").exists()
    text = await anyio.Path(tmp_path, "manifest.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["error"]["type"] for line in lines] == ["InvalidResponseError"]


@pytest.mark.anyio
async def test_a_resumed_batch_does_not_trust_a_half_image(
    anyio_backend: str, tmp_path: Path
) -> None:
    """A half PNG with a manifest line whose hash matches (an older version saved it)
    runs again instead of being skipped."""
    whole = PNG

    def answer(head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s" % (
            len(whole),
            whole,
        )

    saved = anyio.Path(tmp_path, "000000-a-red-fox.png")
    manifest = anyio.Path(tmp_path, "manifest.jsonl")
    half = whole[: len(whole) // 2]
    async with (
        hostile_server(answer) as server,
        FluxClient(Dataoorts(KEY, base_url=server.url)) as client,
    ):
        first = await client.generate_many(["a red fox"], save_dir=tmp_path)
        assert not isinstance(first[0], FluxError)
        await saved.write_bytes(half)
        line = json.loads(await manifest.read_text())
        line.update(bytes=len(half), sha256=hashlib.sha256(half).hexdigest())
        await manifest.write_text(json.dumps(line) + "\n")
        again = await client.generate_many(["a red fox"], save_dir=tmp_path)
    assert len(server.heads) == 2  # generated again, not skipped
    image = again[0]
    assert isinstance(image, GeneratedImage)
    assert image.data == whole
    assert await saved.read_bytes() == whole


# A 413 answered before the body was read


def _too_large(head: bytes) -> bytes:
    body = b'{"error": "request entity too large"}'
    return (
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_a_413_before_the_body_is_read_is_not_sent_again(
    transport: str, anyio_backend: str
) -> None:
    """The status is reported where it can be read; the body is sent once either way."""
    if transport == "aiohttp" and anyio_backend != "asyncio":
        pytest.skip("AiohttpTransport runs on asyncio only")
    http = (
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
        if transport == "aiohttp"
        else None
    )
    big = GenerateRequest(prompt="a red fox", extra_body={"image": "A" * (8 << 20)})
    async with hostile_server(_too_large, read_body=False) as server:
        async with FluxClient(
            Dataoorts(KEY, base_url=server.url),
            max_retries=Retry(3, sleep=_no_sleep),
            http_client=http,
        ) as client:
            with pytest.raises(FluxError) as caught:
                await client.generate(big)
        if http is not None:
            await http.aclose()
    error = caught.value
    assert len(server.heads) == 1
    assert error.attempts == 1
    assert not error.retryable
    # Read (trio, aiohttp) or lost with the connection (httpx on asyncio), the same error.
    assert isinstance(error, BadRequestError)
    assert error.status_code == 413
    assert error.billed == "no"
    assert "too large for dataoorts" in str(error)


# Image bytes labelled application/json


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["dataoorts", "baseten"])
@pytest.mark.parametrize("label", ["application/json", "text/plain", ""])
async def test_image_bytes_under_a_wrong_label_are_an_image(
    provider: str, label: str, anyio_backend: str
) -> None:
    def answer(head: bytes) -> bytes:
        kind = f"Content-Type: {label}\r\n".encode() if label else b""
        return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (kind, len(PNG), PNG)

    async with hostile_server(answer) as server:
        host = (
            Dataoorts(KEY, base_url=server.url)
            if provider == "dataoorts"
            else Baseten(KEY, base_url=server.url)
        )
        async with FluxClient(host, max_retries=0) as client:
            image = await client.generate("a red fox")
    assert image.data == PNG
    assert image.media_type == "image/png"


# Backoff far past where 2 ** n overflows


@pytest.mark.anyio
async def test_two_thousand_retries_back_off_without_overflow(anyio_backend: str) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    calls = 0

    def unavailable(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503 if calls <= 2000 else 200, content=PNG if calls > 2000 else b"")

    retry = Retry(2000, max_backoff=20.0, budget=RetryBudget(capacity=1e9), sleep=sleep)
    http = httpx.AsyncClient(transport=httpx.MockTransport(unavailable))
    async with (
        http,
        FluxClient(
            Dataoorts(KEY, base_url="http://127.0.0.1:9"), max_retries=retry, http_client=http
        ) as client,
    ):
        image = await client.generate("a red fox")
    assert image.attempts == 2001
    assert len(waits) == 2000
    assert all(0 <= wait <= 20.0 and math.isfinite(wait) for wait in waits)
    assert 0 <= retry.delay(10**6) <= 20.0


# Cancelled rate-limit waiters give their slots back


@pytest.mark.anyio
async def test_cancelled_waiters_give_their_slots_back(anyio_backend: str) -> None:
    """50 waiters cancelled (by a deadline) before their slots: the next call waits
    at most one interval, not fifty."""
    now = 100.0
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await anyio.sleep_forever()

    limit = RateLimit(2.0, clock=lambda: now, sleep=sleep)
    interval = 1 / limit.rate
    assert limit.reserve() == 0  # the free slot, taken

    async def wait_for_slot() -> None:
        async def send(call: object) -> httpx.Response:
            return httpx.Response(200)

        await limit(None, send)  # type: ignore[arg-type]

    with anyio.move_on_after(1):  # real time never passes here: the sleeps never return
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(wait_for_slot)
            await anyio.wait_all_tasks_blocked()
            assert len(slept) == 50
            assert max(slept) == pytest.approx(50 * interval)
            group.cancel_scope.cancel()
    assert limit.reserve() <= interval
