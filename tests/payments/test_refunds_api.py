"""GET /v1/refunds/<id> and GET /v1/payments/<id>/refunds: cursor pages, and a
merchant never sees another's refunds (404)."""

import pytest

from payments.models import Refund
from payments.rendering import refund_render
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory
from tests.payments.test_refunds import refund, settled_payment

pytestmark = pytest.mark.django_db


def refunds_of(api, merchant, n, amount=100):
    payment = settled_payment(merchant, amount=10_000)
    ids = []
    for i in range(n):
        resp = refund(api, payment.pk, f"r-{payment.pk}-{i}", amount=amount)
        assert resp.status_code == 202, resp.content
        ids.append(resp.json()["id"])
    return payment, ids


def test_a_refund_is_retrieved_as_it_was_created(api, merchant):
    payment, [refund_id] = refunds_of(api, merchant, 1)
    resp = api.get(f"/v1/refunds/{refund_id}")
    assert resp.status_code == 200
    assert resp.json() == refund_render(Refund.objects.get(pk=refund_id))
    assert resp.json()["payment"] == payment.pk and resp.json()["status"] == "pending"


def test_a_payments_refunds_page_newest_first_by_cursor(api, merchant):
    payment, ids = refunds_of(api, merchant, 5)
    refunds_of(api, merchant, 2)  # another payment's refunds are not listed
    first = api.get(f"/v1/payments/{payment.pk}/refunds?limit=2").json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [r["id"] for r in first["data"]] == ids[::-1][:2]
    seen = [r["id"] for r in first["data"]]
    page = first
    while page["has_more"]:
        page = api.get(
            f"/v1/payments/{payment.pk}/refunds",
            {"limit": 2, "starting_after": seen[-1]},
        ).json()
        seen += [r["id"] for r in page["data"]]
    assert seen == ids[::-1]


def test_a_payment_without_refunds_lists_none(api, merchant):
    payment = settled_payment(merchant)
    resp = api.get(f"/v1/payments/{payment.pk}/refunds")
    assert resp.json() == {"object": "list", "data": [], "has_more": False}


def test_another_merchants_refund_is_404(api, client_for):
    other = MerchantFactory()
    _, secret = api_key_create(merchant=other)
    payment, [refund_id] = refunds_of(client_for(secret), other, 1)
    resp = api.get(f"/v1/refunds/{refund_id}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "resource_missing"
    nested = api.get(f"/v1/payments/{payment.pk}/refunds")
    assert nested.status_code == 404
    assert nested.json()["error"]["code"] == "resource_missing"


@pytest.mark.parametrize("refund_id", ["re_nope", "re_%00x", "x" * 300])
def test_an_unknown_refund_is_404(api, refund_id):
    assert api.get(f"/v1/refunds/{refund_id}").status_code == 404


def test_a_nul_in_the_payment_id_is_404_not_500(api):
    assert api.get("/v1/payments/pay_%00x/refunds").status_code == 404
    assert api.get("/v1/payments/pay_%00x").status_code == 404


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "color=red", "starting_after=re_nope"]
)
def test_bad_list_queries_are_400(api, merchant, query):
    payment, _ = refunds_of(api, merchant, 1)
    resp = api.get(f"/v1/payments/{payment.pk}/refunds?{query}")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["param"] in {"limit", "color", "starting_after"}


def test_a_cursor_from_another_payment_is_400(api, merchant):
    payment, _ = refunds_of(api, merchant, 1)
    _, [elsewhere] = refunds_of(api, merchant, 1)
    resp = api.get(f"/v1/payments/{payment.pk}/refunds?starting_after={elsewhere}")
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "starting_after"


def test_the_schema_documents_both_operations(api):
    import io

    import yaml
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", stdout=out)
    paths = yaml.safe_load(out.getvalue())["paths"]
    assert paths["/v1/refunds/{refund_id}"]["get"]["operationId"] == (
        "refunds_retrieve"
    )
    listing = paths["/v1/payments/{payment_id}/refunds"]["get"]
    assert listing["operationId"] == "refunds_list"
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "starting_after"}
