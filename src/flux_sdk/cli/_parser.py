"""The ``flux-sdk`` command line: every command and option, each value checked as it is
parsed, so a bad one exits with 2 and one line naming the option before anything is sent.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ._shard import add_shard_option

if TYPE_CHECKING:
    from typing import TypeAlias

    _Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"

__all__ = ["build_parser", "provider_choices"]

_FAULT_KINDS = "429 500 502 503 reset truncated stall slow invalid_json invalid_base64 html"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` to ``high`` (None: no bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if low is not None and high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high} (got {value})")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} (got {value})")
        return value

    return parse


def usd(text: str) -> float:
    """A finite amount of USD, zero or more."""
    try:
        value = float(text.removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount of USD, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more USD (got {text!r})")
    return value


def seconds(*, zero: bool = False) -> Callable[[str], float]:
    """A parser of a finite number of seconds, above zero (or at least zero)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            least = "zero or more" if zero else "a positive number of"
            raise argparse.ArgumentTypeError(f"must be {least} seconds (got {text!r})")
        return value

    return parse


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (got {text!r})")
    return value


def at_least(low: float) -> Callable[[str], float]:
    """A parser of a finite number from ``low`` up."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"must be a number >= {low:g} (got {text!r})")
        return value

    return parse


def host_names(text: str) -> list[str]:
    """Comma-separated names of the emulator's hosts."""
    from flux_sdk.emulator._app import HOSTS

    known = [host.name for host in HOSTS]
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if name not in known:
            raise argparse.ArgumentTypeError(
                f"unknown host {name!r}; choose from {', '.join(known)}"
            )
    return names


def faults(*, ok: bool) -> Callable[[str], list[object]]:
    """A parser of comma-separated fault names (and ``ok`` for a script)."""

    def parse(text: str) -> list[object]:
        from flux_sdk.emulator import Fault

        kinds: list[object] = []
        for name in (part.strip() for part in text.split(",")):
            if ok and name == "ok":
                kinds.append(None)
                continue
            try:
                kinds.append(Fault(name))
            except ValueError:
                extra = " ok" if ok else ""
                raise argparse.ArgumentTypeError(
                    f"unknown fault {name!r}; choose from {_FAULT_KINDS}{extra}"
                ) from None
        return kinds

    return parse


