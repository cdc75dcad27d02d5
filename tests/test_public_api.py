"""The public namespace: flat, sorted, and free of private module names."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

import flux_sdk


def test_all_is_sorted_and_every_name_resolves() -> None:
    """`from flux_sdk import *` gives exactly the documented, importable names."""
    names = [name for name in flux_sdk.__all__ if name != "__version__"]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in flux_sdk.__all__:
        assert getattr(flux_sdk, name) is not None


def test_public_objects_say_they_live_in_flux_sdk() -> None:
    """Reprs and tracebacks name flux_sdk.X, not a private module path."""
    for name in flux_sdk.__all__:
        obj = getattr(flux_sdk, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert getattr(obj, "__module__", "flux_sdk") == "flux_sdk", name


def test_every_error_is_a_flux_error() -> None:
    """Catching FluxError catches everything the SDK raises on purpose."""
    names = [getattr(flux_sdk, name) for name in flux_sdk.__all__]
    errors = [
        obj
        for obj in names
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__name__.endswith("Error")
    ]
    assert len(errors) >= 10
    assert all(issubclass(e, flux_sdk.FluxError) for e in errors)
    assert issubclass(flux_sdk.RequestTimeout, flux_sdk.TransportError)
    assert issubclass(flux_sdk.InvalidRequestError, ValueError)


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_first_generate_loads_only_what_it_needs() -> None:
    """A program that makes images with one host does not pay to import the batch engine,
    routing, the other hosts, the CLI, the emulator or the optional extras."""
    loaded = _fresh(
        "import sys; from flux_sdk import FluxClient, Dataoorts, GenerateRequest; "
        "print(' '.join(sorted(sys.modules)))"
    ).split()
    for module in (
        "flux_sdk._batching._batch",
        "flux_sdk._routing._router",
        "flux_sdk._transport._aiohttp",
        "flux_sdk._spend._cache",
        "flux_sdk.cli",
        "flux_sdk.emulator",
        "flux_sdk.providers._baseten",
        "flux_sdk.providers._replicate",
        "aiohttp",
        "redis",
        "opentelemetry",
    ):
        assert module not in loaded, module
    assert "flux_sdk.providers._dataoorts" in loaded
    assert "flux_sdk._client" in loaded


# What a first generate with one host used to load and has no use for (issue 26): a
# percentile hedge's statistics, importlib.util (opentelemetry is looked for without
# it), SharedLimit's Redis side, a flow's download checks, and the records only read
# when a program asks for them (a ledger's HostSpend, a route's RouteState, the FluxEvent
# of a client with an on_event hook).
NOT_ON_A_FIRST_GENERATE = (
    "statistics",
    "importlib.util",
    "flux_sdk._policy._redis_outage",
    "flux_sdk._policy._redis_url",
    "flux_sdk._policy._shared_hold",
    "flux_sdk._policy._shared_scripts",
    "flux_sdk._transport._downloads",
    "flux_sdk._spend._hostspend",
    "flux_sdk._routing._state",
    "flux_sdk._base._flux_event",
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_first_generate_loads_no_module_it_does_not_use(emulator_url: str, backend: str) -> None:
    """One image made in a fresh interpreter loads none of the modules above: each costs
    a first generate import time, which issue 26 bounds."""
    url = emulator_url + "/api/v1"
    code = f"""
import sys, anyio
from flux_sdk import Dataoorts, FluxClient
from flux_sdk.emulator import DEFAULT_API_KEY
async def main():
    async with FluxClient(Dataoorts(api_key=DEFAULT_API_KEY, base_url={url!r})) as client:
        image = await client.generate("a lighthouse at dawn")
    print(image.media_type)
anyio.run(main, backend={backend!r})
print(" ".join(m for m in {NOT_ON_A_FIRST_GENERATE!r} if m in sys.modules) or "none")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["image/png", "none"]


def test_a_name_loads_on_first_use_and_says_it_lives_in_flux_sdk() -> None:
    """Whichever path a class is first reached by, it names itself flux_sdk.X (reprs,
    tracebacks, pickles), and a misspelt name is an AttributeError that says so."""
    out = _fresh(
        "import pickle, flux_sdk\n"
        "from flux_sdk.providers import Baseten\n"
        "print(Baseten.__module__, flux_sdk.Baseten is Baseten)\n"
        "print(pickle.loads(pickle.dumps(flux_sdk.Price(per_image=0.5))).per_image)\n"
        "try:\n    flux_sdk.FluxClinet\nexcept AttributeError as exc:\n    print(exc)\n"
    )
    assert out.splitlines() == [
        "flux_sdk True",
        "0.5",
        "module 'flux_sdk' has no attribute 'FluxClinet'",
    ]
    assert set(flux_sdk.__all__) <= set(dir(flux_sdk))


def test_the_client_signature_resolves_for_tools_that_read_type_hints() -> None:
    """Names that load lazily still resolve in FluxClient's signature (validators and
    documentation tools call get_type_hints on it)."""
    hints = typing.get_type_hints(flux_sdk.FluxClient.__init__)
    assert {"provider", "max_concurrency", "routing", "hedge", "breaker"} <= set(hints)
