"""Batches on Ray Data: one `FluxClient` per actor, images written where every actor sees.

``Dataset.map_batches(GenerateImages, fn_constructor_kwargs={...}, concurrency=N,
batch_format="numpy")`` (or `generate_images`) reads the columns ``prompt`` and,
when present, ``seed``, ``steps``, ``width``, ``height`` and ``id``; writes each image
to ``output`` (a local directory, or any fsspec URL when fsspec is installed) as
``{id}-{slug}.{ext}`` (``id``: the row's ``id``, else the request's fingerprint) with a
``{id}-{slug}.json`` beside it that records its SHA-256 and the request; and returns
the input columns plus ``path``, ``sha256``, ``provider``, ``attempts``, ``cost``
(None: no cost ledger yet), ``skipped`` and ``error``.

A replayed task (Ray retries the batch of an actor that died) finds each finished image
by its record, checks the file's hash, and does not pay for it again. Every file is
written whole or not at all. Give ``redis_url`` and every actor shares one provider
quota through a `SharedLimit`. Install with ``pip install 'flux-sdk[ray]'``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from ._base._errors import ConfigError, FluxError
from ._base._models import GenerateRequest
from ._batching._manifest import request_key, slug
from ._batching._store import Store
from ._client import FluxClient
from ._policy._shared import SharedLimit
from .providers._base import FlowProvider, Provider

__all__ = ["OUTPUT_COLUMNS", "GenerateImages", "generate_images"]

OUTPUT_COLUMNS = ("path", "sha256", "provider", "attempts", "cost", "skipped", "error")
_FIELDS = ("seed", "steps", "width", "height")
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

ProviderSource = Provider | FlowProvider | Callable[[], Provider | FlowProvider]


class GenerateImages:
    """A callable class for ``Dataset.map_batches``: made once per actor, then called
    with each batch (a mapping of column name to values, as ``batch_format="numpy"``
    or ``"pyarrow"``/``"pandas"`` converted by Ray gives).

    ``provider`` is a zero-argument factory of a provider (made in the actor, so nothing
    that holds a key or a connection is pickled), or a
    provider when the class is made in this process. ``concurrency`` is the
    requests in flight: per actor, or across all actors with ``redis_url`` (then
    ``rate``, ``lease_seconds`` and ``limit_name`` shape the `SharedLimit`).
    """

    def __init__(
        self,
        output: str,
        provider: ProviderSource,
        *,
        concurrency: int = 8,
        redis_url: str | None = None,
        rate: float | None = None,
        limit_name: str = "flux_sdk",
        lease_seconds: float = 30.0,
        max_retries: int = 3,
    ) -> None:
        made = provider if isinstance(provider, (Provider, FlowProvider)) else provider()
        self._store = Store(output)
        limit: int | SharedLimit = concurrency
        if redis_url is not None:
            limit = SharedLimit(
                redis_url, limit_name, concurrency=concurrency, rate=rate,
                lease_seconds=lease_seconds,
            )  # fmt: skip
        elif rate is not None:
            raise ConfigError("rate= needs redis_url= (a rate per actor is rarely meant)")
        self._limit = limit
        self._loop = asyncio.new_event_loop()
        self._client = FluxClient(made, max_concurrency=limit, max_retries=max_retries)
        self._loop.run_until_complete(self._client.__aenter__())

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        results = self._loop.run_until_complete(self._run(rows))
        return _columns(batch, results)

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is None or loop.is_closed() or loop.is_running():
            return
        try:
            loop.run_until_complete(self._close())
        finally:
            loop.close()

    async def _close(self) -> None:
        await self._client.__aexit__(None, None, None)
        if isinstance(self._limit, SharedLimit):
            await self._limit.aclose()

    async def _run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in rows]

        async def one(k: int) -> None:
            results[k] = await self._one(rows[k])

        async with anyio.create_task_group() as group:
            for k in range(len(rows)):
                group.start_soon(one, k)
        return results

    async def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = dict.fromkeys(OUTPUT_COLUMNS)
        result["skipped"] = False
        try:
            request = GenerateRequest(prompt=row.get("prompt"), **{f: row.get(f) for f in _FIELDS})
        except FluxError as exc:
            result["error"] = exc.message
            return result
        key = request_key(request)
        ident = row.get("id")
        stem = f"{_safe_id(ident) if ident is not None else key}-{slug(request.prompt)}"
        earlier = await anyio.to_thread.run_sync(self._store.earlier, stem, key)
        if earlier is not None:
            result.update(earlier, attempts=0, skipped=True)
            return result
        try:
            image = await self._client.generate(request)
            name = stem + _EXTENSIONS.get(image.media_type, ".bin")
            sha256 = hashlib.sha256(image.data).hexdigest()
            record = {
                "file": name,
                "sha256": sha256,
                "key": key,
                "provider": image.provider,
                "request": request.model_dump(mode="json", exclude={"extra_body"}),
            }
            path = await anyio.to_thread.run_sync(self._store.put, stem, image.data, record)
        except FluxError as exc:
            result["error"] = exc.message
            result["attempts"] = exc.attempts or None
            return result
        result.update(path=path, sha256=sha256, provider=image.provider, attempts=image.attempts)
        return result


def generate_images(
    dataset: Any, output: str, provider: ProviderSource, *, actors: int = 2,
    batch_size: int = 64, **options: Any,
) -> Any:  # fmt: skip
    """``dataset.map_batches`` with `GenerateImages` on ``actors`` actors: a lazy Dataset
    of results (``.write_parquet(...)`` runs it and keeps the table)."""
    import ray.data

    return dataset.map_batches(
        GenerateImages,
        fn_constructor_args=(output, provider),
        fn_constructor_kwargs=options,
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch_size,
        batch_format="numpy",
    )


def _rows(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "prompt" not in batch:
        raise ConfigError(f"the dataset needs a 'prompt' column (it has {sorted(batch)})")
    columns = {name: list(batch[name]) for name in ("prompt", "id", *_FIELDS) if name in batch}
    count = len(columns["prompt"])
    return [{name: _plain(values[k]) for name, values in columns.items()} for k in range(count)]


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; a missing number (NaN) as None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value


def _columns(batch: Mapping[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np  # Ray Data depends on it

    out: dict[str, Any] = {name: batch[name] for name in batch}
    for name in OUTPUT_COLUMNS:
        values = [result[name] for result in results]
        out[name] = np.array(values, dtype=object)
    return out


def _safe_id(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(value)).strip("-.")[:64] or "row"
