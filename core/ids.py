"""Prefixed, opaque, time-sortable ids: ``pay_`` + 26 Crockford base32 chars.

The first 10 characters encode milliseconds since the epoch and the rest are
random (the ULID layout), so ordering by id is ordering by creation time, which
lets cursor pagination use the primary key index alone.
"""

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIXES = frozenset({"mer", "key", "tok", "pay", "re", "evt", "pb", "dl", "wh"})


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """Return a new id such as ``pay_01JD3K...``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def looks_like(value: object, prefix: str) -> bool:
    """Cheap shape check before a lookup; never trust it for authorization."""
    return (
        isinstance(value, str)
        and value.startswith(prefix + "_")
        and 0 < len(value) - len(prefix) - 1 <= 40
        and value[len(prefix) + 1 :].isalnum()
    )
