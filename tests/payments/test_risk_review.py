"""A payment held for risk review: an operator approves it (on to execute and
settle) or declines it (``risk_declined``), through the service and the admin,
audited; and what the API shows of the verdict (never a threshold)."""

import pytest
from django.test import Client

from gateways.models import SandboxCharge
from ledger.models import JournalEntry
from payments.models import AuditLog, DeadLetter, Payment
from payments.services import operations, pipeline
from payments.services.enrich import enrich_batch
from payments.state import PaymentStatus as S
from tests.factories import card_token
from tests.payments.admin_helpers import operator
from tests.payments.test_relay import broker, published_ids  # noqa: F401

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/payments/deadletter/"


def held(merchant, amount=9000, customer=""):
    """A payment over the merchant's ceiling, enriched into review."""
    merchant.risk_amount_ceiling = 5000
    merchant.save()
    payment = Payment.objects.create(
        merchant=merchant, amount=amount, currency="usd",
        source=card_token(merchant), customer=customer,
    )  # fmt: skip
    pipeline.validate_batch([payment.pk])
    assert enrich_batch([payment.pk])["review"] == 1
    return payment, DeadLetter.objects.get(payment=payment, stage="review")


def test_approve_sends_the_payment_to_execute_and_it_settles(
    merchant,
    broker,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    payment, letter = held(merchant)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = operations.review_approve(
            dead_letter=letter, actor="olga", reason="known customer, big order"
        )
    assert outcome.done, outcome.message
    payment.refresh_from_db()
    assert payment.status == S.ENRICHED
    assert published_ids(broker, "execute") == [payment.pk]
    assert pipeline.execute_batch([payment.pk])["succeeded"] == 1
    assert pipeline.settle_batch([payment.pk]) == 1
    payment.refresh_from_db()
    assert payment.status == S.SETTLED
    assert JournalEntry.objects.filter(reference=payment.pk).count() == 1
    letter.refresh_from_db()
    assert letter.status == "resolved" and "approved by olga" in letter.resolution
    record = AuditLog.objects.get(action="review.approve")
    assert (record.actor, record.payment_id) == ("olga", payment.pk)
    assert record.reason == "known customer, big order"
    assert list(
        payment.events.order_by("created_at", "id").values_list("type", flat=True)
    ) == [
        "payment.validated",
        "payment.review",
        "payment.enriched",
        "payment.processing",
        "payment.succeeded",
        "payment.settled",
    ]


def test_decline_declines_with_risk_declined_and_never_charges(merchant):
    payment, letter = held(merchant)
    outcome = operations.review_decline(
        dead_letter=letter, actor="olga", reason="stolen card reported"
    )
    assert outcome.done
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("declined", "risk_declined")
    assert payment.fee is None
    assert not SandboxCharge.objects.filter(payment_id=payment.pk).exists()
    assert pipeline.execute_batch([payment.pk]) == {}
    letter.refresh_from_db()
    assert letter.status == "resolved"
    record = AuditLog.objects.get(action="review.decline")
    assert record.reason == "stolen card reported" and record.actor == "olga"


def test_a_verdict_needs_a_reason_and_is_given_once(merchant):
    payment, letter = held(merchant)
    from core.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        operations.review_approve(dead_letter=letter, actor="olga", reason="  ")
    assert Payment.objects.get(pk=payment.pk).status == S.REVIEW
    assert not AuditLog.objects.exists()
    assert operations.review_decline(dead_letter=letter, actor="a", reason="no")
    again = operations.review_approve(dead_letter=letter, actor="b", reason="yes")
    assert not again.done and "closed" in again.message
    assert Payment.objects.get(pk=payment.pk).status == S.DECLINED
    assert AuditLog.objects.count() == 1


def test_only_a_review_letter_can_be_approved(merchant):
    payment, letter = held(merchant)
    DeadLetter.objects.filter(pk=letter.pk).update(stage="execute")
    outcome = operations.review_approve(dead_letter=letter, actor="o", reason="r")
    assert not outcome.done
    assert Payment.objects.get(pk=payment.pk).status == S.REVIEW


def test_retry_refuses_a_payment_in_review(merchant):
    _, letter = held(merchant)
    outcome = operations.dead_letter_retry(dead_letter=letter, actor="o")
    assert not outcome.done and "approve or decline" in outcome.message


# --- the admin -------------------------------------------------------------------


def admin_client(role, name):
    client = Client()
    client.force_login(operator(name, role))
    return client


def test_ops_approve_in_the_admin_with_a_reason(
    merchant,
    broker,  # noqa: F811
):
    payment, letter = held(merchant)
    ops = admin_client("payments_ops", "olga")
    page = ops.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()
    assert 'data-action="approve"' in page and 'data-action="decline"' in page
    form = {"action": "approve", "_selected_action": [letter.pk]}
    asked = ops.post(CHANGELIST, form)
    assert asked.status_code == 200 and b"reason" in asked.content
    refused = ops.post(CHANGELIST, {**form, "apply": "1", "reason": ""})
    assert refused.status_code == 400
    assert Payment.objects.get(pk=payment.pk).status == S.REVIEW
    done = ops.post(CHANGELIST, {**form, "apply": "1", "reason": "verified by phone"})
    assert done.status_code == 302
    assert Payment.objects.get(pk=payment.pk).status == S.ENRICHED
    assert AuditLog.objects.get(action="review.approve").actor == "olga"


def test_ops_decline_in_the_admin(merchant):
    payment, letter = held(merchant)
    ops = admin_client("payments_ops", "olga")
    done = ops.post(
        CHANGELIST,
        {
            "action": "decline",
            "_selected_action": [letter.pk],
            "apply": "1",
            "reason": "fraud pattern",
        },
    )
    assert done.status_code == 302
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("declined", "risk_declined")


def test_support_is_not_offered_a_verdict_and_a_forged_one_is_refused(merchant):
    payment, letter = held(merchant)
    support = admin_client("support", "sam")
    page = support.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()
    assert 'data-action="approve"' not in page
    forged = support.post(
        CHANGELIST,
        {"action": "approve", "_selected_action": [letter.pk], "apply": "1",
         "reason": "x"},
    )  # fmt: skip
    assert forged.status_code == 403
    assert Payment.objects.get(pk=payment.pk).status == S.REVIEW
    assert not AuditLog.objects.exists()


def test_a_non_review_letter_does_not_offer_a_verdict(merchant):
    from payments.services.deadletters import dead_letter_record

    payment = Payment.objects.create(
        merchant=merchant, amount=100, currency="usd", source=card_token(merchant)
    )
    letter = dead_letter_record(
        stage="execute", error_class="E", message="m", payment_id=payment.pk
    )
    ops = admin_client("payments_ops", "olga")
    page = ops.get(f"{CHANGELIST}{letter.pk}/change/").content.decode()
    assert 'data-action="retry"' in page and 'data-action="approve"' not in page


# --- what the API shows -------------------------------------------------------------


_THRESHOLD_WORDS = ("velocity", "ceiling", "window", "threshold", "limit", "blocked")


def _walk(value, keys=None, values=None):
    """Every key and every scalar value in a JSON document."""
    keys = set() if keys is None else keys
    values = set() if values is None else values
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            _walk(v, keys, values)
    elif isinstance(value, list):
        for v in value:
            _walk(v, keys, values)
    elif not isinstance(value, bool):
        values.add(value)
    return keys, values


def test_the_api_shows_the_verdict_and_card_but_never_a_threshold(
    merchant,
    api,
    broker,  # noqa: F811
):
    merchant.risk_card_velocity_count = 7
    merchant.risk_card_velocity_window = 4321
    merchant.save()
    payment, _ = held(merchant, amount=98765, customer="cus_42")
    body = api.get(f"/v1/payments/{payment.pk}").json()
    assert body["status"] == "review"
    assert body["risk"] == {"outcome": "review", "rule": "amount_ceiling"}
    assert body["card"] == {"brand": "visa", "funding": "credit", "country": "US"}
    assert body["customer"] == "cus_42"
    keys, values = _walk(body)
    assert not {k for k in keys if any(w in k for w in _THRESHOLD_WORDS)}
    assert not {5000, 7, 4321, "5000", "7", "4321"} & values
    assert "route" not in body
    listed = api.get("/v1/payments?status=review").json()["data"]
    assert [p["risk"] for p in listed] == [body["risk"]]


def test_a_new_payment_shows_no_verdict_yet(api, token):
    created = api.post(
        "/v1/payments",
        data={"amount": 100, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    ).json()
    assert created["risk"] is None and created["card"] is None
    assert created["customer"] is None


def test_customer_is_validated_like_the_other_fields(api, token):
    def post(key, **extra):
        return api.post(
            "/v1/payments",
            data={"amount": 100, "currency": "usd", "source": token.id, **extra},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    ok = post("c-1", customer="cus_1")
    assert ok.status_code == 202 and ok.json()["customer"] == "cus_1"
    assert Payment.objects.get(pk=ok.json()["id"]).customer == "cus_1"
    for i, bad in enumerate(["x" * 129, 42, "4242424242424242", "a\x00b"]):
        response = post(f"c-bad-{i}", customer=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "customer"
    assert Payment.objects.count() == 1


def test_a_batch_item_takes_a_customer(api, token):
    response = api.post(
        "/v1/payment_batches",
        data={"payments": [{"amount": 100, "currency": "usd", "source": token.id,
                            "reference": "r-1", "customer": "cus_7"}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="b-1",
    )  # fmt: skip
    assert response.status_code == 202, response.content
    assert Payment.objects.get(reference="r-1").customer == "cus_7"
