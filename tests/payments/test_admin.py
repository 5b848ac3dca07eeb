"""The operators' admin through Django's test client at the real admin URLs:
roles and permissions (support looks, payments_ops acts, superusers keep
everything, a forged action is refused and changes nothing), the dead-letter
actions and their audit trail, the filters, and a payment's whole story."""

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from payments.models import (
    ApiKey,
    AuditLog,
    DeadLetter,
    OpenPayment,
    Payment,
    Refund,
    WebhookDelivery,
    WebhookEndpoint,
)
from payments.roles import ACTIONS, ROLES
from payments.services import pipeline
from payments.services.deadletters import dead_letter_record
from payments.services.enrich import enrich_batch
from payments.services.keys import api_key_create
from payments.services.refunds import refund_execute_batch
from payments.workflow import PAYMENT_STEPS
from tests.factories import TokenFactory, card_token
from tests.payments.admin_helpers import operator
from tests.payments.webhook_helpers import endpoint_for

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/payments/deadletter/"
DL_ACTIONS = ("retry", "refund", "resolve", "escalate")


def page_of(dead_letter) -> str:
    return f"{CHANGELIST}{quote(dead_letter.pk)}/change/"


@pytest.fixture
def login():
    def make(role: str | None, username: str | None = None) -> Client:
        client = Client()
        client.force_login(operator(username or (role or "staff"), role))
        return client

    return make


@pytest.fixture
def ops(login):
    return login("payments_ops", "olga")


@pytest.fixture
def support(login):
    return login("support", "sam")


@pytest.fixture
def broker():
    """This test's Redis database, emptied: what the stages were sent."""
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    r.flushdb()
    return r


def failed_payment(merchant, code="gateway_unavailable", status="failed", **kw):
    payment = Payment.objects.create(
        merchant=merchant,
        amount=2500,
        currency="usd",
        source=TokenFactory(merchant_id=merchant.id),
        status=status,
        failure_code=code,
        **kw,
    )
    letter = dead_letter_record(
        stage="execute",
        error_class="RetryableSafe",
        message="Not charged; simulator: connection refused",
        payment_id=payment.pk,
    )
    return payment, letter


def settled_payment(merchant):
    """A payment through the real stages on the sandbox: charged and settled."""
    payment = Payment.objects.create(
        merchant=merchant, amount=5000, currency="usd", source=card_token(merchant)
    )
    ids = [payment.pk]
    pipeline.validate_batch(ids)
    enrich_batch(ids)
    pipeline.execute_batch(ids)
    assert pipeline.settle_batch(ids) == 1
    payment.refresh_from_db()
    return payment


def act(client, action, letters, **form):
    data = {"action": action, "_selected_action": [dl.pk for dl in letters], **form}
    return client.post(CHANGELIST, data)


def nothing_changed(payment, letter, *, status="failed", audits=0):
    payment.refresh_from_db()
    letter.refresh_from_db()
    assert payment.status == status
    assert letter.status == "open" and letter.escalated_at is None
    assert AuditLog.objects.count() == audits
    assert not Refund.objects.exists()


# --- roles --------------------------------------------------------------------


def test_roles_hold_view_for_support_and_every_action_for_ops(login):
    login("support")  # installs the roles as migration 0012 does
    support = Group.objects.get(name="support")
    ops = Group.objects.get(name="payments_ops")
    support_perms = {p.codename for p in support.permissions.all()}
    ops_perms = {p.codename for p in ops.permissions.all()}
    assert support_perms == set(ROLES["support"])
    assert all(p.startswith("view_") for p in support_perms)
    assert not support_perms & set(ACTIONS)
    assert ops_perms == support_perms | set(ACTIONS)


def test_support_is_offered_no_action_anywhere(support, merchant):
    _, letter = failed_payment(merchant)
    for url in (
        CHANGELIST,
        "/admin/payments/merchant/",
        "/admin/payments/webhookendpoint/",
        "/admin/payments/webhookdelivery/",
    ):
        page = support.get(url)
        assert page.status_code == 200, url
        assert 'name="action"' not in page.content.decode(), url
    page = support.get(page_of(letter)).content.decode()
    assert letter.pk in page
    assert "dead-letter-actions" not in page


def test_ops_is_offered_every_dead_letter_action_on_the_list_and_the_page(
    ops, merchant
):
    _, letter = failed_payment(merchant)
    listing = ops.get(CHANGELIST).content.decode()
    page = ops.get(page_of(letter)).content.decode()
    for action in DL_ACTIONS:
        assert f'value="{action}"' in listing
        assert f'data-action="{action}"' in page


