"""Ray Data on a local Ray instance against the emulator on loopback: 300 prompts, one
actor dying mid-run, every image exactly once and byte-correct, the host never above
the shared limit."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux_sdk import Together
from flux_sdk.emulator import Capacity, render_png
from flux_sdk.ray import GenerateImages
from tests._server import serve

from ._host import KEY, PATH, counting_emulator
from .conftest import missing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = 300
DIE_AT = 150  # the row whose actor dies, once

# Ray's own deprecation notices about its settings are not this project's to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        missing("ray is not installed (pip install 'flux-sdk[ray]')")
    path = os.pathsep.join([ROOT, os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        _node_ip_address="127.0.0.1",  # loopback only
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


class DiesOnce(GenerateImages):
    """Writes the rows before ``DIE_AT`` of its batch, then its process exits, once."""

    def __init__(self, marker: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marker = Path(marker)

    def __call__(self, batch: Any) -> dict[str, Any]:
        ids = [int(i) for i in batch["id"]]
        if DIE_AT in ids and not self._marker.exists():
            before = {name: values[: ids.index(DIE_AT)] for name, values in batch.items()}
            super().__call__(before)
            self._marker.touch()
            os._exit(1)
        return super().__call__(batch)


def test_300_prompts_on_ray_survive_a_dead_actor_and_pay_once(
    ray_local: Any, redis_url: str, tmp_path: Path
) -> None:
    ray = ray_local
    host = counting_emulator(Capacity(replicas=4, median=0.02, queue=0, overflow="429"))
    rows: list[dict[str, Any]] = [
        {"id": k, "prompt": f"a lighthouse number {k}", "seed": k, "steps": 4,
         "width": 64, "height": 64}
        for k in range(ROWS)
    ]  # fmt: skip
    out = tmp_path / "images"
    with serve(host) as url:
        provider = functools.partial(Together, KEY, base_url=url + PATH)
        dataset = ray.data.from_items(rows).map_batches(
            DiesOnce,
            fn_constructor_args=(str(tmp_path / "died"), str(out), provider),
            fn_constructor_kwargs={"redis_url": redis_url, "concurrency": 4,
                                   "limit_name": f"ray-{uuid.uuid4().hex}"},
            compute=ray.data.ActorPoolStrategy(size=2), batch_size=50, batch_format="numpy",
        )  # fmt: skip
        table = (
            dataset.write_parquet(str(tmp_path / "results"))
            or ray.data.read_parquet(str(tmp_path / "results")).to_pandas()
        )
    assert (tmp_path / "died").exists()  # an actor did die mid-run
    results = sorted(table.to_dict("records"), key=lambda r: r["id"])
    assert [r["id"] for r in results] == list(range(ROWS))
    assert all(r["error"] is None for r in results), [r["error"] for r in results][:3]
    # Exactly one image per prompt, each the bytes the emulator draws for it.
    images = sorted(out.glob("*.png"))
    assert len(images) == ROWS
    assert not list(out.glob(".*"))  # nothing written half
    for row, result in zip(rows, results, strict=True):
        expected = render_png(
            str(row["prompt"]), seed=int(row["seed"]), steps=4, width=64, height=64
        )
        assert Path(result["path"]).read_bytes() == expected
    # Paid once per image: the rows written before the death were not asked for again.
    assert host.statuses == {200: ROWS}
    assert sum(bool(r["skipped"]) for r in results) == DIE_AT % 50
    assert host.max_in_flight <= 4
    print(f"\nray: {ROWS} images, max in flight at the host {host.max_in_flight} (limit 4)")
