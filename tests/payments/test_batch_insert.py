"""Batch intake's PostgreSQL statements (unnest INSERT, ANY lookups) against the
ORM path they replace: same rows, same validation, same errors."""

import re
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import Conflict
from payments.api.serializers import batch_items_validate
from payments.models import Event, Payment, PaymentBatch
from payments.services.batches import (
    BatchItem,
    payment_batch_create,
    payment_batch_submit,
    validate_items,
)
from tests.factories import MerchantFactory, TokenFactory

pytestmark = pytest.mark.django_db

# Every field is compared but these, which differ between two batches by design.
PER_BATCH = {"id", "reference", "batch_id", "created_at", "updated_at"}
FIELDS = [f.attname for f in Payment._meta.concrete_fields]

AWKWARD = {
    "unicode": "é ü ß 中文 😀 \u200b",
    "quotes": "say \"hi\" it's ''",
    "backslashes": "back\\slash \\\\ \\n \\u0041 \\",
    "controls": "tab\tnew\nline\r end",  # inner: outer whitespace is trimmed
    "json-ish": '{"a": [1, 2]}',
    "sql-ish": "NULL'); DROP TABLE x; --",
    "placeholders": "%s %b %(x)s {} {0}",
    "empty": "",
    'key "quoted" \\ é': "v",
}
AWKWARD_TEXT = 'O\'Brien "the boss" \\ 😀 %s %b {}\n\tend'


def items(token, prefix, n=6):
    out = []
    for i in range(n):
        out.append(
            BatchItem(
                amount=1000 + i,
                currency="usd" if i % 2 else "eur",
                source=token.id,
                reference=f"{prefix}-{i}",
                description=[AWKWARD_TEXT, "", "Salary"][i % 3],
                metadata=[AWKWARD, None, {"k": "v"}][i % 3],
            )
        )
    return out


def orm_batch(merchant, batch_items):
    """What Django's ``bulk_create`` writes for the same items: the reference."""
    batch = PaymentBatch.objects.create(merchant=merchant, count=0, total_amount=0)
    Payment.objects.bulk_create(
        [
            Payment(
                merchant=merchant, batch=batch, amount=i.amount, currency=i.currency,
                source_id=i.source, reference=i.reference,
                description=i.description, metadata=i.metadata or {},
            )
            for i in batch_items
        ]
    )  # fmt: skip
    return batch


def rows(batch):
    return list(Payment.objects.filter(batch=batch).order_by("reference"))


def test_batch_rows_hold_what_bulk_create_writes(merchant, token):
    before = timezone.now()
    batch, _ = payment_batch_create(merchant=merchant, items=items(token, "sql"))
    after = timezone.now()
    written = rows(batch)
    reference = rows(orm_batch(merchant, items(token, "orm")))

    assert len(written) == len(reference) == 6
    for row, ref in zip(written, reference, strict=True):
        for name in set(FIELDS) - PER_BATCH:
            assert getattr(row, name) == getattr(ref, name), name
        assert row.reference == ref.reference.replace("orm", "sql")
        assert re.fullmatch(r"pay_[0-9A-Z]{26}", row.id)
        assert row.batch_id == batch.pk
        assert before <= row.created_at == row.updated_at <= after
    assert len({row.created_at for row in written}) == 1


def test_new_batch_payments_hold_the_model_defaults(merchant, token):
    batch, _ = payment_batch_create(merchant=merchant, items=items(token, "d", 3))
    for row in rows(batch):
        assert row.merchant_id == merchant.id and row.source_id == token.id
        assert (row.status, row.attempts, row.amount_refunded) == ("pending", 0, 0)
        assert (row.fee, row.settled_at) == (None, None)
        assert row.failure_code == row.failure_message == ""
        assert row.gateway == row.gateway_reference == ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT jsonb_typeof(metadata) FROM payments_payment "
            "WHERE batch_id = %s",
            [batch.pk],
        )
        assert cursor.fetchall() == [("object",)]  # not a JSON string in jsonb


def test_returned_payments_are_the_rows_written(merchant, token):
    batch, returned = payment_batch_create(merchant=merchant, items=items(token, "r"))
    stored = {p.pk: p for p in rows(batch)}
    assert [p.reference for p in returned] == [f"r-{i}" for i in range(6)]
    for payment in returned:
        row = stored[payment.pk]
        assert {n: getattr(payment, n) for n in FIELDS} == {
            n: getattr(row, n) for n in FIELDS
        }
        assert payment.batch == batch
        assert not payment._state.adding and payment._state.db == "default"
    events = Event.objects.filter(payment_id__in=stored, type="payment.created")
    assert {e.payment_id: e.data for e in events} == {
        p.pk: {"amount": p.amount, "currency": p.currency} for p in returned
    }


