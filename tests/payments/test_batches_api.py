import pytest

from payments.models import Event, Payment, PaymentBatch
from tests.factories import TokenFactory

pytestmark = pytest.mark.django_db


def items(token, n, start=0, **over):
    out = []
    for i in range(start, start + n):
        item = {
            "amount": 1000 + i,
            "currency": "usd",
            "source": token.id,
            "reference": f"r{i}",
        }
        item.update(over)
        out.append(item)
    return out


def post_batch(api, payments, key="b1"):
    return api.post(
        "/v1/payment_batches", data={"payments": payments}, format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip


def test_batch_of_1000_is_accepted_with_every_payment_id_and_event(api, token):
    resp = post_batch(api, items(token, 1000))
    assert resp.status_code == 202, resp.content[:500]
    data = resp.json()
    assert data["id"].startswith("pb_") and data["count"] == 1000
    assert data["total_amount"] == sum(1000 + i for i in range(1000))
    assert len({p["id"] for p in data["payments"]}) == 1000
    assert Payment.objects.filter(batch_id=data["id"], status="pending").count() == 1000
    assert Event.objects.filter(type="payment.created").count() == 1000


def test_batch_over_1000_is_400(api, token):
    resp = post_batch(api, items(token, 1001))
    assert resp.status_code == 400
    assert Payment.objects.count() == 0


def test_invalid_items_are_all_listed_and_nothing_is_written(api, token):
    batch = items(token, 5)
    batch[1]["amount"] = 10.5
    batch[3]["source"] = "tok_nope"
    batch[4]["currency"] = "zzz"
    resp = post_batch(api, batch)
    assert resp.status_code == 400
    errors = resp.json()["error"]["errors"]
    assert {(e["index"], e["param"]) for e in errors} == {
        (1, "amount"),
        (3, "source"),
        (4, "currency"),
    }
    assert Payment.objects.count() == 0 and PaymentBatch.objects.count() == 0
    assert Event.objects.count() == 0


def test_used_reference_rejects_that_item_in_a_later_batch(api, token):
    assert post_batch(api, items(token, 3), key="first").status_code == 202
    resp = post_batch(api, items(token, 2, start=2), key="second")
    assert resp.status_code == 400
    errors = resp.json()["error"]["errors"]
    assert errors == [
        {"index": 0, "param": "reference", "message": "Reference already used."}
    ]
    assert Payment.objects.count() == 3


def test_reference_repeated_within_a_batch_is_400(api, token):
    batch = items(token, 2)
    batch[1]["reference"] = batch[0]["reference"]
    resp = post_batch(api, batch)
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["index"] == 1


def test_foreign_token_in_batch_is_400(api, token):
    foreign = TokenFactory()
    resp = post_batch(api, items(foreign, 1))
    assert resp.status_code == 400
    assert resp.json()["error"]["errors"][0]["param"] == "source"


@pytest.mark.parametrize("body", [{}, {"payments": []}, {"payments": "x"}, {"x": 1}])
def test_malformed_batch_body_is_400(api, body):
    resp = api.post(
        "/v1/payment_batches", data=body, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "payments"


def test_batch_replays_with_same_key(api, token):
    first = post_batch(api, items(token, 3))
    again = post_batch(api, items(token, 3))
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Payment.objects.count() == 3


def test_batch_summary_counts_per_status(api, token, client_for):
    data = post_batch(api, items(token, 4)).json()
    ids = [p["id"] for p in data["payments"]]
    Payment.objects.filter(pk__in=ids[:2]).update(status="settled")
    Payment.objects.filter(pk=ids[2]).update(status="declined")
    summary = api.get(f"/v1/payment_batches/{data['id']}").json()
    assert summary["by_status"]["settled"] == {"count": 2, "amount": 1000 + 1001}
    assert summary["by_status"]["declined"]["count"] == 1
    assert summary["by_status"]["pending"]["count"] == 1
    assert summary["completed"] is False


def test_another_merchants_batch_is_404(api, token, client_for):
    from payments.services.keys import api_key_create
    from tests.factories import MerchantFactory

    batch_id = post_batch(api, items(token, 1)).json()["id"]
    _, secret = api_key_create(merchant=MerchantFactory())
    assert client_for(secret).get(f"/v1/payment_batches/{batch_id}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_races_its_first_attempt_gets_its_answer_not_a_400(
    api, token, merchant_and_key, client_for, monkeypatch
):
    """Found by `make drill`: a client timed out and retried while its first
    attempt was still running. The retry found no stored key, then the first
    attempt committed, and the retry's validation saw the references "already
    used" (by that very attempt) and answered 400. It must answer what the
    first attempt answered."""
    import threading

    from django.db import connections

    from payments.services import batches

    validate = batches.validate_items
    first: dict = {}

    def first_attempt_commits_meanwhile(**kwargs):
        if not first:  # only the retry runs the first attempt, in between
            first["running"] = True

            def run():
                try:
                    first["response"] = post_batch(
                        client_for(merchant_and_key[1]), items(token, 3), key="race"
                    )
                finally:
                    connections.close_all()

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
        return validate(**kwargs)

    monkeypatch.setattr(batches, "validate_items", first_attempt_commits_meanwhile)
    retry = post_batch(api, items(token, 3), key="race")
    assert first["response"].status_code == 202
    assert retry.status_code == 202, retry.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first["response"].json()
    assert Payment.objects.count() == 3
