import csv

import pytest
from django.core.management import CommandError, call_command

from payments.models import Payment

pytestmark = pytest.mark.django_db


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=["amount", "currency", "source", "reference"]
        )
        writer.writeheader()
        writer.writerows(rows)


def test_import_accepts_valid_rows_and_reports_rejected(tmp_path, merchant, token):
    rows = [
        {"amount": "1500", "currency": "usd", "source": token.id, "reference": "emp-1"},
        {"amount": "10.5", "currency": "usd", "source": token.id, "reference": "emp-2"},
        {
            "amount": "900",
            "currency": "usd",
            "source": "tok_nope",
            "reference": "emp-3",
        },
        {"amount": "700", "currency": "usd", "source": token.id, "reference": "emp-4"},
    ]
    src = tmp_path / "payroll.csv"
    write_csv(src, rows)
    report = tmp_path / "rejected.csv"
    call_command("import_payments", str(src), merchant=merchant.id, report=str(report))
    assert sorted(Payment.objects.values_list("reference", flat=True)) == [
        "emp-1",
        "emp-4",
    ]
    problems = list(csv.DictReader(report.open()))
    assert [(p["line"], p["field"]) for p in problems] == [
        ("3", "amount"),
        ("4", "source"),
    ]


def test_import_twice_rejects_used_references(tmp_path, merchant, token):
    src = tmp_path / "p.csv"
    write_csv(
        src, [{"amount": "1", "currency": "usd", "source": token.id, "reference": "x"}]
    )
    call_command("import_payments", str(src), merchant=merchant.id)
    call_command("import_payments", str(src), merchant=merchant.id)
    assert Payment.objects.count() == 1


def test_import_unknown_merchant_is_an_error(tmp_path):
    src = tmp_path / "p.csv"
    write_csv(src, [])
    with pytest.raises(CommandError):
        call_command("import_payments", str(src), merchant="mer_nope")


def test_import_missing_columns_is_an_error(tmp_path, merchant):
    src = tmp_path / "p.csv"
    src.write_text("amount,currency\n1,usd\n")
    with pytest.raises(CommandError):
        call_command("import_payments", str(src), merchant=merchant.id)
    assert Payment.objects.count() == 0
