import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from payments.models import Event, Payment
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(merchant):
    token = TokenFactory(merchant_id=merchant.id)
    payments = [
        Payment.objects.create(
            merchant=merchant, amount=100, currency="usd", source=token
        )
        for _ in range(3)
    ]
    for p in payments:
        Event.objects.create(type="payment.created", merchant_id=merchant.id, payment=p)
        Event.objects.create(
            type="payment.validated", merchant_id=merchant.id, payment=p
        )
    Event.objects.update(published_at=timezone.now())
    return payments


def test_replay_by_payment_marks_only_its_events_unpublished(published, capsys):
    call_command("replay", payment=[published[0].pk])
    assert set(
        Event.objects.filter(published_at__isnull=True).values_list(
            "payment_id", flat=True
        )
    ) == {published[0].pk}
    assert "re-published 2" in capsys.readouterr().out


def test_replay_by_type(published):
    call_command("replay", type=["payment.validated"])
    assert Event.objects.filter(published_at__isnull=True).count() == 3
    assert not Event.objects.filter(
        published_at__isnull=True, type="payment.created"
    ).exists()


def test_replay_dry_run_changes_nothing(published, capsys):
    call_command("replay", type=["payment.created"], dry_run=True)
    assert Event.objects.filter(published_at__isnull=True).count() == 0
    assert "3 event(s) would be" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"since": "yesterday"},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ],
)
def test_replay_bad_arguments_are_errors_and_change_nothing(published, kwargs):
    with pytest.raises(CommandError):
        call_command("replay", **kwargs)
    assert Event.objects.filter(published_at__isnull=True).count() == 0
