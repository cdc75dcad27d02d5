"""Replicate: the exact create request, every input rule, and a prediction's whole life
(create, waits, polls, cancel, download), with respx and against the emulator."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Generator
from typing import Any

import anyio
import httpx
import pytest
import respx

from flux_sdk import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    FluxClient,
    FluxEvent,
    FluxWarning,
    GenerateRequest,
    InvalidRequestError,
    InvalidResponseError,
    ProviderError,
    RateLimitError,
    Replicate,
    RequestTimeout,
    Retry,
    ServerError,
    provider,
)
from flux_sdk.emulator import (
    DEFAULT_API_KEY,
    EmulatorApp,
    Fault,
    FaultPlan,
    ReplicateQueue,
    render_png,
)
from flux_sdk.providers._replicate_inputs import ASPECT_RATIOS

from ._images import image_bytes
from ._server import serve
from ._sleeps import Sleeps

pytestmark = pytest.mark.anyio

KEY = "r8_SeCrEt.replicate.5e4d3c2b1a"
BASE = "https://api.replicate.com"
CREATE = f"{BASE}/v1/models/black-forest-labs/flux-schnell/predictions"
GET = f"{BASE}/v1/predictions/p1"
CANCEL = f"{GET}/cancel"
OUT = "https://replicate.delivery/xezq/abc/out-0.webp"
WEBP = image_bytes("WEBP", size=3)


def flow_request(request: GenerateRequest, **options: Any) -> httpx.Request:
    """The create request the flow yields first (nothing is sent)."""
    flow = Replicate(KEY, **options).generate_flow(request)
    step = next(flow)
    flow.close()
    return step.request  # type: ignore[union-attr]


def body_of(**fields: Any) -> dict[str, Any]:
    return dict(json.loads(flow_request(GenerateRequest(prompt="a fox", **fields)).content))


def prediction(status: str, **more: Any) -> dict[str, Any]:
    return {"id": "p1", "status": status, "urls": {"get": GET, "cancel": CANCEL}, **more}


def answer(status: str, code: int = 200, **more: Any) -> httpx.Response:
    return httpx.Response(code, json=prediction(status, **more))


DONE = answer("succeeded", output=[OUT])


# The request


def test_create_request_method_url_headers_and_default_body() -> None:
    """POST to the model's predictions URL, Bearer token, Prefer: wait=60, one image."""
    request = flow_request(GenerateRequest(prompt="a fox"))
    assert (request.method, str(request.url)) == ("POST", CREATE)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["prefer"] == "wait=60"
    assert json.loads(request.content) == {"input": {"prompt": "a fox", "num_outputs": 1}}


def test_wait_none_sends_no_prefer_and_wait_n_sends_it() -> None:
    assert "prefer" not in flow_request(GenerateRequest(prompt="a"), wait=None).headers
    assert flow_request(GenerateRequest(prompt="a"), wait=5).headers["prefer"] == "wait=5"


def test_a_seed_turns_go_fast_off_so_it_reproduces() -> None:
    """go_fast (fp8) is not deterministic even with a seed: a seeded call sends false."""
    assert body_of(seed=42, steps=2)["input"] == {
        "prompt": "a fox",
        "num_outputs": 1,
        "num_inference_steps": 2,
        "seed": 42,
        "go_fast": False,
    }
    assert "go_fast" not in body_of()["input"]
    assert body_of(seed=42, extra_body={"go_fast": True})["input"]["go_fast"] is True


@pytest.mark.parametrize(("ratio", "size"), list(ASPECT_RATIOS.items()))
def test_each_exact_size_is_sent_as_its_aspect_ratio(ratio: str, size: tuple[int, int]) -> None:
    data = body_of(width=size[0], height=size[1])["input"]
    assert data["aspect_ratio"] == ratio
    assert "width" not in data
    assert "height" not in data


def test_quarter_megapixel_sizes_are_halved() -> None:
    data = body_of(width=672, height=384, extra_body={"megapixels": "0.25"})["input"]
    assert (data["aspect_ratio"], data["megapixels"]) == ("16:9", "0.25")


