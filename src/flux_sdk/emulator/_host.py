"""What one emulated host provides to the app: its route, its answers and its errors.

A host is one module (``_dataoorts``, ``_baseten``, ``_openai``) with one object that
meets ``Host``; adding a host is adding such a module and listing it in ``_app.HOSTS``.
What hosts share (the key check, drawing, canned faults, ``OneShot`` for a host that
answers at once) is in ``_wire``; a host module keeps its paths, fields and messages.
A host answers POST only unless it has a ``methods`` tuple (Replicate's polls are GETs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from flux_sdk.emulator._asgi import Scope, Send
from flux_sdk.emulator._faults import Canned, Fault, FaultPlan
from flux_sdk.emulator._queue import Jobs, QueueTiming
from flux_sdk.emulator._request import Reject


class JobLoad(Protocol):
    """A queue host's capacity as its routes see it (``Load`` meets it): a job holds a
    replica from submit to end, its other requests hold none."""

    def admit_job(self, job_id: str) -> object | None:
        """Take the job (None: refused, every replica and queue place taken)."""
        ...

    def job_state(self, job_id: str) -> str | None:
        """``"queued"``, ``"running"`` or ``"completed"``; None if not taken here."""
        ...

    def cancel_job(self, job_id: str) -> None:
        """End the job now, freeing its replica."""
        ...


class Settings(Protocol):
    """The app's options a host reads on each request (``EmulatorApp`` meets it)."""

    api_key: str
    dataoorts_response: Literal["json", "raw"]
    image_bytes: int | None
    default_size: int
    cloudflare_daily_images: int | None
    cloudflare_images_served: int
    queue: QueueTiming
    jobs: Jobs

    @property
    def load(self) -> Mapping[str, JobLoad]:
        """The hosts with a ``Capacity``, by name."""
        ...


class Host(Protocol):
    """One provider's wire format on the emulator."""

    @property
    def name(self) -> str:
        """A short name for logs and ``x-request-id`` prefixes."""
        ...

    def matches(self, path: str) -> bool:
        """Whether this host answers requests to ``path``."""
        ...

    def response_headers(self, request_id: str) -> dict[str, str]:
        """Headers every answer of this host carries, besides ``x-request-id``."""
        ...

    async def answer(
        self, settings: Settings, scope: Scope, body: bytes, headers: Mapping[str, str], send: Send
    ) -> None:
        """Check the key and the body, then send the image; raise ``Reject`` to refuse."""
        ...

    async def refuse(self, send: Send, reject: Reject, headers: Mapping[str, str]) -> None:
        """Send ``reject`` in this host's error shape."""
        ...

    def fault(self, fault: Fault, plan: FaultPlan) -> Canned | None:
        """The whole answer for an HTTP-level fault in this host's shapes; None leaves
        it to ``inject`` (an HTML page, or a transport-level fault)."""
        ...
