"""One client, one workload, one concurrency: the measurement bench.py runs in a fresh process.

A fresh interpreter per measurement keeps each peak RSS to one client and one workload,
and keeps one client's imports and caches out of another's figures. The protocol with
the parent is two lines: after the warm-up this prints ``warm`` and waits for a line on
standard input (so the parent can read the server's CPU clock at the same moment), then
it runs the measured requests and prints one JSON object.

    python benchmarks/_worker.py '{"client": "httpx", "url": "http://127.0.0.1:8787", ...}'

Every client makes the same requests (the prompt cycles through eight, so the emulator
draws each image once) and must return the same image bytes; a wrong length stops the run.
With ``write`` set, each image goes to a file in a temporary directory, by the same plain
``write_bytes`` for every client so that only the clients differ. Names repeat every 32
images: rewriting a file drops its dirty pages, which keeps disk writeback (kernel CPU
outside every client) small.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

API_KEY = "emulator-key"
DATAOORTS_MODEL = "black-forest-labs/flux-1-schnell"
PROMPTS = [f"a lighthouse at dawn, study {k}" for k in range(8)]
FILE_NAMES = 32

Generate = Callable[[str], Awaitable[bytes]]


async def raw_httpx(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    import httpx

    # The pool sized to the concurrency, as a careful user would; httpx's default of 100
    # connections would make requests queue for the pool at 256.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=300))
    endpoint = f"{url}/api/v1"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def generate(prompt: str) -> bytes:
        body = {"model": DATAOORTS_MODEL, "data": {"prompt": prompt}}
        response = await client.post(endpoint, json=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        return base64.b64decode(json.loads(response.content)["result"]["image_base64"])

    return generate


async def raw_aiohttp(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    session = await stack.enter_async_context(
        aiohttp.ClientSession(connector=connector, timeout=timeout)
    )
    endpoint = f"{url}/api/v1"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def generate(prompt: str) -> bytes:
        body = {"model": DATAOORTS_MODEL, "data": {"prompt": prompt}}
        async with session.post(endpoint, json=body, headers=headers) as response:
            content = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {content[:200]!r}")
        return base64.b64decode(json.loads(content)["result"]["image_base64"])

    return generate


async def openai_python(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    from openai import AsyncOpenAI

    # Its defaults otherwise (a pool of 1000 connections, 100 kept alive; 2 retries).
    client = await stack.enter_async_context(AsyncOpenAI(base_url=f"{url}/v1", api_key=API_KEY))

    async def generate(prompt: str) -> bytes:
        answer = await client.images.generate(
            model="flux-1-schnell", prompt=prompt, response_format="b64_json"
        )
        assert answer.data is not None
        b64 = answer.data[0].b64_json
        assert b64 is not None
        return base64.b64decode(b64)

    return generate


async def flux_sdk(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    from flux_sdk import Dataoorts, FluxClient

    provider = Dataoorts(api_key=API_KEY, base_url=f"{url}/api/v1")
    # The default stack: deadline, retry, concurrency limit, all on.
    client = await stack.enter_async_context(FluxClient(provider, max_concurrency=concurrency))

    async def generate(prompt: str) -> bytes:
        return (await client.generate(prompt)).data

    return generate


async def flux_aiohttp(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    import httpx

    from flux_sdk import DEFAULT_TIMEOUT, AiohttpTransport, Dataoorts, FluxClient

    provider = Dataoorts(api_key=API_KEY, base_url=f"{url}/api/v1")
    http = await stack.enter_async_context(
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=DEFAULT_TIMEOUT)
    )
    # The same default stack, with the optional aiohttp transport underneath.
    client = await stack.enter_async_context(
        FluxClient(provider, max_concurrency=concurrency, http_client=http)
    )

    async def generate(prompt: str) -> bytes:
        return (await client.generate(prompt)).data

    return generate


async def floor(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    """The least a client can do in Python: the reference the others are measured against.

    asyncio streams, a pool of keep-alive connections no larger than the concurrency,
    each request written in one write, the body read with one ``readexactly`` of
    Content-Length, parsed by pydantic-core and decoded by pybase64. No timeouts, no
    retries, no checks beyond the status: nothing a real client could leave out.
    """
    return _hand_written(url, stack, careful=False)


async def floor_issue(url: str, concurrency: int, stack: AsyncExitStack) -> Generate:
    """Issue 26's floor: `floor` reading headers line by line and decoding with
    ``validate=True``, as a careful hand-written client."""
    return _hand_written(url, stack, careful=True)


def _hand_written(url: str, stack: AsyncExitStack, *, careful: bool) -> Generate:
    import pybase64
    from pydantic_core import from_json
    from yarl import URL

    parsed = URL(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 80
    head = (
        f"POST /api/v1 HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
    ).encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened: list[asyncio.StreamWriter] = []

    async def close_all() -> None:
        for writer in opened:
            writer.close()

    stack.push_async_callback(close_all)

    async def line(reader: asyncio.StreamReader) -> bytes:
        return await (reader.readline() if careful else reader.readuntil(b"\r\n"))

    async def generate(prompt: str) -> bytes:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, port, limit=2**20)
            opened.append(writer)
        body = json.dumps({"model": DATAOORTS_MODEL, "data": {"prompt": prompt}}).encode()
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await line(reader)
        length = -1
        while (header := await line(reader)) not in (b"\r\n", b""):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise RuntimeError("no Content-Length")
        content = await reader.readexactly(length)
        if status_line[9:12] != b"200":
            raise RuntimeError(f"{status_line!r}: {content[:200]!r}")
        idle.append((reader, writer))
        data = from_json(content)["result"]["image_base64"]
        return pybase64.b64decode(data, validate=careful)

    return generate


CLIENTS: dict[str, Callable[[str, int, AsyncExitStack], Awaitable[Generate]]] = {
    "floor": floor,
    "floor_issue": floor_issue,
    "httpx": raw_httpx,
    "aiohttp": raw_aiohttp,
    "openai": openai_python,
    "flux_sdk": flux_sdk,
    "flux_aiohttp": flux_aiohttp,
    # flux_sdk again, under trio (see `main`): the default stack needs no asyncio.
    "flux_trio": flux_sdk,
}
# Clients that run under trio rather than asyncio.
TRIO_CLIENTS = frozenset({"flux_trio"})


async def run_batch(
    generate: Generate,
    first: int,
    count: int,
    concurrency: int,
    check: Callable[[int, bytes], None],
) -> None:
    """``count`` generations with ``concurrency`` in flight: a pool of workers on a counter."""
    next_index = first
    end = first + count

    async def worker() -> None:
        nonlocal next_index
        while next_index < end:
            index = next_index
            next_index += 1
            check(index, await generate(PROMPTS[index % len(PROMPTS)]))

    # anyio's task group, so that the same loop runs under trio for the trio clients.
    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, count)):
            group.start_soon(worker)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def window(count: int, concurrency: int) -> tuple[int, int]:
    """The completions to measure between: ``concurrency`` in flight the whole time.

    All requests start at once, so every one of them is in flight until completion
    ``count - concurrency``; after that the batch drains. The first completions are
    skipped too, while the pool still opens connections and the tasks are in lockstep.
    Tails are left out because they are not the client's steady cost: httpcore's pool,
    for one, costs more per request the more of its connections are idle, as they are
    while a batch drains.
    """
    high = count - concurrency if count > concurrency else count
    return min(concurrency, high // 4), high


class Clock:
    """CPU time, wall time and resource usage at chosen completions of a batch."""

    def __init__(self, marks: tuple[int, int]) -> None:
        self.marks = marks
        self.completed = 0
        self.readings: dict[int, tuple[float, float, resource.struct_rusage]] = {}
        if 0 in marks:
            self.read()

    def read(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.readings[self.completed] = (time.process_time(), time.perf_counter(), usage)

    def tick(self) -> None:
        self.completed += 1
        if self.completed in self.marks:
            self.read()

    def between(self) -> dict[str, float]:
        (cpu0, wall0, use0), (cpu1, wall1, use1) = (self.readings[m] for m in self.marks)
        return {
            "images": self.marks[1] - self.marks[0],
            "cpu": cpu1 - cpu0,
            "wall": wall1 - wall0,
            "user": use1.ru_utime - use0.ru_utime,
            "system": use1.ru_stime - use0.ru_stime,
            # Minor page faults: fresh multi-megabyte buffers cost about 1 ms per MB on a VM.
            "minor_faults": use1.ru_minflt - use0.ru_minflt,
        }


async def measure(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency: int = spec["concurrency"]
    image_bytes: int = spec["image_bytes"]
    directory = Path(tempfile.mkdtemp(prefix="flux-bench-")) if spec["write"] else None
    clock: Clock | None = None

    def check(index: int, image: bytes) -> None:
        if len(image) != image_bytes or not image.startswith(b"\x89PNG"):
            raise RuntimeError(f"{spec['client']}: image {index} is wrong ({len(image)} bytes)")
        if directory is not None:
            (directory / f"{index % FILE_NAMES}.png").write_bytes(image)
        if clock is not None:
            clock.tick()

    async with AsyncExitStack() as stack:
        generate = await CLIENTS[spec["client"]](spec["url"], concurrency, stack)
        rss_ready = rss_kib()
        # Warm-up: open the pool's connections and fill every lazy cache, unmeasured.
        await run_batch(generate, 0, spec["warmup"], concurrency, check)
        gc.collect()
        print("warm", flush=True)
        if spec.get("rounds"):
            await rounds(generate, spec, check)
            return {}
        sys.stdin.readline()  # the parent reads the server's CPU clock, then says go
        clock = Clock(window(spec["count"], concurrency))
        await run_batch(generate, spec["warmup"], spec["count"], concurrency, check)
    if directory is not None:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    return {
        **clock.between(),
        "count": spec["count"],
        "rss_ready_kib": rss_ready,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


async def rounds(
    generate: Generate, spec: dict[str, Any], check: Callable[[int, bytes], None]
) -> None:
    """Block after block in this warm process, each on a line from the parent (``go`` and
    how many images): all of a block's images count, its ramp and drain included, the
    same for every client."""
    first = spec["warmup"]
    while (line := sys.stdin.readline().split())[:1] == ["go"]:
        count = int(line[1]) if len(line) > 1 else spec["count"]
        start = resource.getrusage(resource.RUSAGE_SELF)
        cpu, wall = time.process_time(), time.perf_counter()
        await run_batch(generate, first, count, spec["concurrency"], check)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        end = resource.getrusage(resource.RUSAGE_SELF)
        first += count
        faults = end.ru_minflt - start.ru_minflt
        print(json.dumps({"cpu": cpu, "wall": wall, "minor_faults": faults}), flush=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    backend = "trio" if spec["client"] in TRIO_CLIENTS else "asyncio"
    print(json.dumps(anyio.run(measure, spec, backend=backend)), flush=True)


if __name__ == "__main__":
    main()
