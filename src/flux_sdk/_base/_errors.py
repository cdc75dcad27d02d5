"""Every failure a caller can see, under one root.

    FluxError                       retryable?
    ├── ConfigError                 no   (missing key or model id, bad base URL)
    ├── InvalidRequestError         no   (also a ValueError; raised before any network I/O)
    ├── ProviderError               by status: 408, 409, 429 and 5xx yes, others no
    │   ├── AuthenticationError          401, 403
    │   ├── RateLimitError               429
    │   │   └── QuotaExceeded       no   402, or a 429 that says the credit/quota is spent
    │   ├── ServerError                  5xx
    │   └── BadRequestError              any other 4xx
    ├── TransportError              yes  (connect/read failures, truncated bodies)
    │   └── RequestTimeout          yes
    ├── InvalidResponseError        usually yes (a 2xx that carries no usable image)
    ├── BudgetExceeded              no   (the next attempt could pass the budget: not sent)
    └── SaveError                   no   (also an OSError; a batch could not write its directory)

The retry policy asks ``error.retryable`` (and, with ``retry_maybe_billed=False``,
``error.billed``); nothing else in the library keeps a list of status codes.

``error.billed`` says whether the host may have charged for the failure: ``"no"`` when
the request was refused or never sent, ``"maybe"`` when the host may have done the work
(a timeout after the body was sent, a 5xx, a 2xx without a usable image, a queue job
that was accepted). On the error a call raises it covers the whole call: the worst of
its attempts. ``error.cost`` is what the call may have cost at most, in USD (None when
no price is known for the host).
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from typing import Any, Literal

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Billed",
    "BudgetExceeded",
    "ConfigError",
    "FluxError",
    "FluxWarning",
    "InvalidRequestError",
    "InvalidResponseError",
    "ProviderError",
    "QuotaExceeded",
    "RateLimitError",
    "RequestTimeout",
    "SaveError",
    "ServerError",
    "TransportError",
]

_RETRYABLE_STATUS = frozenset({408, 409, 429})
# A 503 that says the replica is going away: it refused the request before any work.
_DRAINING = re.compile(r"\bdrain", re.IGNORECASE)

Billed = Literal["no", "maybe", "yes"]
"""Whether the host may have charged: ``"no"`` (refused or never sent), ``"maybe"`` (it
may have done the work), ``"yes"`` (an image came back)."""


class FluxWarning(UserWarning):
    """A request that will work, but probably not the way the caller meant."""


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn(message: str) -> None:
    """Warn, pointing at the first line outside flux_sdk: the caller's own code."""
    level = 2  # 1 would be this function; 2 is the frame that called it
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, FluxWarning, stacklevel=level)


class FluxError(Exception):
    """Base class of every error flux_sdk raises.

    ``retryable`` says whether sending the same request again can succeed. ``attempts``
    is how many attempts the call made before giving up, and ``previous`` holds the
    errors of the earlier attempts, oldest first.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retryable: bool | None = None,
        billed: Billed | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        if retryable is not None:
            self.retryable = retryable
        self.attempts = 1
        self.previous: tuple[FluxError, ...] = ()
        # The kind of request that failed ("generate", "submit", ...), when one did.
        self.step: str | None = None
        # The provider of each HTTP request the call sent, in order (several when routed).
        self.hosts: tuple[str, ...] = ()
        self._billed = billed
        # What the call may have cost at most (USD); set when the call ends.
        self.cost: float | None = None

    @property
    def billed(self) -> Billed:
        """Whether the host may have charged for this failure: ``"no"``, ``"maybe"``
        (see the module docstring)."""
        return self._billed if self._billed is not None else self._default_billed()

    @billed.setter
    def billed(self, value: Billed) -> None:
        self._billed = value

    def _default_billed(self) -> Billed:
        return "no"  # set up wrongly, refused before sending, or a local failure

    @property
    def resend_could_pay_twice(self) -> bool:
        """Whether sending this call again could pay a second time (the host may have
        charged for it). A routed call left failed with False tried every route that
        could take it without risk; a batch may resend it safely."""
        return self.billed != "no"

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConfigError(FluxError):
    """The client or provider is set up wrongly: nothing was sent."""


class InvalidRequestError(FluxError, ValueError):
    """The request breaks a rule of the provider: nothing was sent."""


class ProviderError(FluxError):
    """The provider refused or failed the request.

    Usually an HTTP error status; a failure reported inside a 2xx body (Dataoorts'
    ``success: false``, a Baseten ``{"error": ...}``) keeps that 2xx ``status_code``.

    ``body`` is an excerpt of what it sent (at most 1,000 characters), ``retry_after``
    the delay in seconds it asked for, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int,
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        billed: Billed | None = None,
    ) -> None:
        if retryable is None:
            retryable = status_code in _RETRYABLE_STATUS or status_code >= 500
        super().__init__(message, provider=provider, retryable=retryable, billed=billed)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after

    def _default_billed(self) -> Billed:
        status = self.status_code
        if 400 <= status < 500:
            return "no"  # refused before any work: a key, a limit, the request itself
        if status == 503 and (_DRAINING.search(self.body) or _DRAINING.search(self.message)):
            return "no"  # a replica going away refuses new work
        return "maybe"  # a 5xx after the model may have run, a failure inside a 2xx


