"""The ``flux-sdk`` command: generate an image, or serve the emulator."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import FluxClient

PROVIDERS = ("auto", "dataoorts", "baseten", "emulator")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _one_line_warnings()
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        print("flux-sdk: interrupted", file=sys.stderr)
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="flux-sdk", description="Generate FLUX.1 [schnell] images from the command line."
    )
    parser.add_argument("--version", action="version", version=f"flux-sdk {__version__}")
    commands = parser.add_subparsers(title="commands", required=True)

    gen = commands.add_parser(
        "generate",
        help="generate one image",
        description=(
            "Generate one image and print where it was saved. With --provider auto (the "
            "default) the first provider with a key in the environment is used "
            "(DATAOORTS_API_KEY, then BASETEN_API_KEY), else the bundled emulator."
        ),
    )
    gen.add_argument("prompt", help="what to draw")
    gen.add_argument("--provider", choices=PROVIDERS, default="auto")
    gen.add_argument(
        "--out",
        metavar="FILE",
        help="where to save; the right extension is added if missing "
        "(default: a name made from the prompt)",
    )
    gen.add_argument("--seed", type=int, metavar="N")
    gen.add_argument("--steps", type=int, metavar="N")
    gen.add_argument("--width", type=int, metavar="N", help="Baseten only")
    gen.add_argument("--height", type=int, metavar="N", help="Baseten only")
    gen.add_argument("--base-url", metavar="URL", help="override the provider's base URL")
    gen.add_argument("--model-id", metavar="ID", help="Baseten model id (or BASETEN_MODEL_ID)")
    gen.add_argument("--timeout", type=float, metavar="SECONDS", help="per attempt")
    gen.set_defaults(run=_generate)

    batch = commands.add_parser(
        "batch",
        help="generate an image for every prompt in a file",
        description=(
            "Generate an image for every prompt in PROMPTS into DIR, with a manifest.jsonl "
            "of what was made. Running the same command again finishes only what is "
            "missing or failed. Exit code 0 only when every item succeeded."
        ),
    )
    batch.add_argument(
        "prompts",
        metavar="PROMPTS",
        help="a text file with one prompt a line, a JSONL file of request objects "
        '({"prompt": ..., "seed": ...}), or - for standard input',
    )
    batch.add_argument("--out-dir", required=True, metavar="DIR", help="where images go")
    batch.add_argument("--provider", choices=PROVIDERS, default="auto")
    batch.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="requests in flight (default 16)"
    )
    batch.add_argument(
        "--seed", type=int, metavar="N", help="item i gets seed N+i, unless it sets its own"
    )
    batch.add_argument("--steps", type=int, metavar="N", help="unless an item sets its own")
    batch.add_argument(
        "--max-retries", type=int, default=6, metavar="N", help="per item (default 6)"
    )
    batch.add_argument("--base-url", metavar="URL", help="override the provider's base URL")
    batch.add_argument("--model-id", metavar="ID", help="Baseten model id (or BASETEN_MODEL_ID)")
    batch.add_argument("--timeout", type=float, metavar="SECONDS", help="per attempt")
    batch.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal, periodic lines otherwise (default auto)",
    )
    batch.set_defaults(run=_batch)

    emu = commands.add_parser(
        "emulator",
        help="serve the provider emulator on loopback",
        description="Serve the emulator (both providers' wire formats, and an OpenAI-style "
        "/v1/images/generations for benchmarks) with uvicorn.",
    )
    emu.add_argument("--host", default="127.0.0.1", help="a loopback address (default %(default)s)")
    emu.add_argument("--port", type=int, default=8787)
    emu.add_argument("--api-key", default=None, help="the key it accepts (default emulator-key)")
    emu.add_argument("--dataoorts-response", choices=("json", "raw"), default="json")
    emu.add_argument("--image-bytes", type=int, metavar="N", help="pad every image to N bytes")
    emu.add_argument(
        "--default-size",
        type=int,
        default=1024,
        metavar="N",
        help="side of images with no size asked (Dataoorts always) (default %(default)s)",
    )
    faults = emu.add_argument_group(
        "faults", "make the emulator misbehave like a real provider (see docs/emulator.md)"
    )
    faults.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a request gets a fault (default 0)",
    )
    faults.add_argument(
        "--fault-kinds",
        metavar="K,K",
        help="kinds to draw from, e.g. 429,503,reset "
        "(default: all of 429 500 502 503 reset truncated stall slow "
        "invalid_json invalid_base64 html)",
    )
    faults.add_argument(
        "--fault-script",
        metavar="K,K",
        help="faults for the first requests in order; 'ok' answers normally",
    )
    faults.add_argument("--fault-seed", type=int, default=0, metavar="N")
    faults.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS")
    faults.add_argument("--stall-seconds", type=float, default=30.0, metavar="SECONDS")
    faults.add_argument("--slow-interval", type=float, default=1.0, metavar="SECONDS")
    faults.add_argument("--slow-chunk", type=int, default=1, metavar="BYTES")
    emu.set_defaults(run=_emulator)
    return parser


def _one_line_warnings() -> None:
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"flux-sdk: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def _generate(args: argparse.Namespace) -> int:
    import anyio

    from ._errors import FluxError

    try:
        path = anyio.run(_generate_async, args)
    except FluxError as exc:
        print(f"flux-sdk: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the image could not be written
        print(f"flux-sdk: error: could not save the image: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


async def _generate_async(args: argparse.Namespace) -> Path:
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(await _client(args, stack))
        image = await client.generate(
            args.prompt, seed=args.seed, steps=args.steps, width=args.width, height=args.height
        )
    from ._batch import slug

    return await image.asave(args.out or slug(args.prompt, limit=48))


async def _client(
    args: argparse.Namespace, stack: contextlib.AsyncExitStack, **options: Any
) -> FluxClient:
    from ._client import DEFAULT_TIMEOUT, FluxClient
    from .providers import Baseten, Dataoorts

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    name = args.provider
    if name == "auto":
        if os.environ.get("DATAOORTS_API_KEY"):
            name = "dataoorts"
        elif os.environ.get("BASETEN_API_KEY"):
            name = "baseten"
        else:
            print("flux-sdk: no API key in the environment; using the emulator", file=sys.stderr)
            name = "emulator"
    if name == "dataoorts":
        return FluxClient(Dataoorts(base_url=args.base_url), timeout=timeout, **options)
    if name == "baseten":
        baseten = Baseten(model_id=args.model_id, base_url=args.base_url)
        return FluxClient(baseten, timeout=timeout, **options)
    import httpx

    from .emulator import DEFAULT_API_KEY, EmulatorApp

    # The whole stack in process: the real client and provider, an ASGI transport in
    # place of a socket, and the emulator answering as Dataoorts would.
    transport = httpx.ASGITransport(app=EmulatorApp())
    http = await stack.enter_async_context(httpx.AsyncClient(transport=transport))
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1/api/v1")
    return FluxClient(provider, http_client=http, timeout=timeout, **options)


def _batch(args: argparse.Namespace) -> int:
    from ._cli_batch import run_batch

    return run_batch(args)


def _emulator(args: argparse.Namespace) -> int:
    from .emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, run
    from .providers import is_loopback as _is_loopback

    if args.default_size < 1:
        print("flux-sdk: error: --default-size must be at least 1", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(
            f"flux-sdk: error: the emulator only listens on loopback, not {args.host!r}: "
            "its API key is public",
            file=sys.stderr,
        )
        return 1
    key = args.api_key or DEFAULT_API_KEY
    try:
        kinds = [Fault(k) for k in args.fault_kinds.split(",")] if args.fault_kinds else None
        script = [
            None if k == "ok" else Fault(k) for k in (args.fault_script or "").split(",") if k
        ]
        plan = FaultPlan(
            script,
            rate=args.fault_rate,
            seed=args.fault_seed,
            retry_after=args.retry_after,
            stall_seconds=args.stall_seconds,
            slow_interval=args.slow_interval,
            slow_chunk=args.slow_chunk,
            **({"kinds": kinds} if kinds else {}),
        )
    except ValueError as exc:
        print(f"flux-sdk: error: {exc}", file=sys.stderr)
        return 2
    app = EmulatorApp(
        api_key=key,
        dataoorts_response=args.dataoorts_response,
        image_bytes=args.image_bytes,
        default_size=args.default_size,
        faults=plan,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{args.port}"
    print(
        f"flux-sdk emulator on {base} (API key {key!r})\n"
        f"  Dataoorts: DATAOORTS_BASE_URL={base}/api/v1\n"
        f"  Baseten:   BASETEN_BASE_URL={base}\n"
        f"  OpenAI-style images (benchmarks): OPENAI_BASE_URL={base}/v1",
        file=sys.stderr,
    )
    try:
        run(app, host=args.host, port=args.port)
    except (RuntimeError, ValueError) as exc:
        print(f"flux-sdk: error: {exc}", file=sys.stderr)
        return 1
    return 0