def test_awkward_text_round_trips_through_the_api(api, token):
    resp = api.post(
        "/v1/payment_batches",
        data={
            "payments": [
                {
                    "amount": 500,
                    "currency": "usd",
                    "source": token.id,
                    "reference": "ref 'quoted' \"x\" \\ é",
                    "description": AWKWARD_TEXT,
                    "metadata": AWKWARD,
                }
            ]
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="awkward",
    )
    assert resp.status_code == 202, resp.content[:500]
    (created,) = resp.json()["payments"]
    payment = Payment.objects.get(pk=created["id"])
    assert payment.reference == created["reference"] == "ref 'quoted' \"x\" \\ é"
    assert payment.description == AWKWARD_TEXT
    assert payment.metadata == AWKWARD


def test_reference_taken_after_validation_is_a_conflict(merchant, token):
    Payment.objects.create(
        merchant=merchant, amount=1, currency="usd", source=token, reference="t-1"
    )
    with pytest.raises(Conflict) as caught, transaction.atomic():
        payment_batch_create(merchant=merchant, items=items(token, "t", 3))
    assert caught.value.as_dict() == {
        "type": "invalid_request_error",
        "code": "reference_conflict",
        "message": "A reference in this batch was used by a concurrent request; "
        "retry to see which.",
        "param": "reference",
    }
    assert PaymentBatch.objects.count() == 0
    assert list(Payment.objects.values_list("reference", flat=True)) == ["t-1"]


def test_other_integrity_errors_arrive_as_djangos_and_are_not_conflicts(
    merchant, token
):
    bad = BatchItem(amount=0, currency="usd", source=token.id, reference="zero")
    with pytest.raises(IntegrityError, match="payment_amount_gt_0"):
        with transaction.atomic():
            payment_batch_create(merchant=merchant, items=[bad])
    assert Payment.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_reference_committed_by_a_concurrent_request_is_a_conflict():
    merchant = MerchantFactory()
    token = TokenFactory(merchant_id=merchant.id)
    inserted, done = threading.Event(), threading.Event()
    outcome: list = []
    connection.ensure_connection()
    batch_pid = connection.connection.info.backend_pid

    def rival():
        try:
            with transaction.atomic():
                Payment.objects.create(
                    merchant=merchant,
                    amount=1,
                    currency="usd",
                    source=token,
                    reference="c-1",
                )
                inserted.set()
                # Commit only once the batch's INSERT waits on our index entry.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not _blocked(batch_pid):
                    time.sleep(0.02)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=rival)
    thread.start()
    assert inserted.wait(10)
    try:
        payment_batch_create(merchant=merchant, items=items(token, "c", 3))
    except Exception as exc:  # the assertions below say which
        outcome.append(exc)
    thread.join(15)
    assert done.is_set()
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    assert outcome[0].code == "reference_conflict"
    assert PaymentBatch.objects.count() == 0
    assert list(Payment.objects.values_list("reference", flat=True)) == ["c-1"]


def _blocked(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return cursor.fetchone()[0]


def test_merchant_rules_find_each_problem(merchant, token):
    other = MerchantFactory()
    foreign = TokenFactory(merchant_id=other.id)
    Payment.objects.create(
        merchant=merchant, amount=1, currency="usd", source=token, reference="used"
    )
    Payment.objects.create(
        merchant=other, amount=1, currency="usd", source=foreign, reference="theirs"
    )
    second = TokenFactory(merchant_id=merchant.id)
    sources = [token.id, second.id, foreign.id, "tok_nope", token.id, token.id,
               token.id, token.id]  # fmt: skip
    refs = ["a", "b", "c", "d", "used", "theirs", "a", "it's"]
    parsed = [
        (i, BatchItem(amount=10, currency="usd", source=src, reference=ref))
        for i, (src, ref) in enumerate(zip(sources, refs, strict=True))
    ]
    valid, errors = validate_items(merchant=merchant, items=parsed)
    assert [i for i, _ in valid] == [0, 1, 5, 7]
    assert [(e["index"], e["param"], e["message"]) for e in errors] == [
        (2, "source", "No such token."),
        (3, "source", "No such token."),
        (4, "reference", "Reference already used."),
        (6, "reference", "Reference repeated within the batch."),
    ]


def test_no_lookup_when_no_item_parses(merchant, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert validate_items(merchant=merchant, items=[]) == ([], [])


def test_submit_of_1000_writes_1000_rows_with_their_items(merchant, token):
    raw = [
        {
            "amount": 1 + i,
            "currency": "usd",
            "source": token.id,
            "reference": f"emp-{i:04d}",
            "metadata": {"n": str(i)},
        }
        for i in range(1000)
    ]
    parsed, errors = batch_items_validate(raw)
    assert errors == []
    batch, payments = payment_batch_submit(merchant=merchant, items=parsed)
    stored = Payment.objects.filter(batch=batch).values_list(
        "reference", "amount", "metadata"
    )
    assert sorted(stored) == [
        (f"emp-{i:04d}", 1 + i, {"n": str(i)}) for i in range(1000)
    ]
    assert len({p.pk for p in payments}) == 1000
