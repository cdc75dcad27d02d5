"""The public namespace: flat, sorted, and free of private module names."""

from __future__ import annotations

import inspect

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
    errors = [
        obj
        for obj in vars(flux_sdk).values()
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__name__.endswith("Error")
    ]
    assert len(errors) >= 10
    assert all(issubclass(e, flux_sdk.FluxError) for e in errors)
    assert issubclass(flux_sdk.RequestTimeout, flux_sdk.TransportError)
    assert issubclass(flux_sdk.InvalidRequestError, ValueError)
