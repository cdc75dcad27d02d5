"""The emulator's fault plan: scripts, rates, outages, re-arming and its settings."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from flux_sdk.emulator import ALL_FAULTS, EmulatorApp, Fault, FaultPlan
from flux_sdk.emulator._request import MAX_BODY_BYTES

from ._emulator_faults import (
    API_KEY,
    BASETEN,
    BOTH,
    FOX,
    HTTP_LEVEL,
    Call,
    in_process,
    is_normal,
    post,
)

pytestmark = pytest.mark.anyio


# The plan


async def test_script_is_used_in_order_then_requests_answer_normally() -> None:
    """Script entries apply one per request, None answering normally; counters follow."""
    plan = FaultPlan([Fault.RATE_LIMIT, None, Fault.HTML, None])
    async with in_process(EmulatorApp(default_size=64, faults=plan)) as http:
        responses = [await post(http) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 200, 200, 200, 200]
    assert [is_normal(r) for r in responses] == [False, True, False, True, True]
    assert plan.injected == Counter({Fault.RATE_LIMIT: 1, Fault.HTML: 1})
    assert plan.requests == 5


@BOTH
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_a_request_without_a_fault_is_answered_as_without_a_plan(
    call: Call, headers: dict[str, str]
) -> None:
    """Drawing no fault changes nothing: successes and refusals are byte-for-byte the same."""
    plain = EmulatorApp(default_size=64)
    assert isinstance(plain.faults, FaultPlan)
    planned = EmulatorApp(default_size=64, faults=FaultPlan([None], rate=0.0))
    for auth in (call.headers, headers):
        answers = []
        for app in (plain, planned):
            async with in_process(app) as http:
                answers.append(await http.post(call.path, headers=auth, json=call.body))
        first, second = answers
        assert (first.status_code, first.headers.raw, first.content) == (
            second.status_code,
            second.headers.raw,
            second.content,
        )
    assert planned.faults.requests == 2
    assert not planned.faults.injected


async def test_faults_come_before_the_key_and_the_body_are_checked() -> None:
    """A real outage does not care whether the request was valid: the fault wins."""
    plan = FaultPlan([Fault.UNAVAILABLE, Fault.RATE_LIMIT])
    async with in_process(EmulatorApp(faults=plan)) as http:
        bad_key = await http.post(BASETEN, headers={"Authorization": "Api-Key no"}, json=FOX)
        bad_body = await http.post(BASETEN, headers=API_KEY, content=b"{not json")
    assert (bad_key.status_code, bad_body.status_code) == (503, 429)


async def test_requests_refused_before_the_body_is_read_are_never_faulted() -> None:
    """Unknown paths, wrong methods and oversized bodies are refused as usual, not counted."""
    plan = FaultPlan()
    plan.outage(Fault.SERVER_ERROR)
    async with in_process(EmulatorApp(faults=plan)) as http:
        missing = await http.post("/nowhere", headers=API_KEY, json=FOX)
        wrong_method = await http.get(BASETEN, headers=API_KEY)
        too_big = await http.post(BASETEN, headers=API_KEY, content=b" " * (MAX_BODY_BYTES + 1))
        assert (missing.status_code, wrong_method.status_code, too_big.status_code) == (
            404,
            405,
            413,
        )
        assert plan.requests == 0
        assert (await post(http)).status_code == 500
    assert (plan.requests, plan.injected) == (1, Counter({Fault.SERVER_ERROR: 1}))


async def test_rate_is_seeded_reproducible_and_close_to_the_requested_rate() -> None:
    """Over 400 requests, about 30% are faulty, in exactly the order a same-seed plan draws."""
    plan = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=7)
    async with in_process(EmulatorApp(default_size=64, faults=plan)) as http:
        faulty = [not is_normal(await post(http)) for _ in range(400)]
    twin = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=7)
    draws = [twin.draw() for _ in range(400)]
    assert faulty == [fault is not None for fault in draws]
    assert plan.injected == twin.injected
    assert set(plan.injected) == set(HTTP_LEVEL)  # every kind, chosen uniformly
    assert 90 <= sum(faulty) <= 150  # 120 expected; a 3.3-sigma band
    other = FaultPlan(rate=0.3, kinds=HTTP_LEVEL, seed=8)
    assert [other.draw() for _ in range(400)] != draws


async def test_outage_faults_every_request_until_cleared() -> None:
    """An outage overrides script and rate; clear ends it and drops the rest of the script."""
    plan = FaultPlan([Fault.HTML, Fault.HTML], kinds=[Fault.INVALID_JSON])
    app = EmulatorApp(default_size=64, faults=plan)
    async with in_process(app) as http:
        plan.outage(Fault.BAD_GATEWAY)
        during = [(await post(http)).status_code for _ in range(3)]
        plan.clear()
        after = await post(http)
        plan.rate = 1.0
        plan.outage(Fault.UNAVAILABLE)
        assert (await post(http)).status_code == 503
        plan.clear()  # the background rate is configuration: clear leaves it
        rated = await post(http)
    assert during == [502, 502, 502]
    assert is_normal(after)
    assert (rated.status_code, rated.content[:2]) == (200, b'{"')
    assert not is_normal(rated)  # INVALID_JSON, from the rate
    assert plan.injected == Counter(
        {Fault.BAD_GATEWAY: 3, Fault.UNAVAILABLE: 1, Fault.INVALID_JSON: 1}
    )


async def test_plans_are_rearmed_and_replaced_at_run_time() -> None:
    """extend queues more faults after a spent script, and app.faults can be swapped live."""
    app = EmulatorApp(default_size=64, faults=FaultPlan([Fault.RATE_LIMIT]))
    async with in_process(app) as http:
        statuses = [(await post(http)).status_code for _ in range(2)]
        app.faults.extend([None, Fault.SERVER_ERROR])
        statuses += [(await post(http)).status_code for _ in range(2)]
        app.faults = FaultPlan([Fault.UNAVAILABLE])
        statuses.append((await post(http)).status_code)
    assert statuses == [429, 200, 200, 500, 503]


@pytest.mark.parametrize(
    "settings",
    [
        {"rate": -0.1},
        {"rate": 1.5},
        {"rate": math.nan},
        {"kinds": []},
        {"kinds": ["teapot"]},
        {"script": ["teapot"]},
        {"retry_after": -1},
        {"stall_seconds": math.inf},
        {"slow_interval": math.nan},
        {"slow_chunk": 0},
    ],
)
async def test_plan_refuses_settings_that_make_no_sense(settings: dict[str, Any]) -> None:
    """A typo or an impossible number fails when the plan is made, not mid-run."""
    with pytest.raises(ValueError, match=r"rate|kinds|teapot|retry_after|stall|slow"):
        FaultPlan(**settings)


async def test_fault_values_are_the_short_names_a_cli_takes() -> None:
    """Each kind has a stable short name, and the names map back to the kinds."""
    assert [fault.value for fault in ALL_FAULTS] == [
        "429",
        "500",
        "502",
        "503",
        "reset",
        "truncated",
        "stall",
        "slow",
        "invalid_json",
        "invalid_base64",
        "html",
    ]
    assert Fault("503") is Fault.UNAVAILABLE
    assert FaultPlan([Fault("reset")]).draw() is Fault.RESET
