"""Prefixed, opaque, time-sortable ids: ``pay_`` + 26 Crockford base32 chars.

The leading characters encode milliseconds since the epoch and the rest are
random (as in a ULID), so ordering by id is ordering by creation time, which
lets cursor pagination use the primary key index alone.
"""

import base64
import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# base64's RFC 4648 alphabet, in value order, mapped onto Crockford's (also in
# value order, and in ASCII order), so the encoding sorts like the number.
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_FROM_CROCKFORD = bytes.maketrans(
    _ALPHABET.encode(), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)
PREFIXES = frozenset(
    {"mer", "key", "tok", "pay", "re", "evt", "pb", "dl", "wh", "we", "whd"}
)


def new_id(prefix: str) -> str:
    """Return a new id such as ``pay_01JD3K...``: 48 bits of milliseconds, then
    80 random bits, base32 (Crockford) encoded; C-speed, it runs per event."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    raw = (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)
    body = base64.b32encode(raw).translate(_TO_CROCKFORD)[:26].decode()
    return f"{prefix}_{body}"


def id_timestamp_ms(value: str) -> int | None:
    """Milliseconds since the epoch encoded in an id made by ``new_id``, or None."""
    _, _, body = value.partition("_")
    if len(body) != 26:
        return None
    try:
        raw = base64.b32decode(body.encode().translate(_FROM_CROCKFORD) + b"======")
    except ValueError:
        return None
    return int.from_bytes(raw[:6], "big")


def looks_like(value: object, prefix: str) -> bool:
    """Cheap shape check before a lookup; never trust it for authorization."""
    return (
        isinstance(value, str)
        and value.startswith(prefix + "_")
        and 0 < len(value) - len(prefix) - 1 <= 40
        and value[len(prefix) + 1 :].isalnum()
    )
