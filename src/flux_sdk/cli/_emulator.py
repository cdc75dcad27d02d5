"""``flux-sdk emulator``: serve the provider emulator over HTTP on loopback."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from flux_sdk.providers import is_loopback

from ._console import note

if TYPE_CHECKING:
    from flux_sdk.emulator import Capacity

__all__ = ["run_emulator"]

# Option -> Capacity field, for the options that only mean something with --replicas.
_CAPACITY = {
    "service_time": "median",
    "service_spread": "spread",
    "queue": "queue",
    "overflow": "overflow",
    "tail": "tail",
    "tail_factor": "tail_factor",
    "service_seed": "seed",
    "capacity_hosts": None,
}


def run_emulator(args: argparse.Namespace) -> int:
    from flux_sdk.emulator import (
        DEFAULT_API_KEY,
        Capacity,
        EmulatorApp,
        FaultPlan,
        QueueTiming,
        ReplicateQueue,
        run,
    )
    from flux_sdk.emulator._stats import STATS_PATH

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
        capacity = _capacity(args)
        queue = QueueTiming(in_queue=args.fal_in_queue, in_progress=args.fal_in_progress)
        replicate = ReplicateQueue(
            starting=args.replicate_starting,
            processing=args.replicate_processing,
            run_seconds=args.replicate_run_seconds,
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
        capacity=capacity,
        queue=queue,
        replicate=replicate,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{args.port}"
    note(
        f"flux-sdk emulator on {base} (API key {key!r})\n"
        f"  Dataoorts: DATAOORTS_BASE_URL={base}/api/v1\n"
        f"  Baseten:   BASETEN_BASE_URL={base}\n"
        f"  Together:  TOGETHER_BASE_URL={base}/together\n"
        f"  OpenAI-style images: OPENAI_IMAGES_BASE_URL={base}/v1\n"
        f"  fal:       FAL_BASE_URL={base}\n"
        f"  Replicate: Replicate(base_url={base!r})\n"
        f"  Counters:  {base}{STATS_PATH}"
    )
    if capacity is not None:
        hosts = "every host" if isinstance(capacity, Capacity) else ", ".join(capacity)
        limits = next(iter(app.load.values())).capacity
        note(f"  Capacity of {hosts}, each its own: {_describe(limits)}")
    try:
        run(app, host=args.host, port=args.port)
    except (RuntimeError, ValueError) as exc:
        note(f"flux-sdk: error: {exc}")
        return 1
    return 0


def _capacity(args: argparse.Namespace) -> Capacity | dict[str, Capacity] | None:
    """The ``Capacity`` the options ask for, for every host or those named; None if off."""
    from flux_sdk.emulator import Capacity

    given = {option: getattr(args, option) for option in _CAPACITY}
    given = {option: value for option, value in given.items() if value is not None}
    if args.replicas is None:
        if given:
            flag = "--" + next(iter(given)).replace("_", "-")
            raise ValueError(f"{flag} needs --replicas N: the capacity model is off without it")
        return None
    fields: dict[str, Any] = {}
    for option, value in given.items():
        field = _CAPACITY[option]
        if field is not None:
            fields[field] = value
    capacity = Capacity(replicas=args.replicas, retry_after=args.retry_after, **fields)
    if args.capacity_hosts is None:
        return capacity
    return dict.fromkeys(args.capacity_hosts, capacity)


def _describe(capacity: Capacity) -> str:
    """One line saying what the host can serve, for the start banner."""
    spread = f" (lognormal sigma {capacity.spread:g})" if capacity.spread else ""
    tail = f", {capacity.tail:.0%} take {capacity.tail_factor:g}x" if capacity.tail else ""
    beyond = "then 429" if capacity.overflow == "429" else "then waits anyway"
    return (
        f"{capacity.replicas} replicas, service time {capacity.median:g} s{spread}{tail}, "
        f"queue {capacity.queue}, {beyond}"
    )