def test_superuser_keeps_every_action(login, merchant):
    admin = login("superuser", "root")
    _, letter = failed_payment(merchant)
    page = admin.get(page_of(letter)).content.decode()
    for action in DL_ACTIONS:
        assert f'data-action="{action}"' in page
    assert act(admin, "retry", [letter]).status_code == 302
    assert Payment.objects.get(pk=letter.payment_id).status == "validated"


def test_staff_without_a_role_sees_no_dead_letters(login, merchant):
    _, letter = failed_payment(merchant)
    nobody = login(None, "nobody")
    assert nobody.get(CHANGELIST).status_code == 403
    assert nobody.get(page_of(letter)).status_code == 403


@pytest.mark.parametrize(
    ("action", "form"),
    [
        ("retry", {}),
        ("refund", {"apply": "1", "amount": "100", "reason": "customer asked"}),
        ("resolve", {"apply": "1", "reason": "looked at it"}),
        ("escalate", {"apply": "1", "owner": "sam", "note": "please look"}),
    ],
)
def test_a_forged_dead_letter_action_from_support_is_refused_and_changes_nothing(
    support, merchant, broker, action, form
):
    payment, letter = failed_payment(merchant)
    resp = act(support, action, [letter], **form)
    assert resp.status_code == 403
    nothing_changed(payment, letter)
    assert broker.llen("execute") == 0


def test_forged_key_revocation_is_refused_and_ops_may_revoke(support, ops, merchant):
    key, _ = api_key_create(merchant=merchant)
    form = {"action": "revoke_keys", "_selected_action": [merchant.pk]}
    assert support.post("/admin/payments/merchant/", form).status_code == 403
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    assert not AuditLog.objects.exists()
    assert ops.post("/admin/payments/merchant/", form).status_code == 302
    assert not ApiKey.objects.filter(
        merchant=merchant, revoked_at__isnull=True
    ).exists()
    log = AuditLog.objects.get(object_id=key.pk)
    assert (log.actor, log.action) == ("olga", "key.revoke")


@pytest.mark.usefixtures("webhook_settings")
def test_forged_endpoint_disable_is_refused_and_ops_may_disable(
    support, ops, merchant, receiver
):
    endpoint, _ = endpoint_for(merchant, receiver)
    form = {"action": "disable", "_selected_action": [endpoint.pk]}
    url = "/admin/payments/webhookendpoint/"
    assert support.post(url, form).status_code == 403
    assert WebhookEndpoint.objects.get().status == "active"
    assert ops.post(url, form).status_code == 302
    assert WebhookEndpoint.objects.get().status == "disabled"
    assert AuditLog.objects.get().action == "webhook_endpoint.disable"


@pytest.mark.usefixtures("webhook_settings")
def test_forged_delivery_retry_is_refused_and_ops_may_retry(
    support, ops, merchant, receiver
):
    endpoint, _ = endpoint_for(merchant, receiver)
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id="evt_x",
        event_type="payment.settled",
        payload={},
        status="failed",
        attempts=3,
    )
    form = {"action": "retry_now", "_selected_action": [delivery.pk]}
    url = "/admin/payments/webhookdelivery/"
    assert support.post(url, form).status_code == 403
    assert WebhookDelivery.objects.get().status == "failed"
    assert ops.post(url, form).status_code == 302
    assert WebhookDelivery.objects.get().status == "pending"
    assert AuditLog.objects.get().actor == "olga"


def test_nothing_is_added_changed_or_deleted_through_the_forms(ops, merchant):
    payment, letter = failed_payment(merchant)
    assert ops.get(f"{CHANGELIST}add/").status_code == 403
    assert ops.post(page_of(letter), {"stage": "x"}).status_code == 403
    assert ops.post(f"{CHANGELIST}{letter.pk}/delete/").status_code == 403
    nothing_changed(payment, letter)


# --- retry ------------------------------------------------------------------------