@pytest.mark.parametrize(
    "extra",
    [
        {"output_format": "png"},
        {"output_format": "jpg", "output_quality": 90},
        {"aspect_ratio": "9:16"},
        {"disable_safety_checker": True},
    ],
)
def test_extra_body_inputs_pass_through(extra: dict[str, Any]) -> None:
    assert body_of(extra_body=extra)["input"] == {"prompt": "a fox", "num_outputs": 1, **extra}


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"width": 1000, "height": 1000}, r"only these sizes .*1024x1024 \(1:1\).*got 1000x1000"),
        ({"width": 1024}, "needs both width and height"),
        ({"width": 1024, "height": 1024, "extra_body": {"aspect_ratio": "1:1"}}, "not both"),
        ({"steps": 5}, "steps between 1 and 4"),
        ({"extra_body": {"num_inference_steps": 2}}, "use the steps=... argument"),
        ({"extra_body": {"width": 512}}, "duplicates"),
        ({"extra_body": {"num_outputs": 2}}, "one image per call"),
        ({"extra_body": {"output_format": "gif"}}, "webp, jpg, png"),
        ({"extra_body": {"aspect_ratio": "7:5"}}, "aspect_ratio"),
        ({"extra_body": {"megapixels": "2"}}, "megapixels"),
    ],
)
async def test_requests_the_model_cannot_serve_fail_before_sending(
    fields: dict[str, Any], match: str
) -> None:
    """Checked by the client before any request: the error names the host and the rule."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(CREATE).respond(201, json=prediction("starting"))
        async with FluxClient(Replicate(KEY)) as flux:
            with pytest.raises(InvalidRequestError, match=match) as caught:
                await flux.generate("a fox", **fields)
    assert route.call_count == 0
    assert caught.value.provider == "replicate"


def test_seed_zero_is_sent_with_a_warning() -> None:
    """Replicate's model treats 0 as 'random'; the user is told how to reproduce."""
    with pytest.warns(FluxWarning, match="seed from 1 up"):
        assert body_of(seed=0)["input"]["seed"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body_of(seed=1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"model": "flux-schnell"}, "owner/name"),
        ({"model": "black-forest-labs/flux-schnell:abc"}, "owner/name"),
        ({"wait": 61}, "1 to 60"),
        ({"wait": True}, "whole seconds"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"base_url": "http://api.replicate.com"}, "https"),
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Replicate(KEY, **options)


def test_the_token_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="REPLICATE_API_TOKEN"):
        Replicate()
    monkeypatch.setenv("REPLICATE_API_TOKEN", KEY)
    made = provider("replicate")
    assert isinstance(made, Replicate)
    assert KEY not in repr(made)


# The flow, with respx


@pytest.fixture
def router() -> Generator[respx.MockRouter, None, None]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def host(
    router: respx.MockRouter,
    *,
    create: list[Any] | None = None,
    polls: list[Any] | None = None,
    download: list[Any] | None = None,
) -> dict[str, respx.Route]:
    image = httpx.Response(200, content=WEBP, headers={"content-type": "image/webp"})
    return {
        "create": router.post(CREATE).mock(side_effect=create or [answer("starting", 201)]),
        "poll": router.get(GET).mock(side_effect=polls or [DONE]),
        "download": router.get(OUT).mock(side_effect=download or [image]),
        "cancel": router.post(CANCEL).mock(return_value=answer("canceled")),
    }


def client(clock: Sleeps, **options: Any) -> FluxClient:
    return FluxClient(
        Replicate(KEY, poll_interval=0.25), max_retries=Retry(3, sleep=clock), **options
    )


async def test_a_prediction_runs_create_polls_and_download(router: respx.MockRouter) -> None:
    routes = host(router, polls=[answer("starting"), answer("processing"), DONE])
    clock = Sleeps()
    events: list[FluxEvent] = []
    async with client(clock, on_event=events.append) as flux:
        image = await flux.generate("a fox", seed=3)
    assert (image.data, image.media_type, image.request_id) == (WEBP, "image/webp", "p1")
    assert [r.call_count for r in routes.values()] == [1, 3, 1, 0]
    assert clock.delays == [0.25, 0.25, 0.25]
    assert [e.step for e in events if e.kind == "attempt"] == [
        "submit",
        "poll",
        "poll",
        "poll",
        "download",
    ]
    assert routes["poll"].calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in routes["download"].calls.last.request.headers


