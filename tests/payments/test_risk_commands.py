"""Risk rules from the command line: ``create_merchant --card-velocity ...``
and ``merchant_risk``; bad input is refused with a clear error and changes
nothing."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from payments.models import AuditLog, Merchant

pytestmark = pytest.mark.django_db

RISK_FIELDS = (
    "risk_card_velocity_count",
    "risk_card_velocity_amount",
    "risk_card_velocity_window",
    "risk_customer_velocity_count",
    "risk_customer_velocity_amount",
    "risk_customer_velocity_window",
    "risk_amount_ceiling",
    "risk_blocked_countries",
    "risk_blocked_bins",
    "risk_outcomes",
)


def rules_of(merchant_id):
    return Merchant.objects.values(*RISK_FIELDS).get(pk=merchant_id)


def test_create_merchant_turns_card_velocity_on(capsys):
    call_command(
        "create_merchant", "Shop", "--card-velocity", "5",
        "--card-velocity-window", "600", "--block-country", "gb",
    )  # fmt: skip
    merchant = Merchant.objects.get(name="Shop")
    assert merchant.risk_card_velocity_count == 5
    assert merchant.risk_card_velocity_window == 600
    assert merchant.risk_blocked_countries == ["GB"]
    assert merchant.risk_customer_velocity_count is None
    assert "merchant_id: " in capsys.readouterr().out


def test_a_new_merchant_has_every_rule_off():
    call_command("create_merchant", "Plain")
    rules = rules_of(Merchant.objects.get(name="Plain").pk)
    assert rules == {
        **dict.fromkeys(RISK_FIELDS),
        "risk_blocked_countries": [],
        "risk_blocked_bins": [],
        "risk_outcomes": {},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--card-velocity", "0"], "positive integer"),
        (["--card-velocity", "-3"], "positive integer"),
        (["--card-velocity", "five"], "positive integer or 'off'"),
        (["--card-velocity-window", "99999999999"], "at most"),
        (["--block-country", "G1"], "two-letter"),
        (["--block-bin", "4242"], "six digits"),
        (["--outcome", "nope=block"], "Unknown risk rule"),
        (["--outcome", "amount_ceiling=allow"], "'review' or 'block'"),
        (["--outcome", "amount_ceiling"], "RULE=OUTCOME"),
    ],
)
def test_create_merchant_refuses_bad_rules_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_merchant", "Bad", *args)
    assert not Merchant.objects.filter(name="Bad").exists()


def test_merchant_risk_changes_the_rules_and_audits_it(merchant, capsys):
    call_command(
        "merchant_risk", merchant.pk, "--card-velocity", "5",
        "--amount-ceiling", "100000", "--block-country", "XX",
        "--block-bin", "400000", "--customer-velocity", "3",
        "--customer-velocity-amount", "50000", "--outcome", "amount_ceiling=block",
    )  # fmt: skip
    rules = rules_of(merchant.pk)
    assert rules["risk_card_velocity_count"] == 5
    assert rules["risk_amount_ceiling"] == 100000
    assert rules["risk_blocked_countries"] == ["XX"]
    assert rules["risk_blocked_bins"] == ["400000"]
    assert rules["risk_customer_velocity_count"] == 3
    assert rules["risk_customer_velocity_amount"] == 50000
    assert rules["risk_outcomes"] == {"amount_ceiling": "block"}
    out = capsys.readouterr().out
    assert "card_velocity: 5 payments per 3600 s -> review" in out
    assert "amount_ceiling: 100000 -> block" in out
    record = AuditLog.objects.get(action="merchant.risk_rules")
    assert record.object_id == merchant.pk and "card_velocity" in record.detail


def test_merchant_risk_turns_rules_off_and_unblocks(merchant):
    call_command(
        "merchant_risk", merchant.pk, "--card-velocity", "5",
        "--block-bin", "400000", "--block-bin", "424242",
    )  # fmt: skip
    call_command(
        "merchant_risk", merchant.pk, "--card-velocity", "off",
        "--unblock-bin", "400000",
    )  # fmt: skip
    rules = rules_of(merchant.pk)
    assert rules["risk_card_velocity_count"] is None
    assert rules["risk_blocked_bins"] == ["424242"]


def test_merchant_risk_with_no_option_shows_the_rules(merchant, capsys):
    call_command("merchant_risk", merchant.pk)
    out = capsys.readouterr().out
    assert "card_velocity: off" in out and "blocked_bin: off" in out
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--card-velocity", "5", "--block-bin", "abc"],
        ["--amount-ceiling", "0"],
        ["--block-country", "GB", "--outcome", "card_velocity=maybe"],
    ],
)
def test_merchant_risk_refuses_bad_input_and_changes_nothing(merchant, args):
    before = rules_of(merchant.pk)
    with pytest.raises(CommandError):
        call_command("merchant_risk", merchant.pk, *args)
    assert rules_of(merchant.pk) == before
    assert not AuditLog.objects.exists()


def test_merchant_risk_refuses_an_unknown_merchant():
    with pytest.raises(CommandError, match="No merchant"):
        call_command("merchant_risk", "mer_nope", "--card-velocity", "5")
