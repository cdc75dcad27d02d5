"""Rules for fetching a URL a host answered with (a queue host's image on its CDN).

The URL came from a server, so it is not trusted like a base URL the user chose: it must
be https (plain http only when the provider itself is on loopback), it must not point
into a private, loopback or link-local network unless the provider is on loopback, the
key is never sent to a host other than the provider's own, and redirects are followed a
bounded number of times, each checked again. DNS names are checked by name only: a
public name that resolves to a private address is not caught here.
"""

from __future__ import annotations

import ipaddress

import httpx

from ._errors import InvalidResponseError
from .providers._wire import is_loopback

__all__ = ["MAX_REDIRECTS", "check_download", "redirected"]

MAX_REDIRECTS = 5
# Headers that carry a credential: never sent to a host other than the provider's.
_CREDENTIALS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


def check_download(request: httpx.Request, origin: httpx.URL | None, provider: str) -> None:
    """Raise `InvalidResponseError` (not retryable) unless ``request`` may be sent.

    ``origin`` is the URL of the call's first request: the provider's own host.
    """
    url = request.url
    local_origin = origin is not None and is_loopback(origin.host)
    if url.scheme not in ("https", "http") or (url.scheme == "http" and not local_origin):
        raise _refused(provider, url, "it is not an https:// URL")
    if not local_origin and _is_internal(url.host):
        raise _refused(provider, url, "it points into a private or local network")
    if origin is None or url.host != origin.host:
        for name in _CREDENTIALS:
            request.headers.pop(name, None)


def redirected(response: httpx.Response, provider: str) -> httpx.Request | None:
    """The GET a download redirect points to, or None when ``response`` is no redirect."""
    if response.status_code not in (301, 302, 303, 307, 308):
        return None
    location = response.headers.get("location")
    if not location:
        return None
    try:
        target = response.request.url.join(location)
    except (httpx.InvalidURL, ValueError) as exc:
        raise InvalidResponseError(
            f"{provider} redirected a download to an invalid URL ({exc})",
            provider=provider,
            retryable=False,
        ) from None
    headers = {k: v for k, v in response.request.headers.items() if k.lower() != "host"}
    return httpx.Request("GET", target, headers=headers, extensions=response.request.extensions)


def _is_internal(host: str) -> bool:
    if is_loopback(host):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_global


def _refused(provider: str, url: httpx.URL, why: str) -> InvalidResponseError:
    shown = f"{url.scheme}://{url.host}{url.path}"[:200]
    return InvalidResponseError(
        f"{provider} answered with a download URL flux_sdk will not fetch ({shown}): {why}",
        provider=provider,
        retryable=False,
    )
