"""A queue job's concurrency slot, held from its submit until the job ends.

A queue host (fal, Replicate) counts jobs, not requests: a job takes one of its workers
from the submit until it is done, however often it is polled. So a concurrency limit
keeps the slot a ``"submit"`` request took when the host accepted it (a 2xx answer), or
may have (`may_have_queued`: a 5xx, or an answer lost on the way); the job's polls,
result and download pass the limit without waiting for another slot (none could free
while every slot is held by a job that needs one). The step runner gives the slot back
once the host reports the job ended (the flow's `Ended`: its worker is free then, while
the result and the image are still to be fetched), or once the flow has ended, however
it ended: the image, a failure, or a cancel (after the host was asked to cancel the
job). A job the host may be running but the client cannot follow (no `Accepted`) keeps
its slot about as long as the host's jobs take (the runner's ``_linger``): the host
counts it, so a submit in its place would be refused. Rate limits still count every
request. A one-request host's ``"generate"`` request takes and frees a slot as before.

The slots a call holds are on the call (``Call.held``): each limit's release, by the
limit's identity, called with whether the flow ended with its image.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import httpx

from flux_sdk._base._errors import TransportError
from flux_sdk._pipeline._call import Call

__all__ = ["Held", "Release", "holding", "keep", "may_have_queued", "release_ended", "release_held"]

Release = Callable[[bool], Awaitable[None]]
Held = dict[int, Release]  # what `Call.held` holds: each limit's release by its id
_log = logging.getLogger("flux_sdk")


def holding(call: Call, limit: object) -> bool:
    """Whether ``call``'s job already holds a slot of ``limit``. (Read with getattr: a
    limit may be called directly with a stand-in for a call, as tests do.)"""
    held = getattr(call, "held", None)
    return held is not None and id(limit) in held


def may_have_queued(answer: httpx.Response | BaseException) -> bool:
    """Whether a submit's ``answer`` (a response, or what its sending raised) may mean a
    job is now on the host: accepted (2xx, read or not), a 5xx other than 503 (a proxy
    may have passed it on first), or a connection lost once the request went out. A 4xx,
    a 503, or no byte sent: the host refused it, nothing runs there."""
    if isinstance(answer, httpx.Response):
        status = answer.status_code
        return 200 <= status < 300 or (status >= 500 and status != 503)
    return isinstance(answer, TransportError) and answer.request_sent


def keep(
    call: Call, limit: object, answer: httpx.Response | BaseException, release: Release
) -> bool:
    """Keep ``limit``'s slot for the job a submit's ``answer`` may have queued: ``release``
    then runs when the flow ends (True), else the caller frees it."""
    step = getattr(call, "step", None)
    if step is None or step.kind != "submit" or not may_have_queued(answer):
        return False
    if call.held is None:
        call.held = {}
    call.held[id(limit)] = release
    return True


async def release_held(call: Call, ok: bool) -> None:
    """Free every slot ``call``'s job holds (shielded: a cancelled call frees them too);
    ``ok``: the flow ended with its image."""
    held, call.held = call.held, None
    if not held:
        return
    with anyio.CancelScope(shield=True):
        for release in reversed(list(held.values())):
            try:
                await release(ok)
            except Exception:  # a bug: still free the others
                _log.exception("flux_sdk could not free a queue job's concurrency slot")


async def release_ended(call: Call, ok: bool) -> None:
    """The host says ``call``'s job ended: free its slots now. The flow's later requests
    (its result, its download) still pass each limit as a held job's do, without a slot."""
    held = call.held
    if not held:
        return
    releases = list(held.values())
    for key in held:
        held[key] = _freed
    call.held = held
    with anyio.CancelScope(shield=True):
        for release in reversed(releases):
            try:
                await release(ok)
            except Exception:  # a bug: still free the others
                _log.exception("flux_sdk could not free a queue job's concurrency slot")


async def _freed(ok: bool) -> None:
    """A slot already given back when the host said its job ended."""
