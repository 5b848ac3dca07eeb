"""Risk rules from the command line: ``create_merchant --card-velocity ...``
and ``merchant_risk``; bad input is refused with a clear error and changes
nothing."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from payments.models import AuditLog, Merchant
from payments.services import risk

pytestmark = pytest.mark.django_db

RISK_FIELDS = risk.MERCHANT_FIELDS  # the fields the rules are read from


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


# --- the admin's merchant page and the purge ---------------------------------------


def _admin_form(merchant, **risk):
    """The merchant change form as the admin renders it, with ``risk`` changed."""
    from django.forms.models import model_to_dict

    data = {
        k: ("" if v is None else v)
        for k, v in model_to_dict(merchant).items()
        if k not in ("id", "created_at")
    }
    for key in ("currencies", "risk_blocked_countries", "risk_blocked_bins"):
        data[key] = json.dumps(data[key] or [])
    data["risk_outcomes"] = json.dumps(data["risk_outcomes"] or {})
    data.update(risk)
    data.update(
        {"api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
         "api_keys-MIN_NUM_FORMS": "0", "api_keys-MAX_NUM_FORMS": "1000"}
    )  # fmt: skip
    return data


def test_the_admin_edits_risk_rules_through_the_services_checks(merchant):
    from django.test import Client

    from tests.payments.admin_helpers import operator

    client = Client()
    client.force_login(operator("root", "superuser"))
    url = f"/admin/payments/merchant/{merchant.pk}/change/"
    page = client.get(url).content.decode()
    assert "Risk rules" in page and "card_velocity: off" in page
    bad = client.post(url, _admin_form(merchant, risk_blocked_bins='["12"]'))
    assert bad.status_code == 200 and "six digits" in bad.content.decode()
    assert rules_of(merchant.pk)["risk_blocked_bins"] == []
    good = client.post(
        url,
        _admin_form(
            merchant,
            risk_card_velocity_count="4",
            risk_blocked_countries='["gb"]',
            risk_outcomes='{"card_velocity": "block"}',
        ),
    )
    assert good.status_code == 302, good.content.decode()[-2000:]
    rules = rules_of(merchant.pk)
    assert rules["risk_card_velocity_count"] == 4
    assert rules["risk_blocked_countries"] == ["GB"]
    assert rules["risk_outcomes"] == {"card_velocity": "block"}
    record = AuditLog.objects.get(action="merchant.risk_rules")
    assert record.actor == "root" and "card_velocity: 4 payments" in record.detail


def test_velocity_entries_older_than_the_longest_window_are_purged(merchant):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from payments.models import VelocityEntry
    from payments.services.risk import risk_velocity_purge

    now = timezone.now()
    longest = timedelta(seconds=settings.SURGE_RISK_MAX_WINDOW_SECONDS)
    for n, age in enumerate((longest + timedelta(seconds=5), longest / 2)):
        VelocityEntry.objects.create(
            merchant_id=merchant.pk, kind="card", key="f", payment_id=f"pay_{n}",
            amount=100, created_at=now - age,
        )  # fmt: skip
    assert risk_velocity_purge() == 1
    assert list(VelocityEntry.objects.values_list("payment_id", flat=True)) == ["pay_1"]
