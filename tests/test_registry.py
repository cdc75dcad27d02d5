"""Providers by name: `flux_sdk.provider()`, and the CLI's ``--provider`` reading the
same registry, with a third-party provider installed as a real distribution.

The distribution is made by the test: a directory holding a module and a
``*.dist-info`` with ``METADATA`` and ``entry_points.txt``, put on ``sys.path`` (and on
``PYTHONPATH`` for the command), where ``importlib.metadata`` finds it as it finds any
installed package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import flux_sdk
from flux_sdk import ConfigError, Dataoorts, Emulator, provider, provider_names, register_provider
from flux_sdk.emulator import render_png

from ._cli import FLUX_SDK, environment

_MODULE = '''
from flux_sdk import Emulator


class AcmeFlux(Emulator):
    """A third-party provider: here, the emulator under another name."""

    name = "{name}"
'''


def install(root: Path, name: str, target: str, module: str = _MODULE) -> str:
    """Make an installed distribution under ``root`` whose entry point ``name`` points at
    ``target`` in a new module; return the module's name."""
    module_name = f"acme_flux_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module_name}.py").write_text(textwrap.dedent(module.format(name=name)))
    info = root / f"{module_name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[flux_sdk.providers]\n{name} = {target.format(module=module_name)}\n"
    )
    return module_name


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on ``sys.path`` for this test only."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_built_in_names() -> None:
    assert {"baseten", "dataoorts", "emulator"} <= set(provider_names())
    made = provider("dataoorts", api_key="sk-local")
    assert isinstance(made, Dataoorts)


def test_unknown_name_lists_the_names_that_work() -> None:
    with pytest.raises(ConfigError) as caught:
        provider("dataorts")
    message = str(caught.value)
    assert "no provider called 'dataorts'" in message
    assert ", ".join(provider_names()) in message
    assert "'flux_sdk.providers' entry points" in message


def test_an_option_the_provider_does_not_take_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the emulator provider does not take these options"):
        provider("emulator", base_url="https://example.com")


def test_a_missing_key_is_still_the_providers_own_error() -> None:
    with pytest.raises(ConfigError, match="DATAOORTS_API_KEY"):
        provider("dataoorts")


def test_a_factory_that_returns_no_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flux_sdk.providers._registry._registered", {})
    register_provider("nothing", lambda: object())
    with pytest.raises(ConfigError, match="the nothing provider's factory returned"):
        provider("nothing")


def test_register_provider_refuses_a_name_that_is_not_a_lower_case_word() -> None:
    with pytest.raises(ConfigError, match="lower-case word"):
        register_provider("Acme", Emulator)


def test_an_installed_entry_point_is_found_and_made(site: Path) -> None:
    install(site, "acme", "{module}:AcmeFlux")
    assert "acme" in provider_names()
    made = provider("acme", host="baseten")
    assert isinstance(made, Emulator)
    assert made.name == "acme"


def test_a_broken_entry_point_says_what_is_installed_and_why_it_failed(site: Path) -> None:
    module = install(site, "broken", "{module}:NoSuchClass")
    with pytest.raises(ConfigError) as caught:
        provider("broken")
    message = str(caught.value)
    assert f"the broken provider is installed ({module}:NoSuchClass)" in message
    assert "could not be loaded: AttributeError" in message


def test_an_entry_point_whose_module_fails_to_import(site: Path) -> None:
    install(site, "crashy", "{module}:AcmeFlux", module="raise RuntimeError('no {name} today')\n")
    with pytest.raises(ConfigError, match="could not be loaded: RuntimeError: no crashy today"):
        provider("crashy")


# The command line reads the same registry


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(site), os.environ.get("PYTHONPATH", "")]
    env = environment(PYTHONPATH=os.pathsep.join(p for p in paths if p))
    return subprocess.run(
        [*FLUX_SDK, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_the_cli_lists_and_uses_an_installed_provider(site: Path, tmp_path: Path) -> None:
    install(site, "acme", "{module}:AcmeFlux")
    helped = _run(site, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    names = ", ".join(sorted({*flux_sdk.provider_names(), "acme"}))
    assert f"providers (--provider): auto, {names}." in " ".join(helped.stdout.split())
    sub_help = _run(site, "generate", "--help", cwd=tmp_path)
    assert "one of auto, acme, baseten," in " ".join(sub_help.stdout.split())

    done = _run(site, "generate", "a red fox", "--seed", "5", "--provider", "acme", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = tmp_path / "a-red-fox.png"
    assert done.stdout.strip() == saved.name
    assert saved.read_bytes() == render_png("a red fox", seed=5, steps=4, width=1024, height=1024)

    refused = _run(
        site, "generate", "a red cat", "--provider", "acme", "--steps", "9", cwd=tmp_path
    )
    assert refused.returncode == 1
    assert refused.stderr == "flux-sdk: error: acme needs steps between 1 and 8 (got 9)\n"


def test_the_cli_reports_a_broken_provider_in_one_line(site: Path, tmp_path: Path) -> None:
    install(site, "broken", "{module}:NoSuchClass")
    done = _run(site, "generate", "a cat", "--provider", "broken", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("flux-sdk: error: the broken provider is installed")
    assert done.stderr.count("\n") == 1


def test_the_cli_names_an_option_a_provider_does_not_take(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FLUX_SDK, "generate", "a cat", "--provider", "emulator", "--model-id", "abc"],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "flux-sdk: error: --provider emulator does not take --model-id; leave it out\n"
    )


def test_the_cli_fallback_says_why_the_emulator_answered(tmp_path: Path) -> None:
    """No key and no --provider: an error says the emulator answered and how to choose."""
    done = subprocess.run(
        [*FLUX_SDK, "generate", "a cat", "--width", "512"],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("flux-sdk: error: emulator does not accept width")
    assert "no API key is set, so the bundled emulator was used" in last
    assert "DATAOORTS_API_KEY" in last


def test_flux_sdk_reexports_the_registry() -> None:
    assert flux_sdk.provider is provider
    assert sys.modules["flux_sdk.providers._registry"].ENTRY_POINT_GROUP == "flux_sdk.providers"
