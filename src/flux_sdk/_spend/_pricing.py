"""What an image costs at each host: published list prices, and how to override them.

A `Price` turns a request into USD. Most hosts charge per image; fal charges per
started megapixel, Cloudflare per 512x512 tile and per step. Sums are kept as
``Decimal`` so a budget of 0.006 holds exactly five images at 0.0012, not four.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from flux_sdk._base._errors import ConfigError
from flux_sdk._base._frozen import ByValue
from flux_sdk._base._models import GenerateRequest

__all__ = ["LIST_PRICES", "Price", "as_price"]

_MEGAPIXEL = 1024 * 1024  # fal bills 1024x1024 as one megapixel
_TILE = 512


def _usd(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number of USD >= 0 (got {value!r})")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{what} must be a finite number of USD >= 0 (got {value!r})")
    return Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True, eq=False, repr=False)  # ByValue's: see _frozen
class Price(ByValue):
    """The price of one image at a host, in USD.

    The parts add up: ``per_image``, plus ``per_megapixel`` for each started megapixel
    (1024x1024 pixels), plus ``per_tile`` for each started 512x512 tile, plus
    ``per_step`` for each step. A request without a size or steps is priced at
    ``default_size`` and ``default_steps`` (the host's own defaults). ``source`` says
    where the figure comes from and when it was read.
    """

    per_image: float = 0.0
    per_megapixel: float = 0.0
    per_tile: float = 0.0
    per_step: float = 0.0
    default_size: tuple[int, int] = (1024, 1024)
    default_steps: int = 4
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("per_image", "per_megapixel", "per_tile", "per_step"):
            _usd(getattr(self, name), f"Price {name}")

    def cost(self, request: GenerateRequest) -> float:
        """What one image of ``request`` costs, in USD."""
        return float(self.exact(request))

    def exact(self, request: GenerateRequest) -> Decimal:
        width = request.width or self.default_size[0]
        height = request.height or self.default_size[1]
        steps = request.steps or self.default_steps
        total = _usd(self.per_image, "per_image")
        if self.per_megapixel:
            total += _usd(self.per_megapixel, "per_megapixel") * math.ceil(
                width * height / _MEGAPIXEL
            )
        if self.per_tile:
            tiles = math.ceil(width / _TILE) * math.ceil(height / _TILE)
            total += _usd(self.per_tile, "per_tile") * tiles
        if self.per_step:
            total += _usd(self.per_step, "per_step") * steps
        return total


LIST_PRICES: Mapping[str, Price] = {
    # The model's own page (cloud.dataoorts.com docs), "Model Cost $0.0012 Per Image",
    # updated 2025-06-28; read 2026-08.
    "dataoorts": Price(per_image=0.0012, source="dataoorts.com model page, read 2026-08"),
    # Third-party pages citing together.ai/pricing, verified 2026-05; not on Together's
    # own pages as stored.
    "together": Price(per_image=0.0027, source="together.ai/pricing via workflowlab, 2026-05"),
    # fal.ai/models/fal-ai/flux-1/schnell: USD 0.003 per megapixel, rounded up.
    "fal": Price(per_megapixel=0.003, source="fal.ai model page, read 2026-08"),
    # Replicate prices flux-schnell per output image; figure from third-party pages.
    "replicate": Price(per_image=0.003, source="replicate.com via workflowlab, 2026-05"),
    # cloudflare-docs workers-ai/platform/pricing.mdx: 4.80 neurons a 512x512 tile and
    # 9.60 a step at USD 0.011 per 1,000 neurons (the daily free neurons not counted).
    "cloudflare": Price(
        per_tile=0.0000528, per_step=0.0001056, source="Cloudflare pricing docs, read 2026-08"
    ),
    # Runs on this machine.
    "emulator": Price(source="local, free"),
}
"""Published list prices by provider name. Baseten bills GPU time of a deployment and
OpenAI-style hosts differ, so they have none: give one with ``prices=`` or
``Route(price=)``."""


def as_price(value: object, what: str) -> Price:
    """A `Price` from a `Price` or a number of USD per image."""
    if isinstance(value, Price):
        return value
    _usd(value, what)
    return Price(per_image=float(value))  # type: ignore[arg-type]


def price_table(
    names: list[tuple[str, object | None, object | None]],
    overrides: Mapping[str, float | Price] | None,
) -> dict[str, Price | None]:
    """Each host's price: the route's, else ``overrides`` (``prices=``), else the
    provider's own ``price`` attribute, else the list price, else None (unknown).

    ``names`` holds (provider name, route price, provider price attribute).
    """
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"prices must be a dict of provider name to USD (got {overrides!r})")
    overrides = dict(overrides or {})
    known = {name for name, _, _ in names}
    for name in overrides:
        if name not in known:
            raise ConfigError(
                f"prices names {name!r}, which is not a provider of this client "
                f"({', '.join(sorted(known))})"
            )
    table: dict[str, Price | None] = {}
    for name, route_price, own in names:
        if route_price is not None:
            table[name] = as_price(route_price, f"the {name} route's price")
        elif name in overrides:
            table[name] = as_price(overrides[name], f"prices[{name!r}]")
        elif own is not None:
            table[name] = as_price(own, f"{name}'s price")
        else:
            table[name] = LIST_PRICES.get(name)
    return table


def check_priced(prices: Mapping[str, Price | None], what: str) -> None:
    """A budget needs a price for every host it could send to."""
    unpriced = [name for name, price in prices.items() if price is None]
    if unpriced:
        raise ConfigError(
            f"{what} needs a price for {', '.join(unpriced)}, which has no known list "
            f"price: pass prices={{{unpriced[0]!r}: USD_PER_IMAGE}} or "
            "Route(..., price=USD_PER_IMAGE)"
        )