async def test_a_create_that_waited_to_the_end_needs_no_poll(router: respx.MockRouter) -> None:
    """With Prefer: wait the create may answer a finished prediction: straight to the image."""
    output = {"output": OUT}  # a single URL rather than a list is read too
    routes = host(router, create=[answer("succeeded", 201, **output)])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert (routes["poll"].call_count, routes["download"].call_count) == (0, 1)


async def test_a_processing_answer_that_holds_the_output_is_done(
    router: respx.MockRouter,
) -> None:
    """Replicate's Prefer: wait may answer `processing` with the output already in it;
    the official run() returns it then, so no poll is sent (each poll costs a request)."""
    routes = host(router, create=[answer("processing", 201, output=[OUT])])
    clock = Sleeps()
    async with client(clock) as flux:
        image = await flux.generate("a fox")
    assert (image.data, image.request_id) == (WEBP, "p1")
    assert [r.call_count for r in routes.values()] == [1, 0, 1, 0]
    assert clock.delays == []


def data_uri(data: bytes, media_type: str = "image/webp") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize("as_list", [True, False], ids=["list", "string"])
async def test_a_data_uri_output_is_decoded_not_downloaded(
    router: respx.MockRouter, as_list: bool
) -> None:
    """replicate-python decodes an output that is a data: URI (its helpers.py); so does
    flux_sdk, with the same checks as fal's data URIs, and fetches nothing."""
    uri = data_uri(WEBP)
    done = answer("succeeded", 201, output=[uri] if as_list else uri)
    routes = host(router, create=[done])
    async with client(Sleeps()) as flux:
        image = await flux.generate("a fox")
    assert (image.data, image.media_type, image.request_id) == (WEBP, "image/webp", "p1")
    assert [r.call_count for r in routes.values()] == [1, 0, 0, 0]


@pytest.mark.parametrize(
    ("output", "match"),
    [
        ("data:image/png;base64,@@not base64@@", "not valid base64"),
        (data_uri(b"<html>an error page</html>", "image/png"), "image"),
    ],
    ids=["bad-base64", "not-an-image"],
)
async def test_a_bad_data_uri_output_is_an_invalid_response(
    router: respx.MockRouter, output: str, match: str
) -> None:
    host(router, create=[answer("succeeded", 201, output=[output])])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match=match) as caught:
            await flux.generate("a fox")
    assert caught.value.provider == "replicate"


async def test_json_calls_accept_json_and_the_download_accepts_images(
    router: respx.MockRouter,
) -> None:
    routes = host(router, polls=[DONE])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    for name in ("create", "poll"):
        assert routes[name].calls.last.request.headers["accept"] == "application/json"
    assert routes["download"].calls.last.request.headers["accept"].startswith("image/")


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500), httpx.Response(429, json={"detail": "throttled"}), httpx.ReadError("x")],
    ids=["500", "429", "reset"],
)
async def test_failed_polls_are_retried_without_a_second_create(
    router: respx.MockRouter, failure: Any
) -> None:
    routes = host(router, polls=[failure, failure, DONE])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert (routes["create"].call_count, routes["poll"].call_count) == (1, 3)


async def test_a_throttled_create_is_sent_again_but_a_500_is_not(router: respx.MockRouter) -> None:
    throttled = httpx.Response(
        429, json={"detail": "Request was throttled."}, headers={"retry-after": "0"}
    )
    routes = host(router, create=[throttled, answer("succeeded", 201, output=[OUT])])
    async with client(Sleeps()) as flux:
        await flux.generate("a fox")
    assert routes["create"].call_count == 2
    routes["create"].mock(side_effect=[httpx.Response(500), answer("starting", 201)])
    async with client(Sleeps()) as flux:
        with pytest.raises(ServerError):
            await flux.generate("a fox")
    assert routes["create"].call_count == 3  # one more: the 500 may hide a created prediction