def test_retry_moves_a_provably_uncharged_payment_back_to_validated_and_on(
    ops, merchant, broker, django_capture_on_commit_callbacks
):
    payment, letter = failed_payment(merchant)
    with django_capture_on_commit_callbacks(execute=True):
        resp = act(ops, "retry", [letter], _from_page="1")
    assert resp.status_code == 302 and resp["Location"] == page_of(letter)
    payment.refresh_from_db()
    letter.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("validated", "")
    assert OpenPayment.objects.filter(payment=payment).exists()  # sweeper sees it
    assert payment.events.filter(type="payment.validated").exists()
    # handed to the step after validated (enrich, on the validate queue)
    assert broker.llen(PAYMENT_STEPS["validated"].queue) == 1
    assert letter.status == "resolved" and "olga" in letter.resolution
    log = AuditLog.objects.get()
    assert (log.actor, log.action, log.object_id, log.payment_id) == (
        "olga",
        "dead_letter.retry",
        letter.pk,
        payment.pk,
    )
    page = ops.get(page_of(letter)).content.decode()
    assert "dead_letter.retry" in page and "moved back to validated" in page


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("declined", "card_declined"),  # a business outcome: final
        ("failed", "expired_card"),  # failed, but not for want of a gateway
        ("processing", ""),  # outcome unknown: only inquiries, never a charge
        ("settled", ""),
    ],
)
def test_retry_never_re_drives_a_declined_unknown_or_final_payment(
    ops, merchant, broker, django_capture_on_commit_callbacks, status, code
):
    payment, letter = failed_payment(merchant, code=code, status=status)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        resp = act(ops, "retry", [letter])
    assert resp.status_code == 302
    assert not callbacks
    nothing_changed(payment, letter, status=status)
    assert payment.failure_code == code
    assert broker.llen("execute") == broker.llen("validate") == 0
    messages = ops.get(CHANGELIST).content.decode()
    assert "not retried" in messages or "never charged again" in messages


def test_retry_twice_moves_the_payment_once(ops, merchant, broker):
    payment, letter = failed_payment(merchant)
    assert act(ops, "retry", [letter]).status_code == 302
    assert act(ops, "retry", [letter]).status_code == 302
    payment.refresh_from_db()
    assert payment.status == "validated"
    assert payment.events.filter(type="payment.validated").count() == 1
    assert AuditLog.objects.count() == 1


def test_a_retried_payment_settles_once_its_gateway_is_back(ops, merchant, broker):
    """The whole rule in-process: a charge refused everywhere fails the payment
    with a dead letter; once the route works, retry and it settles, with one
    charge at the gateway."""
    merchant.primary_gateway = "nowhere"  # no such gateway: provably not charged
    merchant.save()
    payment = Payment.objects.create(
        merchant=merchant, amount=1999, currency="usd", source=card_token(merchant)
    )
    pipeline.validate_batch([payment.pk])
    enrich_batch([payment.pk])
    assert pipeline.execute_batch([payment.pk])["failed"] == 1
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("failed", "gateway_unavailable")
    letter = DeadLetter.objects.get(payment=payment)
    merchant.primary_gateway = "sandbox"  # the gateway is back
    merchant.save()
    assert act(ops, "retry", [letter]).status_code == 302
    assert enrich_batch([payment.pk])["enriched"] == 1
    assert pipeline.execute_batch([payment.pk])["succeeded"] == 1
    assert pipeline.settle_batch([payment.pk]) == 1
    payment.refresh_from_db()
    assert payment.status == "settled" and payment.attempts == 2
    page = ops.get(f"/admin/payments/payment/{payment.pk}/change/").content.decode()
    assert "sandbox" in page and payment.gateway_reference in page


# --- refund -------------------------------------------------------------------------


def refund_letter(merchant):
    # The fee stays with the platform: a full refund is paid from the
    # merchant's balance, so give it more than one payment's worth.
    settled_payment(merchant)
    payment = settled_payment(merchant)
    letter = dead_letter_record(
        stage="reconcile", error_class="Mismatch", message="x", payment_id=payment.pk
    )
    return payment, letter


def test_refund_asks_for_an_amount_and_a_reason_first(ops, merchant):
    _payment, letter = refund_letter(merchant)
    resp = act(ops, "refund", [letter])
    assert resp.status_code == 200
    page = resp.content.decode()
    assert 'name="amount"' in page and 'name="reason"' in page
    assert 'name="apply"' in page and letter.pk in page
    assert not Refund.objects.exists()


def test_refund_in_full_goes_through_the_refund_service_and_is_audited(ops, merchant):
    payment, letter = refund_letter(merchant)
    resp = act(ops, "refund", [letter], apply="1", amount="", reason="duplicate")
    assert resp.status_code == 302
    refund = Refund.objects.get()
    assert (refund.payment_id, refund.amount, refund.status) == (
        payment.pk,
        5000,
        "pending",
    )
    payment.refresh_from_db()
    assert payment.amount_refunded == 5000
    log = AuditLog.objects.get()
    assert (log.action, log.reason, log.payment_id) == (
        "dead_letter.refund",
        "duplicate",
        payment.pk,
    )
    assert refund.pk in log.detail


