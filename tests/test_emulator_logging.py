"""The emulator's request log: one line per request, never a header or a key."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, InjectedDisconnect

from ._emulator import API_KEY, BEARER, DATAOORTS, client, dataoorts_body


@pytest.mark.anyio
async def test_each_request_is_one_line_with_method_path_status_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Answers, refusals and unknown paths each log one INFO line; keys never appear."""
    caplog.set_level(logging.INFO, logger="flux_sdk.emulator")
    wrong = {"Authorization": "Api-Key sk-not-the-key-123"}
    async with client() as http:
        await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
        await http.post("/production/predict", headers=wrong, json={"prompt": "a"})
        await http.get("/nowhere/%0A", headers=API_KEY)  # a newline once decoded
    records = [r for r in caplog.records if r.name == "flux_sdk.emulator"]
    lines = [r.getMessage() for r in records]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert lines[0].startswith("POST /api/v1 200 ")
    assert lines[1].startswith("POST /production/predict 403 ")
    assert lines[2].startswith("GET /nowhere/\\n 404 ")  # escaped: one record, one line
    for line in lines:
        assert line.split()[4] == "ms"
        assert float(line.split()[3]) >= 0
        assert DEFAULT_API_KEY not in line
        assert "sk-not-the-key-123" not in line
        assert "Authorization" not in line


@pytest.mark.anyio
async def test_a_dropped_connection_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    """A RESET fault still gets its line, saying the connection was dropped on purpose."""
    caplog.set_level(logging.INFO, logger="flux_sdk.emulator")
    app = EmulatorApp(default_size=16, faults=FaultPlan([Fault.RESET]))
    async with client(app) as http:
        with pytest.raises(InjectedDisconnect):
            await http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
    [line] = [r.getMessage() for r in caplog.records if r.name == "flux_sdk.emulator"]
    assert line.startswith("POST /api/v1 200 ")
    assert line.endswith("(RESET: connection dropped)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_flux_sdk_emulator_prints_request_lines_on_stderr() -> None:
    """`flux-sdk emulator` shows each request on stderr, without the key it was sent."""
    port = _free_port()
    command = [sys.executable, "-m", "flux_sdk", "emulator", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [*command, "--default-size", "16"], stderr=subprocess.PIPE, text=True, env=env
    ) as server:
        try:
            deadline = time.monotonic() + 20
            while True:  # readiness poll: the server is up once it accepts a connection
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None, "the emulator exited early"
                    assert time.monotonic() < deadline, "the emulator did not start"
                    time.sleep(0.05)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                ok = http.post(DATAOORTS, headers=BEARER, json=dataoorts_body())
                refused = http.post("/production/predict", json={"prompt": "a"})
        finally:
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=20)
    assert (ok.status_code, refused.status_code) == (200, 401)
    lines = [line for line in stderr.splitlines() if "emulator: " in line]
    assert [line.split("emulator: ", 1)[1].split()[:3] for line in lines] == [
        ["POST", "/api/v1", "200"],
        ["POST", "/production/predict", "401"],
    ]
    assert stderr.count(DEFAULT_API_KEY) == 1  # the banner names the key; request lines never
