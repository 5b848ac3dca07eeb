import json
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payments.models import Event, IdempotencyKey, Payment
from payments.services.idempotency import check_key, key_digest
from tests.factories import MerchantFactory, TokenFactory

pytestmark = pytest.mark.django_db


def body(token, **over):
    data = {"amount": 1000, "currency": "usd", "source": token.id}
    data.update(over)
    return data


def post(api, data, key="key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post("/v1/payments", data=data, format="json", **headers, **extra)


def assert_nothing_written():
    assert Payment.objects.count() == 0
    assert Event.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0


def test_create_payment_is_202_pending_with_event(api, token, merchant):
    resp = post(api, body(token, description="salary", metadata={"run": "42"}))
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["id"].startswith("pay_")
    assert data["status"] == "pending"
    assert data["amount"] == 1000 and data["currency"] == "usd"
    assert data["source"] == token.id
    assert data["metadata"] == {"run": "42"}
    assert "Idempotent-Replayed" not in resp.headers
    payment = Payment.objects.get(pk=data["id"])
    assert payment.merchant_id == merchant.id
    event = Event.objects.get(payment=payment)
    assert event.type == "payment.created" and event.published_at is None


def test_same_key_same_body_replays_stored_response(api, token):
    first = post(api, body(token))
    second = post(api, body(token))
    assert second.status_code == 202
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Payment.objects.count() == 1 and Event.objects.count() == 1


def test_same_key_different_body_is_422(api, token):
    post(api, body(token))
    resp = post(api, body(token, amount=2000))
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "idempotency_error"
    assert Payment.objects.count() == 1


def test_same_key_is_scoped_to_merchant(api, token, client_for):
    other = MerchantFactory()
    from payments.services.keys import api_key_create

    _, secret = api_key_create(merchant=other)
    other_token = TokenFactory(merchant_id=other.id)
    assert post(api, body(token)).status_code == 202
    resp = post(client_for(secret), body(other_token))
    assert resp.status_code == 202
    assert "Idempotent-Replayed" not in resp.headers
    assert Payment.objects.count() == 2


def test_missing_idempotency_key_is_400(api, token):
    resp = post(api, body(token), key=None)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "Idempotency-Key"
    assert_nothing_written()


def test_idempotency_key_over_255_chars_is_400(api, token):
    resp = post(api, body(token), key="k" * 256)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "Idempotency-Key"
    assert_nothing_written()


def test_expired_key_is_treated_as_new(api, token):
    post(api, body(token))
    IdempotencyKey.objects.update(expires_at="2000-01-01T00:00:00Z")
    resp = post(api, body(token))
    assert resp.status_code == 202
    assert "Idempotent-Replayed" not in resp.headers
    assert Payment.objects.count() == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 10.5),
        ("amount", 10.0),
        ("amount", "100"),
        ("amount", True),
        ("amount", 0),
        ("amount", -1),
        ("amount", None),
        ("amount", 100_000_001),
        ("currency", "xyz"),
        ("currency", "USD"),
        ("currency", 840),
        ("source", "tok_doesnotexist"),
        ("source", 12),
        ("description", 5),
        ("description", "x" * 501),
        ("metadata", "not-an-object"),
        ("metadata", {"k": 1}),
        ("surprise", "field"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, token, field, value):
    resp = post(api, body(token, **{field: value}))
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].split("[")[0] == field  # metadata[k] names the key
    assert error["message"]
    assert_nothing_written()


@pytest.mark.parametrize("field", ["amount", "currency", "source"])
def test_missing_required_field_is_400(api, token, field):
    data = body(token)
    del data[field]
    resp = post(api, data)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == field
    assert_nothing_written()


def test_amount_over_merchant_limit_is_400(api, token, merchant):
    merchant.max_amount = 500
    merchant.save()
    resp = post(api, body(token, amount=501))
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "amount"
    assert_nothing_written()


def test_currency_not_enabled_for_merchant_is_400(api, token, merchant):
    merchant.currencies = ["eur"]
    merchant.save()
    resp = post(api, body(token, currency="usd"))
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "currency"
    assert_nothing_written()


def test_invalid_json_is_400(api):
    resp = api.post(
        "/v1/payments", data="{not json", content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )  # fmt: skip
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"
    assert_nothing_written()


