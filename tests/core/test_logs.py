"""Structured logs: JSON a line, the request's context on every line, card
numbers scrubbed whatever carries them."""

import io
import json
import logging

import pytest

from core import logs
from core.pan import RedactPANFilter

PAN = "4242424242424242"


@pytest.fixture
def captured():
    """The root logger's lines as production renders them (formatter + scrubber)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    config = logs.formatter("json")
    factory = config.pop("()")
    handler.setFormatter(factory(**config))
    handler.addFilter(RedactPANFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@pytest.mark.django_db
def test_an_accepted_payment_logs_its_request_merchant_and_payment(
    api, token, merchant, captured
):
    resp = api.post(
        "/v1/payments",
        data={"amount": 100, "currency": "usd", "source": token.id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    assert resp.status_code == 202
    (line,) = [e for e in captured() if e["event"] == "payment.accepted"]
    assert line["request_id"] == resp["Request-Id"]
    assert line["merchant_id"] == merchant.id
    assert line["payment_id"] == resp.json()["id"]
    assert line["level"] == "info" and line["timestamp"].endswith("Z")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "kept"),
    [("req-7f3a.9_Z", True), ("a b", False), ("x" * 65, False), ("", False)],
)
def test_a_clients_request_id_is_kept_only_when_it_is_a_plain_token(api, given, kept):
    resp = api.get("/v1/payments", HTTP_X_REQUEST_ID=given)
    assert (resp["Request-Id"] == given) is kept
    assert 1 <= len(resp["Request-Id"]) <= 64


def test_card_numbers_are_scrubbed_from_every_kind_of_line(captured):
    logs.get_logger("t").info("charge", note=f"card {PAN}", nested={"pan": [PAN]})
    logging.getLogger("t").warning("plain %s", PAN)
    try:
        raise ValueError(f"boom {PAN}")
    except ValueError:
        logging.getLogger("t").exception("failed")
    lines = captured()
    assert len(lines) == 3
    text = json.dumps(lines)
    assert PAN not in text and "4242 4242" not in text
    assert "Traceback" in lines[2]["exception"]


def test_context_bound_once_is_on_every_line_until_cleared(captured):
    logs.clear()
    logs.bind(request_id="r1", merchant_id="mer_1")
    logs.get_logger("t").info("one")
    logging.getLogger("t").info("two")
    logs.clear()
    logs.get_logger("t").info("three")
    one, two, three = captured()
    assert one["request_id"] == two["request_id"] == "r1"
    assert two["merchant_id"] == "mer_1"
    assert "request_id" not in three
