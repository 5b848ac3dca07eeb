import pytest
from django.test import RequestFactory

from tests.factories import MerchantFactory, card_token
from vault.api.views import TokenCreateView
from vault.models import Token

PAN = "4242424242424242"


def body(**overrides):
    data = {"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def post(api, data):
    return api.post("/v1/tokens", data, format="json")


@pytest.fixture(autouse=True)
def ring(use_ring):
    use_ring("k1")


def test_create_token_is_201_with_the_card_summary(api, merchant):
    response = post(api, body(number="4242 4242 4242 4242"))
    assert response.status_code == 201
    data = response.json()
    assert set(data) == {
        "id",
        "object",
        "brand",
        "last4",
        "exp_month",
        "exp_year",
        "fingerprint",
        "created_at",
    }
    assert data["object"] == "token" and data["id"].startswith("tok_")
    assert (data["brand"], data["last4"], data["exp_month"], data["exp_year"]) == (
        "visa",
        "4242",
        12,
        2030,
    )
    assert Token.objects.get(pk=data["id"]).merchant_id == merchant.id


def test_response_never_contains_the_number(api):
    response = post(api, body())
    assert PAN not in response.content.decode()
    assert "cvc" not in response.json()


def test_same_card_twice_has_the_same_fingerprint_and_different_ids(api):
    a, b = (
        post(api, body()).json(),
        post(api, body(number="4242-4242-4242-4242")).json(),
    )
    assert a["fingerprint"] == b["fingerprint"] and a["id"] != b["id"]


def test_amex_with_four_digit_cvc_is_accepted(api):
    response = post(api, body(number="378282246310005", cvc="1234"))
    assert response.status_code == 201
    assert response.json()["brand"] == "amex"


def test_mastercard_two_series_is_accepted(api):
    response = post(api, body(number="2223003122003222"))
    assert response.json()["brand"] == "mastercard"


BAD = {
    "bad_luhn": (body(number="4242424242424241"), "number"),
    "wrong_length": (body(number="424242424242424"), "number"),
    "unsupported_brand": (body(number="9242424242424242"), "number"),
    "letters": (body(number="4242abcd42424242"), "number"),
    "blank_number": (body(number=""), "number"),
    "missing_number": (body(number=...), "number"),
    "number_as_int": (body(number=4242424242424242), "number"),
    "number_too_long": (body(number="4" * 40), "number"),
    "past_year": (body(exp_year=2020), "exp_year"),
    "past_month": (body(exp_month=1, exp_year=2026), "exp_month"),
    "month_13": (body(exp_month=13), "exp_month"),
    "month_0": (body(exp_month=0), "exp_month"),
    "month_as_string": (body(exp_month="12"), "exp_month"),
    "month_as_float": (body(exp_month=12.0), "exp_month"),
    "month_as_bool": (body(exp_month=True), "exp_month"),
    "year_as_string": (body(exp_year="2030"), "exp_year"),
    "missing_year": (body(exp_year=...), "exp_year"),
    "missing_cvc": (body(cvc=...), "cvc"),
    "cvc_as_int": (body(cvc=123), "cvc"),
    "four_digit_cvc_on_visa": (body(cvc="1234"), "cvc"),
    "three_digit_cvc_on_amex": (body(number="378282246310005", cvc="123"), "cvc"),
    "letters_in_cvc": (body(cvc="12a"), "cvc"),
    "unknown_field": (body(name="Jane"), "name"),
}


@pytest.mark.parametrize(("data", "param"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, data, param):
    response = post(api, data)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert PAN not in response.content.decode()
    assert "4242424242424241" not in response.content.decode()
    assert not Token.objects.exists()


def test_body_that_is_not_an_object_is_400(api):
    response = api.post("/v1/tokens", [PAN], format="json")
    assert response.status_code == 400
    assert PAN not in response.content.decode()


def test_create_token_requires_an_api_key(client, db):
    response = client.post("/v1/tokens", body(), content_type="application/json")
    assert response.status_code == 401
    assert not Token.objects.exists()


def test_view_marks_number_and_cvc_as_sensitive_for_error_reports(merchant):
    request = RequestFactory().post("/v1/tokens", {}, content_type="application/json")
    TokenCreateView.as_view()(request)
    assert request.sensitive_post_parameters == ("number", "cvc")


def test_retrieve_own_token(api, merchant):
    token = card_token(merchant)
    response = api.get(f"/v1/tokens/{token.id}")
    assert response.status_code == 200
    assert response.json()["id"] == token.id


def test_another_merchants_token_is_404(api, db):
    other = card_token(MerchantFactory())
    response = api.get(f"/v1/tokens/{other.id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


def test_schema_documents_the_tokens_endpoint(client, db):
    schema = client.get("/v1/schema?format=json").json()
    operation = schema["paths"]["/v1/tokens"]["post"]
    assert operation["operationId"] == "tokens_create"
    assert "201" in operation["responses"]
