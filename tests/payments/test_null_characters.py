"""A NUL character anywhere in a payment's text is a 400 that writes nothing
(PostgreSQL's text and jsonb cannot hold it: it used to be a 500)."""

import pytest

from payments.models import Event, Payment

pytestmark = pytest.mark.django_db


def _item(token, **over):
    item = {"amount": 100, "currency": "usd", "source": token.id, "reference": "r1"}
    item.update(over)
    return item


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", "pay\x00roll"),
        ("reference", "r\x001"),
        ("metadata", {"employee": "a\x00b"}),
        ("metadata", {"emp\x00loyee": "ab"}),
    ],
)
def test_a_batch_item_with_a_null_character_is_refused(api, token, field, value):
    resp = api.post(
        "/v1/payment_batches",
        data={
            "payments": [_item(token, reference="r0"), _item(token, **{field: value})]
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"nul-{field}-{len(str(value))}",
    )
    assert resp.status_code == 400, resp.content
    errors = resp.json()["error"]["errors"]
    assert [(e["index"], e["param"]) for e in errors] == [(1, field)]
    assert not Payment.objects.exists() and not Event.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"description": "pay\x00roll"},
        {"metadata": {"employee": "a\x00b"}},
        {"metadata": {"emp\x00loyee": "ab"}},
    ],
)
def test_a_single_payment_with_a_null_character_is_refused(api, token, body):
    resp = api.post(
        "/v1/payments",
        data={"amount": 100, "currency": "usd", "source": token.id, **body},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"nul-single-{sorted(body)[0]}-{len(str(body))}",
    )
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert not Payment.objects.exists()
