"""Rules for fetching a URL a host answered with (a queue host's image on its CDN).

The URL came from a server, so it is not trusted like a base URL the user chose: it must
be https (plain http only when the provider itself is on loopback), it must not point
into a private, loopback or link-local network unless the provider is on loopback, the
key is never sent to a host other than the provider's own, and redirects are followed a
bounded number of times, each checked again. The decision is made on the resolved
address, not on how the host is spelled (``127.1``, ``2130706433``, ``0x7f.1`` and ``0``
are all addresses the resolver accepts), and the request is then sent to the address
that was checked, with TLS still verified against (and SNI naming) the original host, so
a rebinding DNS gets no second lookup to change the answer.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import anyio
import httpx

from flux_sdk._base._errors import InvalidResponseError

from ._connections import is_loopback

__all__ = ["MAX_REDIRECTS", "check_download", "redirected"]

MAX_REDIRECTS = 5


async def _lookup(host: str, port: int, *, type: int) -> list[Any]:
    """The resolver (a seam: tests answer for names without DNS). ``anyio.getaddrinfo``
    is looked up here, not at import: it loads anyio's socket and TLS streams, which a
    host that answers with the image itself never needs (issue 26)."""
    return list(await anyio.getaddrinfo(host, port, type=type))


# Headers that carry a credential: never sent to a host other than the provider's.
_CREDENTIALS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")


async def check_download(request: httpx.Request, origin: httpx.URL | None, provider: str) -> None:
    """Raise `InvalidResponseError` (not retryable) unless ``request`` may be sent; pin
    it to the address checked.

    ``origin`` is the URL of the call's first request: the provider's own host.
    """
    url = request.url
    local_origin = origin is not None and is_loopback(origin.host)
    if url.scheme not in ("https", "http") or (url.scheme == "http" and not local_origin):
        raise _refused(provider, url, "it is not an https:// URL")
    if origin is None or url.host != origin.host:
        for name in _CREDENTIALS:
            request.headers.pop(name, None)
    if local_origin:
        return
    if _is_internal(url.host):
        raise _refused(provider, url, "it points into a private or local network")
    address = await _resolve(url, provider)
    # The Host header keeps the name; TLS verifies (and SNI names) the original host.
    request.extensions = {**request.extensions, "sni_hostname": url.host}
    request.url = url.copy_with(host=address)


async def _resolve(url: httpx.URL, provider: str) -> str:
    """The address ``url``'s host resolves to, refused when any answer is internal."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        answers = await _lookup(url.host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _refused(provider, url, f"its host does not resolve ({exc})") from None
    addresses = [str(answer[4][0]) for answer in answers]
    for address in addresses:
        if _is_internal(address):
            raise _refused(
                provider, url, f"it resolves to {address}, in a private or local network"
            )
    if not addresses:
        raise _refused(provider, url, "its host does not resolve")
    return addresses[0]


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
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _refused(provider: str, url: httpx.URL, why: str) -> InvalidResponseError:
    shown = f"{url.scheme}://{url.host}{url.path}"[:200]
    return InvalidResponseError(
        f"{provider} answered with a download URL flux_sdk will not fetch ({shown}): {why}",
        provider=provider,
        retryable=False,
    )
