"""The ledger's side of reconciliation, on its own: settled payments and
gateway records come in as plain rows, as the layer above hands them in."""

import pytest

from ledger.reconcile import Break, check_gateway_records, reconcile
from ledger.services import post_settlements
from tests.ledger.helpers import settlement


def settled_rows(*rows):
    """A source of settled payments: (id, merchant_id, amount, currency, fee,
    gateway, gateway_reference) rows, whatever ``since`` is."""
    return lambda since: list(rows)


def row(pid="pay_1", merchant="mer_1", amount=1000, fee=59):
    return (pid, merchant, amount, "usd", fee, "sandbox", f"ch_{pid}")


def kinds(report) -> list[str]:
    return sorted(b.kind for b in report.breaks)


@pytest.mark.django_db
def test_settled_rows_matching_their_entries_are_clean():
    post_settlements([settlement("pay_1"), settlement("pay_2")])
    report = reconcile(settled=settled_rows(row("pay_1"), row("pay_2")))
    assert report.ok
    assert report.checked["settled_payments"] == 2
    assert report.warnings == []


@pytest.mark.django_db
def test_settled_row_without_an_entry_is_a_break_naming_the_payment():
    post_settlements([settlement("pay_1")])
    report = reconcile(settled=settled_rows(row("pay_1"), row("pay_2")))
    assert kinds(report) == ["missing_settlement"]
    assert report.breaks[0].payment_id == "pay_2"


@pytest.mark.django_db
def test_entry_for_a_payment_not_among_the_settled_rows_is_a_break():
    post_settlements([settlement("pay_1"), settlement("pay_2")])
    report = reconcile(settled=settled_rows(row("pay_1")))
    assert kinds(report) == ["settlement_for_unsettled_payment"]


@pytest.mark.django_db
def test_gateway_records_come_from_the_source_passed_in():
    post_settlements([settlement("pay_1")])
    theirs = [("sandbox", "pay_1", "charge", 999, "usd")]
    report = reconcile(
        settled=settled_rows(row("pay_1")),
        record_source=lambda name, since: [r for r in theirs if r[0] == name],
    )
    assert kinds(report) == ["gateway_amount_mismatch"]
    assert report.checked["gateway_records"] == 1


def test_check_gateway_records_reports_each_kind_of_break():
    ours = [
        ("g", "pay_1", "charge", 100, "usd"),
        ("g", "pay_2", "charge", 100, "usd"),
        ("g", "pay_3", "charge", 100, "usd"),
        ("g", "pay_3", "charge", 100, "usd"),
        ("g", "pay_4", "charge", 100, "usd"),
    ]
    theirs = [
        {
            "gateway": "g",
            "reference": "pay_1",
            "kind": "charge",
            "amount": 100,
            "currency": "USD",
        },
        ("g", "pay_2", "charge", 90, "usd"),
        ("g", "pay_3", "charge", 100, "usd"),
        ("g", "pay_9", "charge", 100, "usd"),
    ]
    assert sorted(b.kind for b in check_gateway_records(ours, theirs)) == [
        "duplicate_ledger_record",
        "gateway_amount_mismatch",
        "missing_at_gateway",
        "stray_gateway_record",
    ]


def test_check_gateway_records_of_matching_sides_is_empty():
    records = [("g", "pay_1", "charge", 100, "usd"), ("g", "re_1", "refund", 5, "usd")]
    assert check_gateway_records(records, list(reversed(records))) == []


def test_break_carries_payment_id_only_for_known_payments():
    [b] = check_gateway_records([], [("g", "pay_x", "charge", 1, "usd")])
    assert b == Break("stray_gateway_record", b.message, "pay_x", None)
