"""The full stack over real loopback HTTP: FluxClient, providers, and the emulator server."""

from __future__ import annotations

import anyio
import pytest

from flux_sdk import AuthenticationError, Baseten, Dataoorts, FluxClient, GeneratedImage
from flux_sdk.emulator import DEFAULT_API_KEY, render_png

pytestmark = pytest.mark.anyio


def _expected(prompt: str, seed: int | None, steps: int = 4, size: int = 1024) -> bytes:
    return render_png(prompt, seed=seed, steps=steps, width=size, height=size)


async def test_dataoorts_json_answer_over_loopback(emulator_url: str) -> None:
    """A Dataoorts call through a real socket returns the emulator's exact image."""
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{emulator_url}/api/v1")
    async with FluxClient(provider) as client:
        image = await client.generate("a tiny astronaut hatching from an egg", seed=7, steps=3)
    assert image.data == _expected("a tiny astronaut hatching from an egg", 7, steps=3)
    assert image.media_type == "image/png"
    assert image.request_id is not None


async def test_dataoorts_raw_answer_over_loopback(raw_emulator_url: str) -> None:
    """When Dataoorts answers with raw bytes, the same image comes back."""
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{raw_emulator_url}/api/v1")
    async with FluxClient(provider) as client:
        image = await client.generate("a lighthouse", seed=3)
    assert image.data == _expected("a lighthouse", 3)


@pytest.mark.parametrize(
    "where",
    [
        {},
        {"environment": "development"},
        {"environment": "staging"},
        {"deployment_id": "abc123"},
    ],
)
async def test_baseten_every_path_over_loopback(emulator_url: str, where: dict[str, str]) -> None:
    """Each Baseten environment and deployment path reaches the model and returns its image."""
    provider = Baseten(api_key=DEFAULT_API_KEY, base_url=emulator_url, **where)
    async with FluxClient(provider) as client:
        image = await client.generate(
            "a red fox", seed=11, steps=2, width=512, height=512, extra_body={"prompt2": "in snow"}
        )
    # The emulator folds the second (T5) prompt into the image it draws.
    assert image.data == _expected("a red fox\x00in snow", 11, steps=2, size=512)


@pytest.mark.parametrize(("make", "status"), [(Dataoorts, 401), (Baseten, 403)])
async def test_wrong_key_is_an_authentication_error(
    emulator_url: str, make: type, status: int
) -> None:
    """A key the server refuses is an AuthenticationError that is not retried."""
    base = f"{emulator_url}/api/v1" if make is Dataoorts else emulator_url
    async with FluxClient(make(api_key="sk-wrong", base_url=base)) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.generate("a cat on the moon")
    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert "sk-wrong" not in str(caught.value) + caught.value.body


async def test_many_concurrent_calls_share_one_pool(emulator_url: str) -> None:
    """Sixty calls in a task group all succeed through a pool of eight connections."""
    provider = Dataoorts(api_key=DEFAULT_API_KEY, base_url=f"{emulator_url}/api/v1")
    results: dict[int, GeneratedImage] = {}

    async with FluxClient(provider, max_concurrency=8) as client:

        async def one(i: int) -> None:
            results[i] = await client.generate(f"prompt number {i}", seed=i + 1)

        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, i)
    assert sorted(results) == list(range(60))
    assert results[5].data == _expected("prompt number 5", 6)