def test_refund_in_part_refunds_the_amount_given(ops, merchant):
    payment, letter = refund_letter(merchant)
    resp = act(ops, "refund", [letter], apply="1", amount="1200", reason="partial")
    assert resp.status_code == 302
    assert Refund.objects.get().amount == 1200
    payment.refresh_from_db()
    assert payment.amount_refunded == 1200


@pytest.mark.parametrize(
    "form",
    [
        {"amount": "0", "reason": "x"},
        {"amount": "-5", "reason": "x"},
        {"amount": "12.50", "reason": "x"},
        {"amount": "abc", "reason": "x"},
        {"amount": "5001", "reason": "x"},  # more than is left
        {"amount": "100", "reason": ""},  # a reason is required
        {"amount": "100", "reason": "   "},
    ],
)
def test_a_bad_refund_form_is_a_400_and_changes_nothing(ops, merchant, form):
    payment, letter = refund_letter(merchant)
    resp = act(ops, "refund", [letter], apply="1", **form)
    assert resp.status_code == 400
    assert "errorlist" in resp.content.decode()
    nothing_changed(payment, letter, status="settled")
    assert Payment.objects.get(pk=payment.pk).amount_refunded == 0


def test_a_partial_amount_for_several_letters_is_refused(ops, merchant):
    first, second = refund_letter(merchant), refund_letter(merchant)
    resp = act(ops, "refund", [first[1], second[1]], apply="1", amount="10", reason="x")
    assert resp.status_code == 400
    assert not Refund.objects.exists()


def test_refunding_a_payment_that_is_not_settled_is_refused(ops, merchant):
    payment, letter = failed_payment(merchant)
    resp = act(ops, "refund", [letter], apply="1", amount="", reason="x")
    assert resp.status_code == 302
    nothing_changed(payment, letter)
    assert "Only a settled payment" in ops.get(CHANGELIST).content.decode()


# --- resolve and escalate ---------------------------------------------------------------


def test_resolve_requires_a_reason(ops, merchant):
    payment, letter = failed_payment(merchant)
    assert act(ops, "resolve", [letter]).status_code == 200  # the form
    resp = act(ops, "resolve", [letter], apply="1", reason=" ")
    assert resp.status_code == 400
    nothing_changed(payment, letter)


def test_resolve_closes_the_letter_with_its_reason_on_both_pages(ops, merchant):
    payment, letter = failed_payment(merchant)
    resp = act(ops, "resolve", [letter], apply="1", reason="merchant refunded offline")
    assert resp.status_code == 302
    letter.refresh_from_db()
    assert (letter.status, letter.resolution) == (
        "resolved",
        "merchant refunded offline",
    )
    log = AuditLog.objects.get()
    assert (log.actor, log.action, log.reason) == (
        "olga",
        "dead_letter.resolve",
        "merchant refunded offline",
    )
    for url in (page_of(letter), f"/admin/payments/payment/{payment.pk}/change/"):
        page = ops.get(url).content.decode()
        assert "merchant refunded offline" in page and "olga" in page, url
    assert "already resolved" not in page
    act(ops, "resolve", [letter], apply="1", reason="again")
    assert AuditLog.objects.count() == 1  # a refusal writes nothing


def test_escalate_flags_the_letter_for_an_owner_and_keeps_it_open(ops, login, merchant):
    login("payments_ops", "erin")
    _payment, letter = failed_payment(merchant)
    form = act(ops, "escalate", [letter]).content.decode()
    assert 'name="owner"' in form and "erin" in form
    resp = act(ops, "escalate", [letter], apply="1", owner="erin", note="bank says no")
    assert resp.status_code == 302
    letter.refresh_from_db()
    assert letter.status == "open" and letter.escalated_at is not None
    assert (letter.escalated_to, letter.escalation_note) == ("erin", "bank says no")
    assert AuditLog.objects.get().reason == "bank says no"
    listing = ops.get(f"{CHANGELIST}?state=escalated").content.decode()
    assert letter.pk in listing
    assert letter.pk not in ops.get(f"{CHANGELIST}?state=open").content.decode()


@pytest.mark.parametrize(
    "form",
    [
        {"owner": "", "note": "x"},
        {"owner": "erin", "note": ""},
        {"owner": "not-a-user", "note": "x"},
    ],
)
def test_a_bad_escalation_is_a_400_and_changes_nothing(ops, login, merchant, form):
    login("payments_ops", "erin")
    payment, letter = failed_payment(merchant)
    resp = act(ops, "escalate", [letter], apply="1", **form)
    assert resp.status_code == 400
    nothing_changed(payment, letter)


# --- filters and search -------------------------------------------------------------