@pytest.mark.parametrize(
    ("last", "match"),
    [
        (answer("failed", error="All generated images contained NSFW content."), "failed: All"),
        (answer("canceled"), "canceled on Replicate"),
        (answer("aborted"), "not charged"),
        (answer("succeeded", output=[]), "safety checker"),
        (answer("exploded"), "'exploded'"),
    ],
)
async def test_a_prediction_that_ended_without_an_image_is_not_created_again(
    router: respx.MockRouter, last: httpx.Response, match: str
) -> None:
    routes = host(router, polls=[answer("processing"), last])
    async with client(Sleeps()) as flux:
        with pytest.raises(ProviderError, match=match) as caught:
            await flux.generate("a fox")
    assert not caught.value.retryable
    assert caught.value.request_id == "p1"
    assert (routes["create"].call_count, routes["download"].call_count) == (1, 0)


@pytest.mark.parametrize(
    ("code", "body", "error", "match"),
    [
        (
            401,
            {"title": "Unauthenticated", "detail": "You did not pass a valid token"},
            AuthenticationError,
            "valid token",
        ),
        (
            422,
            {"title": "Input validation failed", "detail": "input.seed: bad"},
            BadRequestError,
            "input.seed",
        ),
        (429, {"detail": "Request was throttled."}, RateLimitError, "throttled"),
    ],
)
async def test_create_errors_are_decoded(
    router: respx.MockRouter, code: int, body: dict[str, Any], error: type[Exception], match: str
) -> None:
    host(router, create=[httpx.Response(code, json=body)] * 4)
    async with client(Sleeps()) as flux:
        with pytest.raises(error, match=match):
            await flux.generate("a fox")


async def test_a_status_url_on_another_host_gets_no_token(router: respx.MockRouter) -> None:
    """urls.get elsewhere than the API is refused: the token is sent to the API only."""
    elsewhere = {"id": "p1", "status": "starting", "urls": {"get": "https://evil.example/p1"}}
    host(router, create=[httpx.Response(201, json=elsewhere)])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match="sends your token nowhere else"):
            await flux.generate("a fox")


async def test_a_body_of_the_wrong_shape_is_an_invalid_response(router: respx.MockRouter) -> None:
    host(router, create=[httpx.Response(201, json={"status": "starting"})])
    async with client(Sleeps()) as flux:
        with pytest.raises(InvalidResponseError, match="unexpected shape"):
            await flux.generate("a fox")


async def test_the_deadline_cancels_the_prediction(router: respx.MockRouter) -> None:
    routes = host(router, polls=[answer("processing")] * 10_000)
    flux = FluxClient(Replicate(KEY, poll_interval=0.01), deadline=0.2)
    async with flux:
        with pytest.raises(RequestTimeout):
            await flux.generate("a fox")
    assert (routes["create"].call_count, routes["cancel"].call_count) == (1, 1)
    assert routes["cancel"].calls.last.request.headers["authorization"] == f"Bearer {KEY}"


# Against the emulator, over loopback


def expected(
    prompt: str, seed: int | None, steps: int = 4, size: tuple[int, int] = (1024, 1024)
) -> bytes:
    return render_png(prompt, seed=seed, steps=steps, width=size[0], height=size[1])


async def test_the_whole_life_against_the_emulator() -> None:
    """starting twice, processing once, then the image the emulator serves itself."""
    app = EmulatorApp(replicate=ReplicateQueue(starting=2, processing=1, run_seconds=None))
    clock = Sleeps()
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, poll_interval=0.1)
        async with FluxClient(replicate, max_retries=Retry(3, sleep=clock)) as flux:
            image = await flux.generate("a fox", seed=9, steps=2, width=1344, height=768)
    assert image.data == expected("a fox", 9, 2, (1344, 768))
    (made,) = app.replicate.predictions.values()
    assert (made.status, made.polls, made.cancel_requests) == ("succeeded", 3, 0)
    assert made.input["go_fast"] is False
    assert clock.delays == [0.1, 0.1, 0.1]


