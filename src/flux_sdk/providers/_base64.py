"""Reading an image's base64: fast decoding, and taking it out of a JSON body in place.

A 2 MiB image is 2.8 MB of base64. Decoding it with pybase64 from a view into the body,
instead of from a ``str`` a JSON parser made first, saves a buffer of that size per
image (its page faults cost about as much as the parse).
"""

from __future__ import annotations

from flux_sdk._base._errors import InvalidResponseError

__all__ = ["LIFTED", "decode_base64", "lift_base64"]


def decode_base64(
    text: str | bytes | memoryview, *, provider: str, field: str, request_id: str | None
) -> bytes:
    """Decode standard base64 fast, tolerating a ``data:`` URL prefix and line breaks.

    ``text`` may be bytes or a view into a body (see `lift_base64`): it is read in place.
    """
    import binascii

    import pybase64

    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        pass
    if not isinstance(text, str):
        text = bytes(text).decode("ascii", "replace")
    # The slow path, for bodies that wrap lines or send a data: URL.
    cleaned = text.partition(",")[2] if text.startswith("data:") else text
    cleaned = "".join(cleaned.split())
    try:
        return pybase64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidResponseError(
            f"{provider} sent {field} that is not valid base64 ({len(text)} characters)",
            provider=provider,
            request_id=request_id,
        ) from None


LIFTED = "\x00lifted"
"""What `lift_base64` leaves in place of the text it took out."""
_LIFTED_JSON = b'"\\u0000lifted"'
_JSON_SPACE = b" \t\r\n"


def lift_base64(body: bytes, name: str) -> tuple[bytes, memoryview] | None:
    """Take the base64 text of the first ``"name": "..."`` out of a JSON body.

    Returns the body with that string replaced by `LIFTED` (a few dozen bytes to
    parse, instead of megabytes copied into a ``str``) and a view of the text, which
    `decode_base64` reads in place. None when the field is not there as a plain key
    and string. The caller parses the rest and uses the view only if the field it
    expects reads `LIFTED`: a match anywhere else leaves the real field untouched.
    A view that is not pure base64 (JSON escapes such as ``\\/``) fails to decode, and
    the caller then parses the whole body the ordinary way.
    """
    key = b'"%s"' % name.encode()
    at = body.find(key)
    if at < 0:
        return None
    size = len(body)
    i = at + len(key)
    while i < size and body[i] in _JSON_SPACE:
        i += 1
    if i >= size or body[i] != 0x3A:  # ":"
        return None
    i += 1
    while i < size and body[i] in _JSON_SPACE:
        i += 1
    if i >= size or body[i] != 0x22:  # '"'
        return None
    end = body.find(b'"', i + 1)
    if end <= i + 1:
        return None
    return body[:i] + _LIFTED_JSON + body[end + 1 :], memoryview(body)[i + 1 : end]
