"""``flux-sdk emulator``: serve the provider emulator over HTTP on loopback."""

from __future__ import annotations

import argparse

from flux_sdk.providers import is_loopback

from ._console import note

__all__ = ["run_emulator"]


def run_emulator(args: argparse.Namespace) -> int:
    from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, FaultPlan, run

    if not is_loopback(args.host):
        note(
            f"flux-sdk: error: the emulator only listens on loopback, not {args.host!r}: "
            "its API key is public"
        )
        return 1
    key = args.api_key or DEFAULT_API_KEY
    try:
        plan = FaultPlan(
            args.fault_script,
            rate=args.fault_rate,
            seed=args.fault_seed,
            retry_after=args.retry_after,
            stall_seconds=args.stall_seconds,
            slow_interval=args.slow_interval,
            slow_chunk=args.slow_chunk,
            **({"kinds": args.fault_kinds} if args.fault_kinds else {}),
        )
    except ValueError as exc:  # the parser checked each value; this is a safety net
        note(f"flux-sdk: error: {exc}")
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
    note(
        f"flux-sdk emulator on {base} (API key {key!r})\n"
        f"  Dataoorts: DATAOORTS_BASE_URL={base}/api/v1\n"
        f"  Baseten:   BASETEN_BASE_URL={base}\n"
        f"  Together:  TOGETHER_BASE_URL={base}/together/v1\n"
        f"  OpenAI-style images: OPENAI_IMAGES_BASE_URL={base}/v1"
    )
    try:
        run(app, host=args.host, port=args.port)
    except (RuntimeError, ValueError) as exc:
        note(f"flux-sdk: error: {exc}")
        return 1
    return 0