async def test_faults_on_polls_and_download_are_retried_against_the_emulator() -> None:
    faults = FaultPlan(
        [None, Fault.SERVER_ERROR, Fault.RATE_LIMIT, None, Fault.BAD_GATEWAY], retry_after=0
    )
    app = EmulatorApp(replicate=ReplicateQueue(starting=1, processing=0), faults=faults)
    with serve(app) as url:
        async with FluxClient(
            Replicate(DEFAULT_API_KEY, base_url=url), max_retries=Retry(3, sleep=Sleeps())
        ) as flux:
            image = await flux.generate("a fox", seed=2)
    assert image.data == expected("a fox", 2)
    assert len(app.replicate.predictions) == 1


@pytest.mark.parametrize(("outcome", "match"), [("failed", "NSFW"), ("aborted", "not charged")])
async def test_ended_predictions_against_the_emulator(outcome: Any, match: str) -> None:
    app = EmulatorApp(replicate=ReplicateQueue(starting=0, processing=1, outcome=outcome))
    with serve(app) as url:
        async with FluxClient(
            Replicate(DEFAULT_API_KEY, base_url=url), max_retries=Retry(3, sleep=Sleeps())
        ) as flux:
            with pytest.raises(ProviderError, match=match):
                await flux.generate("a fox")


async def test_the_deadline_cancels_on_the_emulator() -> None:
    app = EmulatorApp(replicate=ReplicateQueue(processing=10**9, run_seconds=None))
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, poll_interval=0.02)
        async with FluxClient(replicate, deadline=0.3) as flux:
            with pytest.raises(RequestTimeout):
                await flux.generate("a fox")
    (made,) = app.replicate.predictions.values()
    assert (made.status, made.cancel_requests) == ("canceled", 1)


class Held:
    """The emulator's sleep while it holds a create: records the seconds, waits none."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize(
    ("wait", "run_seconds", "held", "polls"),
    [(60, 0.0, [0.0], 0), (5, 4.0, [4.0], 0), (5, 30.0, [5.0], 2), (None, 0.0, [], 2)],
    ids=["fast", "in-time", "too-slow", "no-prefer"],
)
async def test_the_emulator_holds_a_prefer_wait_create_until_the_prediction_ends(
    wait: int | None, run_seconds: float, held: list[float], polls: int
) -> None:
    """As Replicate: a create with Prefer: wait=N is answered when the prediction ends
    (with its output) if it ends within N seconds, else after N seconds, still running."""
    sleep = Held()
    queue = ReplicateQueue(starting=1, processing=1, run_seconds=run_seconds, sleep=sleep)
    app = EmulatorApp(replicate=queue)
    with serve(app) as url:
        replicate = Replicate(DEFAULT_API_KEY, base_url=url, wait=wait, poll_interval=0.1)
        async with FluxClient(replicate, max_retries=Retry(3, sleep=Sleeps())) as flux:
            image = await flux.generate("a fox", seed=5)
    assert image.data == expected("a fox", 5)
    (made,) = app.replicate.predictions.values()
    assert (made.polls, made.finished, sleep.seconds) == (polls, polls == 0, held)


async def test_a_bare_prefer_wait_is_held_up_to_sixty_seconds() -> None:
    sleep = Held()
    app = EmulatorApp(replicate=ReplicateQueue(run_seconds=90, sleep=sleep))
    with serve(app) as url:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{url}/v1/models/black-forest-labs/flux-schnell/predictions",
                json={"input": {"prompt": "a fox"}},
                headers={"Authorization": f"Bearer {DEFAULT_API_KEY}", "Prefer": "wait"},
            )
    assert (response.status_code, response.json()["status"], sleep.seconds) == (
        201,
        "starting",
        [60.0],
    )


async def test_the_emulator_refuses_a_wrong_token_and_a_bad_input() -> None:
    with serve(EmulatorApp()) as url:
        async with FluxClient(Replicate("r8_wrong", base_url=url)) as flux:
            with pytest.raises(AuthenticationError, match="authentication token"):
                await flux.generate("a fox")
        async with FluxClient(Replicate(DEFAULT_API_KEY, base_url=url)) as flux:
            with pytest.raises(BadRequestError, match="go_fast"):
                await flux.generate("a fox", extra_body={"go_fast": "yes"})
