"""Merchants' API keys: created once, stored as a SHA-256 digest, looked up by it.

A secret is ``sk_<prefix>_<secret>``. The prefix names the key to people (the
admin, logs, the rate limit); the lookup is by the secret's digest, so a
wrong key costs the same whether or not its prefix exists: one indexed
lookup that finds nothing. (Looked up by prefix, a known prefix found a row,
or a cached key, and answered measurably sooner: tests/attack/test_auth.py.)
Keys have 192 random bits, so a fast hash is the right choice (a slow KDF
protects low-entropy passwords, not these). A verified key is cached
in-process by digest for ``SURGE_API_KEY_CACHE_SECONDS`` so the hot path
costs no query; revocation takes effect within that window.
"""

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from payments.models import ApiKey, Merchant

_LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class _Cached:
    key_id: str
    merchant: Merchant
    expires: float


_cache: dict[str, _Cached] = {}
_last_used_written: dict[str, float] = {}
_lock = threading.Lock()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def merchant_create(*, name: str, **fields) -> tuple[Merchant, str]:
    """Create a merchant and its first API key; return the secret once."""
    name = (name or "").strip()
    if not name:
        raise ValueError("merchant name must not be empty")
    with transaction.atomic():
        merchant = Merchant.objects.create(name=name, **fields)
        _, secret = api_key_create(merchant=merchant)
    return merchant, secret


def api_key_create(*, merchant: Merchant) -> tuple[ApiKey, str]:
    prefix = secrets.token_hex(6)
    secret = f"sk_{prefix}_{secrets.token_urlsafe(24)}"
    key = ApiKey.objects.create(
        merchant=merchant, prefix=prefix, digest=_digest(secret), last4=secret[-4:]
    )
    return key, secret


def api_key_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    with _lock:
        _cache.pop(key.digest, None)


def _parse(secret: str) -> str | None:
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "sk" or len(parts[1]) != 12:
        return None
    return parts[1]


def api_key_authenticate(secret: str) -> Merchant | None:
    """Return the key's merchant, or None for a missing, unknown or revoked key.

    Only a verified key is cached: a wrong one, whatever its prefix, is one
    lookup that finds no row (the time says nothing about the prefix).
    """
    if _parse(secret) is None:
        return None
    digest = _digest(secret)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is None or cached.expires < now:
        key = (
            ApiKey.objects.select_related("merchant")
            .filter(digest=digest, revoked_at__isnull=True)
            .first()
        )
        if key is None:
            with _lock:
                _cache.pop(digest, None)
            return None
        cached = _Cached(
            key.pk, key.merchant, now + settings.SURGE_API_KEY_CACHE_SECONDS
        )
        with _lock:
            _cache[digest] = cached
    _touch_last_used(cached.key_id, now)
    return cached.merchant


def _touch_last_used(key_id: str, now: float) -> None:
    """Record use at most once a minute per key per process: not a write per call."""
    last = _last_used_written.get(key_id)
    if last is not None and now - last < _LAST_USED_RESOLUTION.total_seconds():
        return
    _last_used_written[key_id] = now
    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _last_used_written.clear()
