"""Idempotent requests (IETF Idempotency-Key draft, Stripe's behaviour).

``idempotent_call`` runs ``work`` and stores its response in one transaction.
The key's row is inserted last: two concurrent requests with one key both do
their writes, the second blocks on the unique index until the first commits,
then fails and rolls back whole, and replays the first one's stored response.
A second request that instead refuses (a batch's references taken by the
first one) replays it too, once the key is found. So N concurrent requests
create exactly one object, all get the same answer, and nobody gets a 500.
"""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import jsoncodec
from core.errors import SurgeError
from payments.error_codes import ErrorCode
from payments.exceptions import IdempotencyKeyMissing, IdempotencyKeyReused
from payments.models import IdempotencyKey, Merchant

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict
    replayed: bool


def request_hash(body: object) -> str:
    """Hash of the parsed body: the same JSON in another layout is the same request."""
    return hashlib.sha256(jsoncodec.canonical(body).encode()).hexdigest()


def check_key(key: str | None) -> str:
    """Any printable ASCII key of 1-255 characters, as Stripe accepts: the key
    is never stored or logged as given (``key_digest``), so its content is the
    client's business."""
    if not key:
        raise IdempotencyKeyMissing(
            "An Idempotency-Key header is required for this request.",
            param="Idempotency-Key",
        )
    if len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise IdempotencyKeyMissing(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
            param="Idempotency-Key",
            code=ErrorCode.IDEMPOTENCY_KEY_INVALID,
        )
    return key


_digest_key: bytes | None = None


def key_digest(key: str) -> str:
    """What is stored for an Idempotency-Key: HMAC-SHA256 under a server secret
    (``IDEMPOTENCY_KEY_SECRET``), so a key that happens to hold a card number,
    or anything else, never reaches the database, and a leaked table reveals
    no key."""
    global _digest_key
    if _digest_key is None:
        _digest_key = settings.IDEMPOTENCY_KEY_SECRET.encode()
    return hmac.new(_digest_key, key.encode(), hashlib.sha256).hexdigest()


def replay(
    record: IdempotencyKey, *, method: str, path: str, req_hash: str
) -> StoredResponse:
    if (
        record.method != method
        or record.path != path
        or record.request_hash != req_hash
    ):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request.",
            param="Idempotency-Key",
        )
    return StoredResponse(record.response_status, record.response_body, True)


def lookup(merchant: Merchant, digest: str) -> IdempotencyKey | None:
    """The live record for a key's digest (``key_digest``), if any."""
    record = IdempotencyKey.objects.filter(merchant=merchant, key=digest).first()
    if record is not None and record.expires_at <= timezone.now():
        IdempotencyKey.objects.filter(
            pk=record.pk, expires_at__lte=timezone.now()
        ).delete()
        return None
    return record


def idempotent_call(
    *,
    merchant: Merchant,
    key: str,
    method: str,
    path: str,
    req_hash: str,
    work: Callable[[], tuple[int, dict]],
) -> StoredResponse:
    """Run ``work`` (which writes) once per (merchant, key); replay afterwards."""
    digest = key_digest(key)
    record = lookup(merchant, digest)
    if record is not None:
        return replay(record, method=method, path=path, req_hash=req_hash)
    now = timezone.now()
    try:
        with transaction.atomic():
            status, body = work()
            IdempotencyKey.objects.create(
                merchant=merchant,
                key=digest,
                method=method,
                path=path,
                request_hash=req_hash,
                response_status=status,
                response_body=body,
                expires_at=now
                + timedelta(seconds=settings.SURGE_IDEMPOTENCY_TTL_SECONDS),
            )
    except (IntegrityError, SurgeError):
        # The same key's request may have committed while this one ran (a
        # client that timed out and retried): then what this one refused
        # (a batch's references "already used", by that very request; a
        # reference conflict) is that request's doing, and its response is
        # the answer. Found by `make drill`.
        record = lookup(merchant, digest)
        if record is None:
            # Not our key's row that collided: a real integrity failure.
            raise
        return replay(record, method=method, path=path, req_hash=req_hash)
    return StoredResponse(status, body, False)


def purge_expired(*, batch_size: int = 5000) -> int:
    """Delete expired keys in batches; return how many went.

    Walks the primary key (there is no index on ``expires_at``: one less write
    per request). Keys get one TTL, so they expire in insertion order and each
    batch is the head of the index; a key with a longer TTL is skipped past.
    """
    total = 0
    now = timezone.now()
    while True:
        ids = list(
            IdempotencyKey.objects.filter(expires_at__lte=now)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        total += IdempotencyKey.objects.filter(pk__in=ids).delete()[0]
