"""Prefixed, opaque, time-sortable ids: ``pay_`` + 26 Crockford base32 chars.

The leading characters encode milliseconds since the epoch and the rest are
random (as in a ULID), so ordering by id is ordering by creation time, which
lets cursor pagination use the primary key index alone. Within one process
ids are strictly increasing, also within a millisecond (ULID's monotonic
mode: the random part of the next id is the previous one plus one), so rows a
loop writes list in the order it wrote them.
"""

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Crockford's alphabet (in value order, and in ASCII order, so an id sorts
# like its number) mapped back onto base64's RFC 4648 one, for decoding.
_FROM_CROCKFORD = bytes.maketrans(
    _ALPHABET.encode(), b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)
# What an id in a URL may hold (core/converters.py, and the OpenAPI pattern of
# every path id): a prefix, an underscore and base32, in either case.
PATH_PATTERN = "[0-9A-Za-z_]+"
PREFIXES = frozenset(
    {"mer", "key", "tok", "pay", "re", "evt", "pb", "dl", "wh", "we", "whd"}
)


_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, 80-bit random part) of this process's last id


def _forget_last() -> None:
    global _last
    _last = (0, 0)  # a forked child must not continue its parent's sequence


os.register_at_fork(after_in_child=_forget_last)


def new_id(prefix: str) -> str:
    """Return a new id such as ``pay_01JD3K...``: 48 bits of milliseconds, then
    80 random bits, base32 (Crockford) encoded; it runs per event, so cheap."""
    global _last
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    # The random bits are drawn before the lock: os.urandom releases the GIL,
    # and a thread holding the lock while it waits to get the GIL back (up to
    # the 5 ms switch interval in a busy web process) queued every other
    # request thread behind it: a lock convoy on every id.
    fresh = int.from_bytes(os.urandom(10), "big")
    now = time.time_ns() // 1_000_000
    with _lock:
        ms, rand = _last
        if now > ms:
            ms, rand = now, fresh
        else:  # the same millisecond (or the clock stepped back): keep order
            rand += 1
            if rand >> 80:  # 2**80 ids in one millisecond: borrow the next one
                ms, rand = ms + 1, 0
        _last = (ms, rand)
    return f"{prefix}_{_encode((ms << 80) | rand)}"


# Crockford base32 of every 10-bit value: two characters per lookup.
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]


def _encode(value: int) -> str:
    """The 26 characters base64.b32encode gives for the 16 bytes of ``value``
    (then mapped onto Crockford's alphabet): 130 bits, the last two zero, in
    13 lookups of 10 bits, cheaper than b32encode, which is pure Python
    before 3.13 and builds bytes this would then have to translate."""
    value <<= 2
    return "".join([_PAIRS[(value >> s) & 1023] for s in range(120, -1, -10)])


def id_at(prefix: str, ms: int, *, last: bool = False) -> str:
    """The smallest (``last``: largest) id ``new_id(prefix)`` can make in
    millisecond ``ms``: a position in the id order, i.e. in time."""
    return f"{prefix}_{_encode((ms << 80) | (((1 << 80) - 1) if last else 0))}"


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
