"""A queue job's concurrency slot, held from its submit until its flow ends.

A queue host (fal, Replicate) counts jobs, not requests: a job takes one of its workers
from the submit until it is done, however often it is polled. So a concurrency limit
keeps the slot a ``"submit"`` request took when the host accepted it (a 2xx answer),
the job's polls, result and download pass the limit without waiting for another slot
(none could free while every slot is held by a job that needs one), and the step runner
gives the slot back once the flow has ended, however it ended: the image, a failure, or
a cancel (after the host was asked to cancel the job). Rate limits still count every
request. A one-request host's ``"generate"`` request takes and frees a slot as before.

The slots a call holds are on the call (``Call.held``): each limit's release, by the
limit's identity, called with whether the flow ended with its image.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import httpx

from flux_sdk._pipeline._call import Call

__all__ = ["Held", "Release", "holding", "keep", "release_held"]

Release = Callable[[bool], Awaitable[None]]
Held = dict[int, Release]  # what `Call.held` holds: each limit's release by its id
_log = logging.getLogger("flux_sdk")


def holding(call: Call, limit: object) -> bool:
    """Whether ``call``'s job already holds a slot of ``limit``. (Read with getattr: a
    limit may be called directly with a stand-in for a call, as tests do.)"""
    held = getattr(call, "held", None)
    return held is not None and id(limit) in held


def keep(call: Call, limit: object, response: httpx.Response, release: Release) -> bool:
    """Keep ``limit``'s slot for the job ``response`` accepted, if it is an accepted
    submit: ``release`` then runs when the flow ends (True), else the caller frees it."""
    step = getattr(call, "step", None)
    if step is None or step.kind != "submit" or not response.is_success:
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