def provider_choices() -> list[str]:
    """What ``--provider`` takes: ``auto`` and every name in the provider registry (the
    built-in ones and those installed through the ``flux_sdk.providers`` entry points)."""
    from flux_sdk.providers import provider_names

    return ["auto", *provider_names()]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; ``command`` in the result says which ran."""
    from flux_sdk._version import __version__

    choices = provider_choices()
    parser = _Parser(
        prog="flux-sdk",
        description="Generate FLUX.1 [schnell] images from the command line.",
        epilog=f"providers (--provider): {', '.join(choices)}. Installed packages add "
        "more through the 'flux_sdk.providers' entry points; 'auto' picks the first "
        "with a key set, else the emulator.",
    )
    parser.add_argument("--version", action="version", version=f"flux-sdk {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _generate(commands, choices)
    _batch(commands, choices)
    _emulator(commands)
    return parser


def provider_names_arg(choices: list[str]) -> Callable[[str], str]:
    """A parser of ``--provider``: one name, or several joined by commas (routing)."""

    def parse(text: str) -> str:
        names = [name.strip() for name in text.split(",")]
        for name in names:
            if name not in choices:
                raise argparse.ArgumentTypeError(
                    f"invalid choice: {name!r} (choose from {', '.join(choices)})"
                )
        if len(names) > 1 and "auto" in names:
            raise argparse.ArgumentTypeError("'auto' cannot be one of several providers")
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"{text!r} names a provider twice")
        return ",".join(names)

    return parse


def _connection(command: argparse.ArgumentParser, choices: list[str]) -> None:
    """The options that choose and reach a provider, shared by generate and batch."""
    command.add_argument(
        "--provider",
        type=provider_names_arg(choices),
        default="auto",
        metavar="NAME[,NAME...]",
        help=f"one of {', '.join(choices)} (default auto: the first provider with a key "
        "set, else the emulator); several, joined by commas, share the work as --routing says",
    )
    command.add_argument(
        "--routing",
        choices=("failover", "balanced", "cheapest"),
        default="failover",
        help="with several providers: try them in order (failover, the default), spread "
        "the work by load (balanced), or cheapest first",
    )
    command.add_argument("--base-url", metavar="URL", help="override the provider's base URL")
    command.add_argument("--model-id", metavar="ID", help="Baseten model id (or BASETEN_MODEL_ID)")
    command.add_argument("--timeout", type=seconds(), metavar="SECONDS", help="per attempt")


def _generate(commands: _Commands, choices: list[str]) -> None:
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
    gen.add_argument(
        "--out",
        metavar="PATH",
        help="a file (the right extension is added if missing) or an existing directory "
        "(default: a name made from the prompt, in the current directory)",
    )
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.add_argument("--seed", type=whole(0), metavar="N")
    gen.add_argument("--steps", type=whole(1), metavar="N")
    gen.add_argument("--width", type=whole(1), metavar="N", help="Baseten only")
    gen.add_argument("--height", type=whole(1), metavar="N", help="Baseten only")
    _connection(gen, choices)
    gen.set_defaults(command="generate")


def _batch(commands: _Commands, choices: list[str]) -> None:
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
    batch.add_argument(
        "--concurrency",
        type=whole(1),
        default=16,
        metavar="N",
        help="requests in flight (default 16)",
    )
    batch.add_argument(
        "--seed", type=whole(0), metavar="N", help="item i gets seed N+i, unless it sets its own"
    )
    batch.add_argument("--steps", type=whole(1), metavar="N", help="unless an item sets its own")
    batch.add_argument(
        "--max-retries", type=whole(0), default=6, metavar="N", help="per item (default 6)"
    )
    batch.add_argument(
        "--budget",
        type=usd,
        metavar="USD",
        help="spend at most this much (maybe-billed attempts counted); the batch stops "
        "before an attempt that could pass it, and a re-run with a higher budget goes on",
    )
    add_shard_option(batch)
    _connection(batch, choices)
    batch.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="a bar on a terminal, periodic lines otherwise (default auto)",
    )
    batch.set_defaults(command="batch")


def _emulator(commands: _Commands) -> None:
    emu = commands.add_parser(
        "emulator",
        help="serve the provider emulator on loopback",
        description="Serve the emulator (both providers' wire formats, and an OpenAI-style "
        "/v1/images/generations for benchmarks) with uvicorn.",
    )
    emu.add_argument("--host", default="127.0.0.1", help="a loopback address (default %(default)s)")
    emu.add_argument("--port", type=whole(1, 65535), default=8787, help="(default %(default)s)")
    emu.add_argument("--api-key", default=None, help="the key it accepts (default emulator-key)")
    emu.add_argument("--dataoorts-response", choices=("json", "raw"), default="json")
    emu.add_argument("--image-bytes", type=whole(1), metavar="N", help="pad every image to N bytes")
    emu.add_argument(
        "--default-size",
        type=whole(1, 8192),
        default=1024,
        metavar="N",
        help="side of images with no size asked (Dataoorts always) (default %(default)s)",
    )
    group = emu.add_argument_group(
        "faults", "make the emulator misbehave like a real provider (see docs/emulator.md)"
    )
    group.add_argument(
        "--fault-rate",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability that a request gets a fault (default 0)",
    )
    group.add_argument(
        "--fault-kinds",
        type=faults(ok=False),
        metavar="K,K",
        help=f"kinds to draw from, e.g. 429,503,reset (default: all of {_FAULT_KINDS})",
    )
    group.add_argument(
        "--fault-script",
        type=faults(ok=True),
        default=[],
        metavar="K,K",
        help="faults for the first requests in order; 'ok' answers normally",
    )
    group.add_argument("--fault-seed", type=whole(), default=0, metavar="N")
    group.add_argument("--retry-after", type=seconds(zero=True), default=1.0, metavar="SECONDS")
    group.add_argument("--stall-seconds", type=seconds(zero=True), default=30.0, metavar="SECONDS")
    group.add_argument("--slow-interval", type=seconds(zero=True), default=1.0, metavar="SECONDS")
    group.add_argument("--slow-chunk", type=whole(1), default=1, metavar="BYTES")
    _capacity(emu)
    _queues(emu)
    emu.set_defaults(command="emulator")


# Each queue state's flag, and which answers it counts (in the order a job meets them).
_QUEUE_POLLS = (
    ("--fal-in-queue", "fal status polls answered IN_QUEUE"),
    ("--fal-in-progress", "then answered IN_PROGRESS"),
    ("--replicate-starting", "Replicate answers (the create first) 'starting'"),
    ("--replicate-processing", "then polls answered 'processing'"),
)


def _queues(emu: argparse.ArgumentParser) -> None:
    """How the queue hosts' jobs move: by status polls, and Replicate's Prefer: wait."""
    group = emu.add_argument_group(
        "queues", "how fal's jobs and Replicate's predictions move (see docs/emulator.md)"
    )
    for flag, answered in _QUEUE_POLLS:
        group.add_argument(
            flag,
            type=whole(0),
            default=1,
            metavar="POLLS",
            help=f"{answered} (default %(default)s)",
        )
    group.add_argument(
        "--replicate-run-seconds", type=seconds(zero=True), default=0.0, metavar="SECONDS",
        help="a prediction ends this long after its create, so a Prefer: wait=N create is "
        "answered then with the output when it is at most N (default 0: at once)",
    )  # fmt: skip


def _capacity(emu: argparse.ArgumentParser) -> None:
    """A host with limits; every option but --replicas defaults to None, so that one
    given alone is caught, and the defaults stay those of ``Capacity``."""
    group = emu.add_argument_group(
        "capacity",
        "give the hosts replicas and a bounded queue, each its own (see docs/emulator.md); "
        "off unless --replicas is given",
    )
    group.add_argument("--replicas", type=whole(1), metavar="N", help="requests served at once")
    group.add_argument(
        "--service-time", type=seconds(zero=True), metavar="SECONDS", help="median (default 1)"
    )
    group.add_argument(
        "--service-spread",
        type=at_least(0.0),
        metavar="SIGMA",
        help="sigma of a lognormal around the median (default 0: always the median)",
    )
    group.add_argument("--queue", type=whole(0), metavar="N", help="waiting places (default 0)")
    group.add_argument(
        "--overflow",
        choices=("429", "queue"),
        help="beyond the queue: refuse with 429 (default) or wait anyway",
    )
    group.add_argument(
        "--tail", type=probability, metavar="P", help="share of requests that take longer"
    )
    group.add_argument(
        "--tail-factor", type=at_least(1.0), metavar="F", help="how much longer (default 10)"
    )
    group.add_argument("--service-seed", type=whole(), metavar="N", help="(default 0)")
    group.add_argument(
        "--capacity-hosts",
        type=host_names,
        metavar="H,H",
        help="the hosts limited (default: every host)",
    )
