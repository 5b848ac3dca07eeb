"""``audit_events``: the events, folded, tell the same story as the payments
and refunds tables; a row edited behind its events, a lost event or an
impossible history is caught and printed with the event trail."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from payments.models import Event, Payment, Refund
from payments.services import pipeline
from payments.services.audit import INITIAL, audit_events
from payments.services.enrich import enrich_batch
from payments.services.refunds import refund_create, refund_execute_batch
from payments.state import EVENT_FOR_STATUS
from tests.factories import card_token

pytestmark = pytest.mark.django_db


def accept(api, token, key, amount=2500):
    resp = api.post(
        "/v1/payments",
        data={"amount": amount, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


@pytest.fixture
def settled(api, merchant):
    """Three payments through the whole pipeline (one declined), with a
    partial refund that succeeded on the first."""
    good = card_token(merchant)
    declined = card_token(merchant, "4000000000000002")
    ids = [accept(api, good, "a"), accept(api, good, "b"), accept(api, declined, "c")]
    pipeline.validate_batch(ids)
    enrich_batch(ids)
    pipeline.execute_batch(ids)
    pipeline.settle_batch(ids)
    refund = refund_create(merchant=merchant, payment_id=ids[0], amount=1000)
    refund_execute_batch([refund.pk])
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    return ids


def run_audit(**options):
    out = StringIO()
    try:
        call_command("audit_events", stdout=out, **options)
    except CommandError as exc:
        return False, out.getvalue(), exc
    return True, out.getvalue(), None


def test_a_clean_pipeline_audits_clean(settled):
    report = audit_events()
    assert report.ok, [str(d) for d in report.examples]
    assert report.payments == 3 and report.refunds == 1
    assert report.events >= 3 * 5 + 2  # created .. settled/declined, refund x2
    ok, out, _ = run_audit()
    assert ok and "audit_events: clean" in out


def test_a_status_edited_behind_its_events_is_caught_with_the_trail(settled):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_payment SET status = 'succeeded' WHERE id = %s",
            [settled[1]],
        )
    ok, out, exc = run_audit()
    assert not ok and exc.returncode == 1 and "1 divergence" in str(exc)
    assert f"{settled[1]}:" in out
    assert "status is 'succeeded', its events say 'settled'" in out
    for event in Event.objects.filter(payment_id=settled[1]):
        assert f"{event.pk} {event.type}" in out  # the whole trail
    assert settled[0] not in out


def test_amount_refunded_edited_behind_its_refunds_is_caught(settled):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_payment SET amount_refunded = 0 WHERE id = %s",
            [settled[0]],
        )
    ok, out, _ = run_audit()
    assert not ok
    assert "amount_refunded is 0, its refunds' events say 1000" in out


def test_a_refund_row_edited_behind_its_events_is_caught(settled):
    Refund.objects.filter(payment_id=settled[0]).update(status="failed")
    report = audit_events()
    assert report.divergences == 1
    (problem,) = report.examples[0].problems
    assert "is failed of 1000, its events say succeeded of 1000" in problem


def test_a_missing_event_is_caught(settled):
    lost = Event.objects.get(payment_id=settled[1], type=EVENT_FOR_STATUS["validated"])
    with connection.cursor() as cursor:
        # Bypass the append-only trigger as only a superuser could.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM payments_event WHERE id = %s", [lost.pk])
        cursor.execute("SET LOCAL session_replication_role = origin")
    report = audit_events()
    assert report.divergences == 1
    assert report.examples[0].payment_id == settled[1]
    assert any("follows pending" in p for p in report.examples[0].problems)


def test_a_payment_with_no_events_at_all_is_caught(merchant):
    payment = Payment.objects.create(
        merchant=merchant, amount=700, currency="usd", source=card_token(merchant)
    )
    report = audit_events()
    assert report.divergences == 1
    assert report.examples[0].payment_id == payment.pk
    assert report.examples[0].problems == (
        f"no {EVENT_FOR_STATUS[INITIAL]} event: its history is missing",
    )


def test_an_event_the_state_machine_forbids_is_caught(settled):
    Event.objects.create(
        type=EVENT_FOR_STATUS["validated"],
        merchant_id=Payment.objects.get(pk=settled[0]).merchant_id,
        payment_id=settled[0],
        data={"status": "validated"},
    )
    report = audit_events()
    assert report.divergences == 1
    assert any("follows settled" in p for p in report.examples[0].problems)


def test_since_limits_the_audit_to_newer_payments(settled):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payments_payment SET status = 'failed' WHERE id = %s",
            [settled[1]],
        )
    assert not audit_events().ok
    ok, out, _ = run_audit(since="2999-01-01")
    assert ok and "0 payments" in out


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "12/01/2026"])
def test_a_bad_since_is_refused_with_a_clear_error(since):
    ok, _, exc = run_audit(since=since)
    assert not ok and exc.returncode == 2
    assert "--since: not an ISO date or datetime" in str(exc)
