"""Names of the timings a connection records on a response, for the layers above.

A response's ``extensions[HOST_TIME]`` is ``(written, answered)``: `time.monotonic()`
when the request's last byte was written and when the answer's head was read. Their
difference is the host's time alone, without the client's own work around it (waiting
for a slot, a busy event loop, reading a large body), which `AdaptiveLimit` must not
read as the host queueing. Connections that cannot tell leave it out.
"""

from __future__ import annotations

__all__ = ["HOST_TIME"]

HOST_TIME = "flux_sdk.host_time"
