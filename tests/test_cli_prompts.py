"""Prompts files: lines end at \\n and \\r\\n only, and every line is checked against the
chosen provider's own rules before anything is sent."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux_sdk.cli._prompts import read_prompts, split_lines
from flux_sdk.emulator import DEFAULT_API_KEY, EmulatorApp, Fault, FaultPlan, render_png

from ._cli import FLUX_SDK, dataoorts
from ._server import serve

SIZE = 32
APP = EmulatorApp(default_size=SIZE)
# Every character str.splitlines() splits at, besides \n, \r\n and \r.
BOUNDARIES = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(APP) as base:
        yield base


@pytest.fixture(autouse=True)
def _fresh_app() -> Iterator[None]:
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY
    yield
    APP.faults = FaultPlan()
    APP.api_key = DEFAULT_API_KEY


def batch(url: str, prompts: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    target = dataoorts(url)
    args = [*FLUX_SDK, "batch", str(prompts), "--out-dir", str(out), *target["args"], *extra]
    return subprocess.run(
        args, capture_output=True, text=True, env=target["env"], timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("", []),
        ("one", ["one"]),
        ("one\n", ["one"]),
        ("one\r\ntwo", ["one", "two"]),
        ("one\n\n", ["one", ""]),
        ("one\rtwo\n", ["one\rtwo"]),
        (f"a{BOUNDARIES}b\n", [f"a{BOUNDARIES}b"]),
    ],
)
def test_lines_end_at_newline_and_crlf_only(text: str, lines: list[str]) -> None:
    assert split_lines(text) == lines


def test_unicode_line_boundaries_stay_inside_their_prompt() -> None:
    """Each boundary character is part of the prompt it sits in; indices and seeds
    follow the lines the user wrote."""
    prompts = [f"a {c} b" for c in BOUNDARIES]
    found = read_prompts("\r\n".join(prompts) + "\r\n", seed=5)
    assert found.problems == []
    assert [r.prompt for r in found.requests] == prompts
    assert [r.seed for r in found.requests] == list(range(5, 5 + len(prompts)))
    assert found.lines == list(range(1, len(prompts) + 1))


def test_comment_and_blank_lines_count_as_lines_but_not_as_items() -> None:
    found = read_prompts("# my prompts\n\nfirst\n   # not this\nsecond\n", seed=10)
    assert [(r.prompt, r.seed) for r in found.requests] == [("first", 10), ("second", 11)]
    assert found.lines == [3, 5]


def test_a_lone_carriage_return_is_refused_in_a_text_prompt_and_is_whitespace_in_json() -> None:
    """A lone \\r does not end a line. Inside a plain prompt it is refused (an old Mac
    file, or a stray byte); between JSON tokens it is whitespace, as JSON says."""
    found = read_prompts("a red fox\rat dawn\nfine\n")
    assert len(found.problems) == 1
    assert found.problems[0].startswith("line 1: a carriage return (\\r)")
    found = read_prompts('{"prompt":\r"a red fox"}\r\n')
    assert found.problems == []
    assert found.requests[0].prompt == "a red fox"


def test_jsonl_with_raw_line_separators_in_its_strings_runs_every_item(
    url: str, tmp_path: Path
) -> None:
    """Valid JSONL keeps U+2028 and friends raw in its strings: each item is one request,
    and item i is still item i, with seed 1 + i."""
    prompts = ["a harbour\u2028at night", "a desert\x85at noon", "a forest\x0cin fog"]
    lines = ["# three scenes", ""] + [
        json.dumps({"prompt": p}, ensure_ascii=False) for p in prompts
    ]
    source = tmp_path / "scenes.jsonl"
    source.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    out = tmp_path / "out"
    done = batch(url, source, out, "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert "3 done, 0 skipped (already there), 0 failed" in done.stderr
    images = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert images == ["000000-a-harbour-at-night.png", "000001-a-desert-at-noon.png",
                      "000002-a-forest-in-fog.png"]  # fmt: skip
    for i, name in enumerate(images):
        expected = render_png(prompts[i], seed=1 + i, steps=4, width=SIZE, height=SIZE)
        assert (out / name).read_bytes() == expected
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().split("\n")[:-1]]
    assert [m["prompt"] for m in manifest if m["index"] == 0] == [prompts[0]]


def test_every_line_is_checked_against_the_providers_rules_before_sending(
    url: str, tmp_path: Path
) -> None:
    """Dataoorts takes 2 to 2048 characters and 1 to 8 steps: the lines that break a rule
    are named by their line in the file (comments and blank lines count) and nothing is
    sent, not even the good ones."""
    source = tmp_path / "prompts.txt"
    source.write_text("# header\na fine prompt\n\nx\nanother fine one\ny\n")
    seen = APP.requests_seen
    done = batch(url, source, tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "flux-sdk: error: nothing was sent; fix these lines first:",
        "  line 4: dataoorts needs a prompt of 2 to 2048 characters (got 1)",
        "  line 6: dataoorts needs a prompt of 2 to 2048 characters (got 1)",
    ]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"prompt": "a fine prompt"}\n\n{"prompt": "too many", "steps": 9}\n')
    done = batch(url, jsonl, tmp_path / "out")
    assert done.returncode == 2
    assert "  line 3: dataoorts needs steps between 1 and 8 (got 9)" in done.stderr
    assert APP.requests_seen == seen
    assert not (tmp_path / "out").exists()


def test_failures_are_listed_by_file_line_with_advice_that_can_help(
    url: str, tmp_path: Path
) -> None:
    """A request the provider cannot take is not followed by "run again" (a rerun sends
    it unchanged); a failure that may pass on another try is."""
    APP.faults = FaultPlan([Fault("503")])  # the first request sent gets a 503
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        "# one refused, one unlucky\n"
        '{"prompt": "a cat", "extra_body": {"seed": 3}}\n'
        '{"prompt": "a dog"}\n'
        "\n"
        '{"prompt": "a bird"}\n'
    )
    done = batch(url, source, tmp_path / "out", "--concurrency", "1", "--max-retries", "0")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[-5] == f"failed (by line of {source}):"
    assert lines[-4].startswith(
        "  line 2: InvalidRequestError: dataoorts: extra_body['seed'] duplicates"
    )
    assert lines[-3].startswith("  line 3: ServerError: dataoorts answered HTTP 503")
    assert lines[-2] == (
        "1 item refused as invalid: fix those lines; running the same command again "
        "unchanged would send the same requests"
    )
    assert lines[-1] == "1 item may pass: run the same command again to retry them"
    assert (tmp_path / "out" / "000002-a-bird.png").is_file()


def test_an_invalid_request_alone_gets_no_advice_to_run_again(url: str, tmp_path: Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text('{"prompt": "a cat", "extra_body": {"steps": 3}}\n')
    done = batch(url, source, tmp_path / "out")
    assert done.returncode == 1
    assert "line 1: InvalidRequestError" in done.stderr
    assert "again to retry" not in done.stderr
