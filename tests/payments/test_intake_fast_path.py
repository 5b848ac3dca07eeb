"""The intake hot path skips DRF's serializers; these prove it changes nothing.

``payment_create_parse`` must accept only what ``PaymentCreateSerializer``
accepts and return the same validated data; ``payment_render`` must equal
``PaymentSerializer(...).data`` for every kind of payment.
"""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.api.serializers import (
    BatchItemSerializer,
    PaymentCreateSerializer,
    PaymentSerializer,
    RefundSerializer,
    batch_item_parse,
    payment_create_parse,
)
from payments.models import Payment, Refund
from payments.rendering import payment_render, refund_render

PAN = "4242424242424242"

texts = st.one_of(
    st.text(max_size=45),
    st.sampled_from(
        ["tok_abc", " tok_abc", "tok_abc ", "", "  ", "a\x00b", "a\nb", "\ud800",
         PAN, f"card {PAN}", "x" * 40, "x" * 41, "x" * 500, "x" * 501]
    ),
)  # fmt: skip
values = st.one_of(
    texts,
    st.integers(min_value=-2, max_value=200_000_000),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.sampled_from(["usd", "USD", "eur", "xyz", "jpy", 840]),
    st.dictionaries(texts, st.one_of(texts, st.integers()), max_size=3),
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"amount": values, "currency": values, "source": values},
        optional={"description": values, "metadata": values, "surprise": values},
    ),
    st.fixed_dictionaries(
        {
            "amount": st.integers(min_value=1, max_value=10**8),
            "currency": st.sampled_from(["usd", "eur", "jpy", "bhd"]),
            "source": texts,
        },
        optional={
            "description": texts,
            "metadata": st.dictionaries(texts, texts, max_size=4),
        },
    ),
    values,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_fast_parse_accepts_a_subset_of_the_serializer_with_the_same_result(data):
    fast = payment_create_parse(data)
    serializer = PaymentCreateSerializer(data=data)
    valid = serializer.is_valid()
    if fast is not None:
        assert valid, (data, serializer.errors)
        assert fast == dict(serializer.validated_data)


batch_items = st.one_of(
    st.fixed_dictionaries(
        {"amount": values, "currency": values, "source": values, "reference": values},
        optional={"description": values, "metadata": values, "surprise": values},
    ),
    st.fixed_dictionaries(
        {
            "amount": st.integers(min_value=1, max_value=10**8),
            "currency": st.sampled_from(["usd", "eur", "jpy", "bhd"]),
            "source": texts,
            "reference": st.one_of(texts, st.text(min_size=120, max_size=130)),
        },
        optional={
            "description": texts,
            "metadata": st.dictionaries(texts, texts, max_size=4),
        },
    ),
    bodies,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch_items)
def test_batch_item_fast_parse_accepts_a_subset_of_its_serializer(data):
    fast = batch_item_parse(data)
    serializer = BatchItemSerializer(data=data)
    valid = serializer.is_valid()
    if fast is not None:
        assert valid, (data, serializer.errors)
        assert fast == dict(serializer.validated_data)


def test_a_batch_item_is_a_payment_with_a_reference():
    """One definition of the input rules: a batch item's fields are a
    payment's, declared once, plus the merchant's reference."""
    item, payment = BatchItemSerializer().fields, PaymentCreateSerializer().fields
    assert set(item) == set(payment) | {"reference"}
    for name, field in payment.items():
        assert type(item[name]) is type(field)
        assert vars(item[name]).keys() == vars(field).keys()


@pytest.mark.parametrize(
    "data",
    [
        {"amount": 1000, "currency": "usd", "source": "tok_x"},
        {"amount": 1, "currency": "jpy", "source": "tok_x", "description": ""},
        {"amount": 10**8, "currency": "eur", "source": "tok_x", "description": "pay"},
        {"amount": 5, "currency": "usd", "source": "tok_x", "metadata": {"a": "b"}},
        {"amount": 5, "currency": "usd", "source": "tok_x", "metadata": {}},
    ],
)
def test_the_common_bodies_take_the_fast_path(data):
    serializer = PaymentCreateSerializer(data=data)
    assert serializer.is_valid()
    assert payment_create_parse(data) == serializer.validated_data


@pytest.mark.parametrize(
    "data",
    [
        {"amount": 10.5, "currency": "usd", "source": "tok_x"},
        {"amount": True, "currency": "usd", "source": "tok_x"},
        {"amount": 10**8 + 1, "currency": "usd", "source": "tok_x"},
        {"amount": 1, "currency": "USD", "source": "tok_x"},
        {"amount": 1, "currency": "usd", "source": PAN},
        {"amount": 1, "currency": "usd", "source": "tok_x", "description": PAN},
        {"amount": 1, "currency": "usd", "source": "tok_x", "metadata": {PAN: "x"}},
        {"amount": 1, "currency": "usd", "source": "tok_x", "surprise": 1},
        {"amount": 1, "currency": "usd"},
        [1, 2],
    ],
)
def test_refusals_are_left_to_the_serializer(data):
    assert payment_create_parse(data) is None
    assert not PaymentCreateSerializer(data=data).is_valid()


def _payment(**over) -> Payment:
    now = datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC)
    fields = {
        "id": "pay_x", "merchant_id": "mer_x", "amount": 1234, "currency": "usd",
        "source_id": "tok_x", "description": "", "metadata": {},
        "created_at": now, "updated_at": now,
    }  # fmt: skip
    fields.update(over)
    return Payment(**fields)


@pytest.mark.parametrize(
    "payment",
    [
        _payment(),
        _payment(description="salary", metadata={"run": "42", "n": "7"}),
        _payment(
            status="failed",
            failure_code="card_unavailable",
            failure_message="The card could not be read.",
        ),
        _payment(
            status="settled",
            settled_at=datetime(2026, 11, 21, 12, 0, 1, tzinfo=UTC),
            amount_refunded=34,
            reference="payroll-1",
            batch_id="pb_x",
            fee=40,
        ),
        _payment(created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=3)),
        _payment(
            status="review",
            customer="cus_1",
            enrichment={
                "card": {"brand": "visa", "funding": None, "country": "GB"},
                "route": {"gateway": "sandbox", "failover": None, "reason": "r"},
                "risk": {"outcome": "review", "rule": "card_velocity"},
            },
        ),
    ],
)
def test_render_equals_the_serializer(payment):
    assert payment_render(payment) == PaymentSerializer(payment).data


@pytest.mark.parametrize(
    "refund",
    [
        Refund(
            id="re_x", payment_id="pay_x", amount=100, currency="usd",
            created_at=datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        Refund(
            id="re_y", payment_id="pay_y", amount=7, currency="eur",
            status="failed", failure_code="gateway_unavailable",
            created_at=datetime(2026, 1, 1, 3, tzinfo=UTC),
        ),
    ],
)  # fmt: skip
def test_refund_render_equals_the_serializer(refund):
    assert refund_render(refund) == RefundSerializer(refund).data