def test_json_array_body_is_400(api):
    resp = api.post(
        "/v1/payments",
        data="[]",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert resp.status_code == 400
    assert_nothing_written()


def test_nan_is_not_json_and_is_400(api, token):
    raw = '{"amount": NaN, "currency": "usd", "source": "TOKEN"}'.replace(
        "TOKEN", token.id
    )
    resp = api.post(
        "/v1/payments",
        data=raw,
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert resp.status_code == 400
    assert_nothing_written()


def test_wrong_content_type_is_400(api, token):
    resp = api.post(
        "/v1/payments", data=f"amount=1000&currency=usd&source={token.id}",
        content_type="application/x-www-form-urlencoded", HTTP_IDEMPOTENCY_KEY="k",
    )  # fmt: skip
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "unsupported_content_type"
    assert_nothing_written()


def test_body_over_size_limit_is_413(api, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    data = body(
        token, description="x" * 400, metadata={f"k{i}": "v" * 100 for i in range(20)}
    )
    resp = api.post(
        "/v1/payments", data=json.dumps(data), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )  # fmt: skip
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"
    assert_nothing_written()


def test_foreign_token_is_400_on_use(api):
    foreign = TokenFactory()  # belongs to another merchant
    resp = post(api, {"amount": 100, "currency": "usd", "source": foreign.id})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "source"
    assert_nothing_written()


def test_merchant_never_sees_anothers_payment(api, token, client_for):
    pay_id = post(api, body(token)).json()["id"]
    other = MerchantFactory()
    from payments.services.keys import api_key_create

    _, secret = api_key_create(merchant=other)
    resp = client_for(secret).get(f"/v1/payments/{pay_id}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "resource_missing"
    assert client_for(secret).get("/v1/payments").json()["data"] == []


def test_get_payment_returns_it(api, token):
    pay_id = post(api, body(token)).json()["id"]
    resp = api.get(f"/v1/payments/{pay_id}")
    assert resp.status_code == 200
    assert resp.json()["id"] == pay_id


def test_unknown_payment_is_404(api):
    assert api.get("/v1/payments/pay_nope").status_code == 404


def test_list_is_newest_first_with_cursor_and_status_filter(api, token):
    ids = [post(api, body(token), key=f"k{i}").json()["id"] for i in range(5)]
    page1 = api.get("/v1/payments?limit=2").json()
    assert [p["id"] for p in page1["data"]] == ids[::-1][:2]
    assert page1["has_more"] is True
    page2 = api.get(f"/v1/payments?limit=2&starting_after={ids[3]}").json()
    assert [p["id"] for p in page2["data"]] == [ids[2], ids[1]]
    last = api.get(f"/v1/payments?limit=10&starting_after={ids[1]}").json()
    assert [p["id"] for p in last["data"]] == [ids[0]] and last["has_more"] is False
    Payment.objects.filter(pk=ids[0]).update(status="failed")
    failed = api.get("/v1/payments?status=failed").json()["data"]
    assert [p["id"] for p in failed] == [ids[0]]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "status=bogus", "starting_after=pay_x"],
)
def test_bad_list_query_is_400(api, query):
    resp = api.get(f"/v1/payments?{query}")
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == query.split("=")[0]


def test_crash_between_writes_leaves_nothing(api, token):
    """The payment and its event are written, then the idempotency record's
    insert fails inside the same transaction: nothing at all remains."""
    from django.db import DatabaseError

    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION fail_idempotency_insert() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'simulated crash after the payment insert'; END
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER fail_idempotency_insert BEFORE INSERT
                ON payments_idempotencykey
                FOR EACH ROW EXECUTE FUNCTION fail_idempotency_insert();
            """
        )  # rolled back with the test's transaction
    with pytest.raises(DatabaseError):
        post(api, body(token))
    assert_nothing_written()


def test_intake_is_a_handful_of_queries(api, token):
    post(api, body(token), key="warm")  # warm the key cache
    with CaptureQueriesContext(connection) as ctx:
        assert post(api, body(token), key="measure").status_code == 202
    sql = [q["sql"][:60] for q in ctx.captured_queries]
    # key lookup, token owner, savepoint, one statement for the three inserts,
    # release (outside a test: BEGIN/COMMIT instead of the savepoint pair)
    assert len(sql) <= 6, sql


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_payment(
    merchant_and_key, client_for
):
    merchant, secret = merchant_and_key
    token = TokenFactory(merchant_id=merchant.id)
    barrier = threading.Barrier(20)
    results = []

    def worker():
        from django.db import connections

        try:
            client = client_for(secret)
            barrier.wait()
            resp = post(client, body(token), key="same-key")
            results.append((resp.status_code, resp.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    assert {status for status, _ in results} <= {202, 409}
    ids = {data["id"] for status, data in results if status == 202}
    assert len(ids) == 1
    assert Payment.objects.count() == 1
    assert Event.objects.count() == 1
    assert transaction.get_autocommit()


PAN = "4242424242424242"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("description", f"card {PAN}"),
        ("description", "4242 4242 4242 4242"),
        ("metadata", {"card": PAN}),
        ("metadata", {PAN: "x"}),
        ("source", PAN),
    ],
)
def test_card_number_outside_the_vault_is_refused_and_not_echoed(
    api, token, field, value
):
    resp = post(api, body(token, **{field: value}))
    assert resp.status_code == 400
    assert resp.json()["error"]["param"].split("[")[0] == field
    assert "4242" not in resp.content.decode().replace(token.id, "")
    assert_nothing_written()


def test_a_key_holding_a_card_number_is_accepted_and_stored_only_as_a_digest(
    api, token
):
    key = f"order-{PAN}"
    first = post(api, body(token), key=key)
    assert first.status_code == 202
    assert PAN not in first.content.decode()
    again = post(api, body(token), key=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    (stored,) = IdempotencyKey.objects.values_list("key", flat=True)
    assert stored == key_digest(key) and PAN not in stored
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM payments_idempotencykey WHERE "
                       "key LIKE %s OR response_body::text LIKE %s",
                       [f"%{PAN}%", f"%{PAN}%"])  # fmt: skip
        assert cursor.fetchone()[0] == 0


def test_ten_thousand_random_hex_keys_all_pass_the_key_check():
    """uuid4().hex keys hold a run of digits that passes Luhn about once in 500:
    such a key is a key, not a card number."""
    for _ in range(10_000):
        key = uuid.uuid4().hex
        assert check_key(key) == key


@pytest.mark.parametrize(
    "key", ["x" * 256, "caf\u00e9", "a\nb", "a\rb", "tab\there", "\x00", "\u2028"]
)
def test_keys_outside_printable_ascii_1_to_255_are_400(api, token, key):
    resp = post(api, body(token), key=key)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "idempotency_key_invalid"
    assert_nothing_written()


def test_every_printable_ascii_character_is_a_valid_key(api, token):
    key = "".join(chr(c) for c in range(0x20, 0x7F))
    assert post(api, body(token), key=key).status_code == 202


def test_card_number_in_the_url_is_not_echoed(api):
    resp = api.get(f"/v1/payments/{PAN}")
    assert resp.status_code == 404
    assert PAN not in resp.content.decode()