class AuthenticationError(ProviderError):
    """HTTP 401 or 403: the API key is missing, wrong, or lacks access."""


class RateLimitError(ProviderError):
    """HTTP 429: the provider asks us to slow down (see ``retry_after``)."""


class QuotaExceeded(RateLimitError):
    """The account's credit or quota at this host is spent (HTTP 402; a 429 that says
    ``insufficient_quota``; Cloudflare's code 3036): waiting seconds will not help, so it is
    never retried at that host. A router moves the call to another route and shuts this
    one for the breaker's ``quota_cooldown``. A `RateLimitError` so that code catching
    "the host refused for a limit" still catches it; ``retryable`` is always False.
    """

    retryable = False

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retryable = False

    @classmethod
    def from_error(cls, error: ProviderError, advice: str) -> QuotaExceeded:
        """``error`` (a 402 or 429 already parsed) as a spent quota, with what to do."""
        quota = cls(
            f"{error.message}; {advice}",
            provider=error.provider,
            status_code=error.status_code,
            body=error.body,
            request_id=error.request_id,
            retry_after=error.retry_after,
            billed="no",
        )
        quota.step = error.step
        return quota


class ServerError(ProviderError):
    """HTTP 5xx: the provider failed; usually transient."""


class BadRequestError(ProviderError):
    """Any other HTTP 4xx: the provider refused the request as sent."""


class TransportError(FluxError):
    """The connection failed, was reset, or ended before the whole body arrived.

    ``request_sent`` is False when no byte of the request left (the connection could
    not be made): the host cannot have started any work for it.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retryable: bool | None = None,
        request_sent: bool = True,
        billed: Billed | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=retryable, billed=billed)
        self.request_sent = request_sent

    def _default_billed(self) -> Billed:
        return "maybe" if self.request_sent else "no"


class RequestTimeout(TransportError):
    """An attempt, or the whole call, ran out of time."""


class InvalidResponseError(FluxError):
    """A success status that carries no usable image.

    A missing field, broken base64, bytes that are not an image, or an HTML page: usually
    a transient fault somewhere between us and the model, so retryable unless said
    otherwise (a body over the size cap is not).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        billed: Billed | None = None,
    ) -> None:
        super().__init__(message, provider=provider, retryable=retryable, billed=billed)
        self.status_code = status_code
        self.request_id = request_id

    def _default_billed(self) -> Billed:
        return "maybe"  # an answer came, so the model may have run


class BudgetExceeded(FluxError):
    """The next attempt could take the spend past the budget, so it was not sent.

    Not retryable: raise the budget (``FluxClient(budget=...)``, ``generate_many(budget=)``
    or ``flux-sdk batch --budget``) to go on. ``budget`` is the limit in USD, ``spent``
    what had been spent or reserved (maybe-billed attempts counted as billed), and
    ``needed`` the worst-case cost of the attempt that was held back.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        budget: float,
        spent: float,
        needed: float,
    ) -> None:
        super().__init__(message, provider=provider, retryable=False)
        self.budget = budget
        self.spent = spent
        self.needed = needed


class SaveError(FluxError, OSError):
    """A batch could not write its directory (disk full, no permission, locked by another
    batch). The batch stops: paying for images that cannot be kept would be waste."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return self.message


def error_for_status(
    status_code: int,
    message: str,
    *,
    provider: str,
    body: str = "",
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` subclass that names what an HTTP status means."""
    cls: type[ProviderError]
    if status_code in (401, 403):
        cls = AuthenticationError
    elif status_code == 402:
        cls = QuotaExceeded  # Payment Required: the account has no credit left
        message += "; the account's credit at this host is spent: add credit there"
    elif status_code == 429:
        cls = RateLimitError
    elif status_code >= 500:
        cls = ServerError
    elif 400 <= status_code < 500:
        cls = BadRequestError
        if status_code == 413 and "too large for" not in message:
            message += (
                f"; the request body is too large for {provider}: send a smaller request "
                "(smaller input images)"
            )
    else:
        cls = ProviderError
    return cls(
        message,
        provider=provider,
        status_code=status_code,
        body=body,
        request_id=request_id,
        retry_after=retry_after,
    )
