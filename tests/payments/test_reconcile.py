"""``reconcile`` across apps: the ledger against settled payments and gateway
records, the management command's exit status and its dead letters."""

import json

import pytest
from django.core.management import CommandError, call_command

from ledger.services import post_refund, post_settlements
from payments.models import DeadLetter
from payments.services import reconciliation as rec
from payments.services.reconciliation import reconcile
from tests.ledger.factories import PaymentFactory
from tests.ledger.helpers import settlement

pytestmark = pytest.mark.django_db


def settle(payment) -> None:
    post_settlements(
        [
            settlement(
                payment.id,
                payment.merchant_id,
                payment.amount,
                payment.fee,
                payment.currency,
                payment.gateway,
            )
        ]
    )


def charges_of(*payments):
    return [(p.gateway, p.id, "charge", p.amount, p.currency) for p in payments]


@pytest.fixture
def gateway(monkeypatch):
    """Stand-in for gateways.services.charge_records; tests fill ``records``."""
    records: list = []
    monkeypatch.setattr(
        rec,
        "default_record_source",
        lambda: lambda name, since: [r for r in records if r[0] == name],
    )
    return records


@pytest.fixture
def clean(gateway):
    payments = PaymentFactory.create_batch(3)
    for p in payments:
        settle(p)
    gateway.extend(charges_of(*payments))
    return payments


def kinds(report) -> list[str]:
    return sorted(b.kind for b in report.breaks)


def run_command(*args) -> tuple[int, str]:
    try:
        call_command("reconcile", "--no-progress", *args)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, ""


def test_clean_ledger_exits_zero(clean, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert run_command("--report", str(out)) == (0, "")
    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert report["checked"]["settled_payments"] == 3
    assert "clean" in capsys.readouterr().out
    assert not DeadLetter.objects.exists()


def test_settled_payment_without_entry_is_a_break_and_exits_nonzero(clean, gateway):
    lost = PaymentFactory()
    gateway.extend(charges_of(lost))
    code, message = run_command()
    assert code == 1
    assert "1 break" in message
    letter = DeadLetter.objects.get()
    assert (letter.stage, letter.error_class, letter.payment_id) == (
        "reconcile",
        "missing_settlement",
        lost.id,
    )


def test_entry_for_a_payment_that_is_not_settled_is_a_break(clean, gateway):
    unsettled = PaymentFactory(status="succeeded")
    settle(unsettled)
    report = reconcile(record_source=None)
    assert kinds(report) == ["settlement_for_unsettled_payment"]
    assert run_command()[0] == 1


def test_settlement_entry_of_another_amount_is_a_break(clean):
    payment = PaymentFactory()
    post_settlements([settlement(payment.id, payment.merchant_id, 999, 59)])
    assert "settlement_amount_mismatch" in kinds(reconcile(record_source=None))


def test_settlement_with_another_fee_split_is_a_break(clean):
    payment = PaymentFactory(fee=59)
    post_settlements([settlement(payment.id, payment.merchant_id, 1000, 60)])
    assert kinds(reconcile(record_source=None)) == ["settlement_split_mismatch"]


def test_gateway_amount_mismatch_is_a_break(clean, gateway):
    p = clean[0]
    gateway[0] = (p.gateway, p.id, "charge", p.amount + 1, p.currency)
    report = reconcile()
    assert kinds(report) == ["gateway_amount_mismatch"]
    assert report.breaks[0].payment_id == p.id
    assert run_command()[0] == 1


def test_stray_gateway_charge_is_a_break(clean, gateway):
    gateway.append(("sandbox", "pay_NEVERSEEN", "charge", 500, "usd"))
    assert kinds(reconcile()) == ["stray_gateway_record"]
    code, _ = run_command()
    assert code == 1
    assert DeadLetter.objects.get().payment_id is None


def test_duplicate_gateway_charge_is_a_break(clean, gateway):
    gateway.append(gateway[0])
    assert kinds(reconcile()) == ["duplicate_gateway_record"]
    assert run_command()[0] == 1


def test_charge_missing_at_gateway_is_a_break(clean, gateway):
    gateway.pop()
    assert kinds(reconcile()) == ["missing_at_gateway"]


def test_refunds_are_compared_when_the_gateway_reports_them(clean, gateway):
    p = clean[0]
    post_refund(
        refund_id="re_1", payment_id=p.id, merchant_id=p.merchant_id,
        gateway=p.gateway, amount=100, currency="usd",
    )  # fmt: skip
    report = reconcile()
    assert report.ok and report.warnings  # no refunds in their records: skipped
    gateway.append((p.gateway, "re_1", "refund", 100, "usd"))
    assert reconcile().ok
    gateway[-1] = (p.gateway, "re_1", "refund", 100, "eur")
    assert kinds(reconcile()) == ["gateway_currency_mismatch"]


def test_missing_charge_records_function_is_skipped_with_a_warning(clean, monkeypatch):
    monkeypatch.setattr(rec, "default_record_source", lambda: None)
    report = reconcile()
    assert report.ok
    assert any("charge_records" in w for w in report.warnings)


def test_since_limits_the_payments_checked(clean, gateway):
    since = max(p.created_at for p in clean)
    report = reconcile(since=since)
    assert report.checked["settled_payments"] == 1
    assert kinds(report) == ["stray_gateway_record", "stray_gateway_record"]
    assert run_command("--since", since.isoformat())[0] == 1