def ids_listed(client, query: str) -> set[str]:
    page = client.get(f"{CHANGELIST}?{query}").content.decode()
    return {dl.pk for dl in DeadLetter.objects.all() if page_of(dl) in page}


def test_filters_by_state_stage_error_and_age_and_search_by_payment(ops, merchant):
    _, young = failed_payment(merchant)
    _, old = failed_payment(merchant)
    DeadLetter.objects.filter(pk=old.pk).update(
        first_seen=timezone.now() - timedelta(days=2), error_class="UnknownGateway"
    )
    other = dead_letter_record(stage="settle", error_class="LedgerError", message="x")
    DeadLetter.objects.filter(pk=other.pk).update(
        first_seen=timezone.now() - timedelta(hours=3), status="resolved"
    )
    assert ids_listed(ops, "age=1h") == {young.pk}
    assert ids_listed(ops, "age=1d") == {young.pk, other.pk}
    assert ids_listed(ops, "age=older") == {old.pk}
    assert ids_listed(ops, "stage=settle") == {other.pk}
    assert ids_listed(ops, "error_class=UnknownGateway") == {old.pk}
    assert ids_listed(ops, "state=open") == {young.pk, old.pk}
    assert ids_listed(ops, "state=resolved") == {other.pk}
    assert ids_listed(ops, f"q={young.payment_id}") == {young.pk}


# --- a payment's whole story -----------------------------------------------------------


def test_a_payment_page_tells_its_whole_story_with_the_card_masked(ops, merchant):
    number = "4242424242424242"
    payment, letter = refund_letter(merchant)
    act(ops, "refund", [letter], apply="1", amount="700", reason="goodwill")
    refund = Refund.objects.get()
    assert refund_execute_batch([refund.pk])["succeeded"] == 1
    act(ops, "escalate", [letter], apply="1", owner="olga", note="watch it")
    resp = ops.get(f"/admin/payments/payment/{payment.pk}/change/")
    assert resp.status_code == 200
    page = resp.content.decode()
    assert number not in page and number[:6] not in page
    assert "visa •••• 4242" in page
    for event in (
        "payment.validated",
        "payment.settled",
        "refund.created",
        "refund.succeeded",
    ):
        assert event in page, event
    payment.refresh_from_db()
    assert f"sandbox: {payment.pk}:sandbox" in page  # the route's idempotency key
    assert payment.gateway_reference in page  # the gateway's record
    assert refund.pk in page and refund.gateway_reference in page
    assert f"merchant:{merchant.pk}:available" in page  # ledger postings
    assert "settlement" in page and "refund" in page
    assert letter.pk in page and "escalated" in page
    assert "goodwill" in page and "watch it" in page  # the audit trail
    assert 'name="_save"' not in page


def test_support_reads_payments_refunds_and_batches_but_changes_nothing(
    support, ops, merchant
):
    payment, letter = refund_letter(merchant)
    act(ops, "refund", [letter], apply="1", amount="", reason="x")
    refund = Refund.objects.get()
    for url in (
        f"/admin/payments/payment/{payment.pk}/change/",
        f"/admin/payments/refund/{refund.pk}/change/",
        "/admin/payments/refund/",
        "/admin/payments/paymentbatch/",
        "/admin/payments/auditlog/",
        "/admin/payments/event/",
    ):
        resp = support.get(url)
        assert resp.status_code == 200, url
        assert 'name="_save"' not in resp.content.decode(), url
    assert support.get("/admin/payments/refund/add/").status_code == 403


# --- the operator-only transition -------------------------------------------------------


def test_failed_to_validated_is_an_operators_move_only(merchant):
    from payments.exceptions import IllegalTransition
    from payments.services.transitions import transition
    from payments.state import NON_TERMINAL, TERMINAL, can_transition

    assert not can_transition("failed", "validated")
    assert can_transition("failed", "validated", operator=True)
    assert not can_transition("declined", "validated", operator=True)
    assert not can_transition("failed", "processing", operator=True)
    assert "failed" in TERMINAL and "failed" not in NON_TERMINAL
    payment, _ = failed_payment(merchant)
    with pytest.raises(IllegalTransition):
        transition(payment_ids=[payment.pk], expected="failed", new="validated")
    assert Payment.objects.get(pk=payment.pk).status == "failed"


def test_a_resolved_letter_offers_only_a_refund(ops, merchant):
    _, letter = failed_payment(merchant)
    act(ops, "resolve", [letter], apply="1", reason="done")
    page = ops.get(page_of(letter)).content.decode()
    assert 'data-action="refund"' in page
    for action in ("retry", "resolve", "escalate"):
        assert f'data-action="{action}"' not in page
