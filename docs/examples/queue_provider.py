"""A queue host as a flow provider: submit a paid job, poll it, download the image.

The host in this example takes ``POST {base}/jobs`` with ``{"prompt", "seed"}`` and
answers ``{"id", "status_url", "cancel_url"}``; ``GET status_url`` answers
``{"status": "QUEUED" | "RUNNING" | "DONE" | "FAILED", "image_url", "error"}``;
``POST cancel_url`` cancels the job. The provider does no I/O and never sleeps: it says
what it needs next, and the client sends, retries, waits and cancels.
"""

from __future__ import annotations

from typing import Any

import httpx

from flux_sdk import GeneratedImage, GenerateRequest, ParamRules, ProviderError
from flux_sdk.providers import Accepted, Flow, Step, Wait, raise_for_status

POLL_EVERY = 0.5  # seconds between status polls


class QueueHost:
    """FLUX.1 [schnell] on a queue host: one submit, polls, one download."""

    name = "queue-host"
    rules = ParamRules(steps=(1, 4))

    def __init__(self, base_url: str = "https://queue.example", api_key: str = "sk-queue") -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def generate_flow(self, request: GenerateRequest) -> Flow:
        body: dict[str, Any] = {"prompt": request.prompt, "seed": request.seed}
        submit = httpx.Request("POST", f"{self.base_url}/jobs", json=body, headers=self._headers)
        # "submit": the client retries it only when the host proves it refused the job.
        job = yield Step(submit, self._json, kind="submit")
        cancel = httpx.Request("POST", job["cancel_url"], headers=self._headers)
        # From here on the job is paid for: never submitted again, cancelled if abandoned.
        yield Accepted(job_id=job["id"], cancel=cancel)
        while True:
            yield Wait(POLL_EVERY)
            poll = httpx.Request("GET", job["status_url"], headers=self._headers)
            status = yield Step(poll, self._json, kind="poll")  # retried when it fails
            if status["status"] == "DONE":
                break
            if status["status"] == "FAILED":
                raise ProviderError(
                    f"{self.name} failed the job: {status.get('error') or 'no reason given'}",
                    provider=self.name,
                    status_code=200,
                    retryable=False,  # a failed job was still accepted: not submitted again
                )
        download = httpx.Request("GET", status["image_url"])  # a CDN: no key sent there
        data: bytes = yield Step(download, self._body, kind="download")
        return GeneratedImage.from_data(data, provider=self.name, request=request)

    def _json(self, response: httpx.Response) -> Any:
        raise_for_status(response, provider=self.name)
        return response.json()

    def _body(self, response: httpx.Response) -> bytes:
        raise_for_status(response, provider=self.name)
        return response.content
