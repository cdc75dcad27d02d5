"""Shared fixtures: every async test runs once on asyncio and once on trio.

Across the whole session, every API key the suite uses is watched for: in every log
record (DEBUG and up, including httpx and httpcore), every FluxError created, the repr
and str of every public flux_sdk object created, and the exception that ends a failing
test. If one shows up in clear text anywhere, the session fails at the end.
"""

from __future__ import annotations

import functools
import logging
import secrets
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx

from ._reliability import MODE, LeakFilter, LeakHandler, SecretWatch, record

_OUR_ENV = (
    "DATAOORTS_API_KEY",
    "DATAOORTS_BASE_URL",
    "BASETEN_API_KEY",
    "BASETEN_MODEL_ID",
    "BASETEN_BASE_URL",
    "TOGETHER_API_KEY",
    "TOGETHER_BASE_URL",
    "OPENAI_IMAGES_API_KEY",
    "OPENAI_IMAGES_BASE_URL",
    "REPLICATE_API_TOKEN",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ACCOUNT_ID",
    "FAL_KEY",
    "FAL_BASE_URL",
    "HF_TOKEN",
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real keys must never leak into (or change) a test."""
    for name in _OUR_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """The emulator (Dataoorts answering JSON) on a real loopback port, for the session."""
    from flux_sdk.emulator import EmulatorApp

    from ._server import serve

    with serve(EmulatorApp()) as url:
        yield url


@pytest.fixture(scope="session")
def raw_emulator_url() -> Iterator[str]:
    """The emulator with Dataoorts answering raw image bytes."""
    from flux_sdk.emulator import EmulatorApp

    from ._server import serve

    with serve(EmulatorApp(dataoorts_response="raw")) as url:
        yield url


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """respx answering every host, for the modules that share it (a module may define its own)."""
    with respx.mock(assert_all_called=False) as mock:
        yield mock


# Secret capture across the session

# Keys that reach the suite other than through a provider (raw headers, the emulator's
# own key); keys given to a provider or an emulator are picked up as they are created.
KNOWN_KEYS = (
    "emulator-key",
    "s3cret",
    "sk-wrong-key",
    "sk-wrong",
    "sk-mw",
    "sk-local",
    "env-key-123",
    "sk-test-4f9a-very-secret",
    "sk-retry-test-key",
    "dk_SeCrEt_7f3a9c1e5b2d4f60aa",
    "bt_SeCrEt.9e8d7c6b5a4f3e2d1c",
)
SECRET_WATCH = SecretWatch(KNOWN_KEYS)
_WATCHED_LOGGERS = ("flux_sdk", "httpx", "httpcore")
_undo: list[Callable[[], None]] = []
_LEAK_FILTERS: list[LeakFilter] = []
_reported = 0


def _patch(owner: Any, name: str, value: Any) -> None:
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    _undo.append(lambda: setattr(owner, name, original))


def _registering(original: Callable[..., Any]) -> Callable[..., Any]:
    """``resolve_api_key``, watching both the key it was given and the key it returns."""

    @functools.wraps(original)
    def resolve_api_key(api_key: Any, *args: Any, **kwargs: Any) -> Any:
        SECRET_WATCH.add_key(api_key)
        key = original(api_key, *args, **kwargs)
        SECRET_WATCH.add_key(key)
        return key

    return resolve_api_key


def _init_of(cls: type) -> Callable[..., None]:
    """The ``__init__`` that runs for ``cls``: the first one along its MRO."""
    init: Callable[..., None] = next(
        vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k)
    )
    return init


def _checking_init(cls: type, kind: str, attributes: bool = False) -> None:
    """Wrap ``cls.__init__`` to check the new object's repr and str (and string fields)."""
    original = _init_of(cls)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _init_of(type(self)) is not __init__:
            return  # a subclass's own wrapper checks the finished object
        texts = [repr(self), str(self)]
        if attributes:
            texts += [v for v in vars(self).values() if isinstance(v, str)]
        SECRET_WATCH.check(kind, *texts)

    _patch(cls, "__init__", __init__)


def _install_secret_watch() -> None:
    import flux_sdk
    from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp

    SECRET_WATCH.add_key(DEFAULT_API_KEY)
    # Every provider resolves its key through resolve_api_key, imported by name.
    from flux_sdk.providers import _wire

    original = _wire.resolve_api_key
    wrapped = _registering(original)
    for name, module in list(sys.modules.items()):
        if name.startswith("flux_sdk") and getattr(module, "resolve_api_key", None) is original:
            _patch(module, "resolve_api_key", wrapped)

    emulator_init = EmulatorApp.__init__

    @functools.wraps(emulator_init)
    def emulator(self: EmulatorApp, *args: Any, **kwargs: Any) -> None:
        emulator_init(self, *args, **kwargs)
        SECRET_WATCH.add_key(self.api_key)

    _patch(EmulatorApp, "__init__", emulator)

    # Every FluxError: its message, repr and fields (body, request_id) when created.
    errors = [flux_sdk.FluxError]
    while errors:
        cls = errors.pop()
        errors += cls.__subclasses__()
        if "__init__" in cls.__dict__:
            _checking_init(cls, "FluxError", attributes=True)
    # Every other public class: its repr and str when created.
    for name in flux_sdk.__all__:
        obj = getattr(flux_sdk, name)
        if (
            isinstance(obj, type)
            and not issubclass(obj, BaseException)
            and not getattr(obj, "_is_protocol", False)
            and obj.__init__ is not object.__init__
        ):
            _checking_init(obj, f"{name} repr")

    root = logging.getLogger()
    root_handler = LeakHandler(SECRET_WATCH)
    root.addHandler(root_handler)
    _undo.append(functools.partial(root.removeHandler, root_handler))
    for name in ("", *_WATCHED_LOGGERS):
        logger = logging.getLogger(name)
        _undo.append(functools.partial(logger.setLevel, logger.level))
    # httpx and httpcore at DEBUG would flood the tests that count log records, so each
    # of their loggers checks its own records and passes on only what it did before.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            leak_filter = LeakFilter(SECRET_WATCH, pass_from=logger.getEffectiveLevel())
            logger.addFilter(leak_filter)
            _LEAK_FILTERS.append(leak_filter)
            _undo.append(functools.partial(logger.removeFilter, leak_filter))
    for name in ("", *_WATCHED_LOGGERS):
        logging.getLogger(name).setLevel(logging.DEBUG)

    # Fail loudly if the hooks above no longer catch a key (a renamed helper, say).
    canary = f"canary-{secrets.token_hex(8)}"
    flux_sdk.Dataoorts(api_key=canary)
    SECRET_WATCH.check("canary", canary)
    if canary not in SECRET_WATCH.keys or not SECRET_WATCH.leaks:
        raise RuntimeError("the secret capture in tests/conftest.py no longer sees API keys")
    SECRET_WATCH.leaks.clear()
    SECRET_WATCH.checked.clear()


def pytest_configure(config: pytest.Config) -> None:
    _install_secret_watch()


def pytest_unconfigure(config: pytest.Config) -> None:
    while _undo:
        _undo.pop()()
    _LEAK_FILTERS.clear()


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    SECRET_WATCH.where = nodeid


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.excinfo is not None:
        SECRET_WATCH.check_exception(call.excinfo.value, f"exception in {call.when}")


@pytest.fixture(scope="session", autouse=True)
def _no_api_key_in_clear() -> Iterator[None]:
    """At the end of the session: no API key was seen in any log, error or repr."""
    global _reported
    yield
    _reported = len(SECRET_WATCH.leaks)
    assert not SECRET_WATCH.leaks, SECRET_WATCH.report()


@pytest.fixture
def secret_watch() -> SecretWatch:
    """The session's watch: the keys it knows and the leaks it has seen so far."""
    return SECRET_WATCH


@pytest.fixture
def all_debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with every DEBUG record of this test, httpx's and httpcore's included."""
    saved = [(leak_filter, leak_filter.pass_from) for leak_filter in _LEAK_FILTERS]
    for leak_filter, _ in saved:
        leak_filter.pass_from = logging.DEBUG
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for leak_filter, level in saved:
            leak_filter.pass_from = level


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    record(
        "secrets",
        mode=MODE,
        keys_watched=len(SECRET_WATCH.keys),
        leaks=len(SECRET_WATCH.leaks),
        **_checked_by_source(),
    )
    if len(SECRET_WATCH.leaks) > _reported:  # seen after the fixture above had checked
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(SECRET_WATCH.report(), red=True)


def _checked_by_source() -> dict[str, int]:
    """How many texts the watch checked, by where they came from."""
    totals = {"log_records": 0, "flux_errors": 0, "object_reprs": 0, "test_exceptions": 0}
    for kind, n in SECRET_WATCH.checked.items():
        if kind == "log record":
            totals["log_records"] += n
        elif kind == "FluxError":
            totals["flux_errors"] += n
        elif kind.endswith(" repr"):
            totals["object_reprs"] += n
        else:
            totals["test_exceptions"] += n
    return {f"checked_{source}": n for source, n in totals.items()}


async def _as_named(host: str, port: int, **kwargs: Any) -> list[Any]:
    """Download hosts without DNS: an address (any spelling the resolver reads) gets its
    real answer; a made-up CDN name answers as itself, so respx still routes it by name."""
    import socket

    import anyio

    if not host[-1].isalpha():
        return list(await anyio.getaddrinfo(host, port, **kwargs))
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]


@pytest.fixture(autouse=True)
def _no_dns_for_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    from flux_sdk._transport import _downloads

    monkeypatch.setattr(_downloads, "_lookup", _as_named)
