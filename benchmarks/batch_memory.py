"""Peak RSS of a batch saved to disk, for two batch sizes (issue 4).

The emulator runs in its own process on a loopback port, answering every request with
an image padded to IMAGE_BYTES; each batch runs in a fresh client process through
``generate_many(save_dir=..., keep_images=False)`` at concurrency 32 and reports its
own peak RSS (``ru_maxrss``). Goal: peak <= 50 MB + 32 x 2.5 x image size, and the
same for both sizes.

    python benchmarks/batch_memory.py [SIZE ...]        (default: 500 2000)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

IMAGE_BYTES = 1_500_000
CONCURRENCY = 32
MB = 1_000_000


def child(url: str, count: int, folder: str) -> None:
    """Run one batch and print what it cost, as JSON."""
    import anyio

    from flux_sdk import Dataoorts, FluxClient, FluxError
    from flux_sdk.emulator import DEFAULT_API_KEY

    async def batch() -> tuple[int, int]:
        provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{url}/api/v1")
        async with FluxClient(provider, max_concurrency=CONCURRENCY) as client:
            await client.generate("warm up the imports and one connection")
            start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            prompts = [f"a lighthouse on a cliff, study {i}" for i in range(count)]
            results = await client.generate_many(prompts, save_dir=folder, keep_images=False)
        return start_rss, sum(isinstance(r, FluxError) for r in results)

    start = time.perf_counter()
    before, failed = anyio.run(batch)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "images": count,
                "failed": failed,
                "seconds": seconds,
                "rss_before_mb": before * 1024 / MB,
                "peak_rss_mb": peak * 1024 / MB,
            }
        )
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/", timeout=1)  # noqa: S310 - loopback only
        except urllib.error.HTTPError:
            return  # it answered (404 for /): it is up
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError("the emulator did not start")


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [500, 2000]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flux_sdk",
            "emulator",
            "--port",
            str(port),
            "--image-bytes",
            str(IMAGE_BYTES),
            "--default-size",
            "64",
        ],
        stderr=subprocess.DEVNULL,
    )
    goal = 50 + CONCURRENCY * 2.5 * IMAGE_BYTES / MB
    rows = []
    try:
        wait_until_up(url)
        for count in sizes:
            folder = tempfile.mkdtemp(prefix="flux-batch-")
            try:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", url, str(count), folder],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                files = len([n for n in os.listdir(folder) if n.endswith(".png")])
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            row = json.loads(out.stdout)
            row["files"] = files
            rows.append(row)
    finally:
        server.terminate()
        server.wait()
    print(f"image {IMAGE_BYTES / MB:.1f} MB, concurrency {CONCURRENCY}, goal {goal:.0f} MB")
    for row in rows:
        print(
            f"{row['images']:>5} images: peak RSS {row['peak_rss_mb']:.1f} MB "
            f"(after warm-up {row['rss_before_mb']:.1f} MB), {row['files']} files, "
            f"{row['failed']} failed, {row['seconds']:.1f} s, "
            f"{row['images'] / row['seconds']:.1f} images/s; "
            f"{row['peak_rss_mb'] / goal:.2f} x goal"
        )
    if len(rows) > 1:
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"peak RSS, largest batch / smallest: {ratio:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
