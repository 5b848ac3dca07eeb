"""Two merchants, each with one object of every kind, made through the API;
the API's routes read from the URLconf; and a fingerprint of every table a
request could write. Shared by the attack tests."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from payments.models import ApiKey
from payments.services.keys import api_key_create
from tests.apiclient import APIClient
from tests.factories import MerchantFactory
from tests.payments.test_refunds import settled_payment

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}
# The receiver URL: loopback (let through by the test's settings), a closed
# port: nothing is ever delivered, and no name is looked up.
HOOK_URL = "http://127.0.0.1:9/hooks"

# --- The routes ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    template: str  # OpenAPI style: /v1/payments/{payment_id}
    converters: dict[str, str]  # parameter -> converter name
    view: Callable
    name: str | None

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(self.converters)

    @property
    def view_class(self) -> type | None:
        return getattr(self.view, "cls", None) or getattr(self.view, "view_class", None)

    @property
    def is_api(self) -> bool:
        cls = self.view_class
        return cls is not None and issubclass(cls, APIView)

    @property
    def authenticated(self) -> bool:
        if not self.is_api:
            return False
        initkwargs = getattr(self.view, "initkwargs", {})
        permissions = initkwargs.get(
            "permission_classes", self.view_class.permission_classes
        )
        return any(issubclass(p, IsAuthenticated) for p in permissions)

    @property
    def methods(self) -> tuple[str, ...]:
        cls = self.view_class
        if cls is None:
            return ("GET",)
        return tuple(
            m.upper()
            for m in cls.http_method_names
            if m not in ("options", "head") and hasattr(cls, m)
        )

    def path(self, **ids: str) -> str:
        return self.template.format(**ids)


def _walk(patterns, prefix: str, converters: dict) -> Iterator[Route]:
    for entry in patterns:
        pattern = entry.pattern
        here = {**converters}
        for name, conv in getattr(pattern, "converters", {}).items():
            here[name] = type(conv).__name__
        text = prefix + str(pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, text, here)
        elif isinstance(entry, URLPattern):
            yield Route(_openapi(text), here, entry.callback, entry.name)


def _openapi(route: str) -> str:
    """``v1/payments/<id:payment_id>`` -> ``/v1/payments/{payment_id}``."""
    out, rest = "/", route
    while "<" in rest:
        head, _, tail = rest.partition("<")
        spec, _, rest = tail.partition(">")
        out += head + "{" + spec.rpartition(":")[2] + "}"
    return out + rest


def routes() -> list[Route]:
    """Every route of the URLconf except the admin's (tests/attack/test_admin.py)."""
    return [
        r
        for r in _walk(get_resolver().url_patterns, "", {})
        if not r.template.startswith("/admin/")
    ]


def api_routes() -> list[Route]:
    return [r for r in routes() if r.authenticated]


# Routes that answer without an API key, on purpose. Anything else outside the
# admin must be an authenticated API view (tests/attack/test_auth.py).
PUBLIC = {"/v1/schema", "/v1/docs", "/metrics", "/health/live", "/health/ready"}

# --- The objects ----------------------------------------------------------------

# A URL parameter -> the kind of object it names. A route with a parameter
# that is not here fails tests/attack/test_bola.py::test_the_matrix_knows_every_route.
ID_KINDS = {
    "payment_id": "payment",
    "refund_id": "refund",
    "token_id": "token",
    "batch_id": "batch",
    "endpoint_id": "webhook_endpoint",
    "event_id": "event",
}
# An id of every kind that does not exist: what another merchant's must look like.
UNKNOWN = {
    "payment": "pay_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "refund": "re_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "token": "tok_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "batch": "pb_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "webhook_endpoint": "we_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "event": "evt_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "webhook_delivery": "whd_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "merchant": "mer_01KAAAAAAAAAAAAAAAAAAAAAAA",
}


@dataclass
class World:
    """A merchant, its key, a client and one object of every kind."""

    merchant: object
    secret: str
    client: APIClient
    ids: dict[str, str] = field(default_factory=dict)
    _keys: int = 0

    def key(self) -> str:
        self._keys += 1
        return f"attack-{self.ids['merchant']}-{self._keys}"

    def call(self, method: str, path: str, body=None, *, idempotent=False, **extra):
        """One request as this merchant; ``idempotent`` adds a fresh key."""
        if idempotent:
            extra.setdefault("HTTP_IDEMPOTENCY_KEY", self.key())
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        return getattr(self.client, method.lower())(path, **kwargs, **extra)


def _ok(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.content[:500])
    return resp.json()


def make_world() -> World:
    merchant = MerchantFactory()
    _, secret = api_key_create(merchant=merchant)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    w = World(merchant, secret, client, {"merchant": merchant.id})
    token = _ok(w.call("POST", "/v1/tokens", CARD), 201)["id"]
    payment = _ok(
        w.call(
            "POST", "/v1/payments",
            {"amount": 500, "currency": "usd", "source": token},
            idempotent=True,
        ),
        202,
    )["id"]  # fmt: skip
    batch = _ok(
        w.call(
            "POST", "/v1/payment_batches",
            {"payments": [{"amount": 700, "currency": "usd", "source": token,
                           "reference": "emp-1"}]},
            idempotent=True,
        ),
        202,
    )["id"]  # fmt: skip
    settled = settled_payment(merchant, amount=10_000).pk
    refund = _ok(
        w.call(
            "POST", f"/v1/payments/{settled}/refunds", {"amount": 100}, idempotent=True
        ),
        202,
    )["id"]
    endpoint = _ok(
        w.call("POST", "/v1/webhook_endpoints", {"url": HOOK_URL}, idempotent=True),
        201,
    )["id"]
    events = _ok(w.call("GET", "/v1/events?limit=100"), 200)["data"]
    event = next(e["id"] for e in events if e["data"]["object"]["id"] == payment)
    _ok(
        w.call("POST", f"/v1/webhook_endpoints/{endpoint}/resend", {"event": event}),
        202,
    )
    deliveries = _ok(w.call("GET", f"/v1/webhook_endpoints/{endpoint}/deliveries"), 200)
    w.ids.update(
        token=token,
        payment=settled,  # settled: every route of a payment answers 2xx for it
        pending_payment=payment,
        batch=batch,
        refund=refund,
        webhook_endpoint=endpoint,
        event=event,
        webhook_delivery=deliveries["data"][0]["id"],
    )
    return w


# Every write (and every other method) on every route: a body the route
# accepts from the object's owner, so that a refusal can only be about who
# asks. tests/attack/test_bola.py fails for a (route, method) missing here.
def _refund(w):
    return {"amount": 100}


REQUESTS: dict[tuple[str, str], Callable[[World], dict | None]] = {
    ("/v1/payments", "POST"): lambda w: {
        "amount": 1000, "currency": "usd", "source": w.ids["token"],
        "description": "order", "metadata": {"order": "1"},
    },
    ("/v1/payment_batches", "POST"): lambda w: {
        "payments": [
            {"amount": 1000, "currency": "usd", "source": w.ids["token"],
             "reference": f"r-{w.key()}", "metadata": {"emp": "7"}},
        ]
    },
    ("/v1/tokens", "POST"): lambda w: dict(CARD),
    ("/v1/payments/{payment_id}/refunds", "POST"): _refund,
    ("/v1/webhook_endpoints", "POST"): lambda w: {
        "url": HOOK_URL, "enabled_events": ["payment.settled"], "description": "d",
    },
    ("/v1/webhook_endpoints/{endpoint_id}", "PATCH"): lambda w: {
        "description": "changed", "enabled_events": ["payment.settled"],
    },
    ("/v1/webhook_endpoints/{endpoint_id}/rotate_secret", "POST"): lambda w: {
        "expires_in": 60
    },
    ("/v1/webhook_endpoints/{endpoint_id}/resend", "POST"): lambda w: {
        "event": w.ids["event"]
    },
}  # fmt: skip
# The writes that take an Idempotency-Key (the schema says which: a required
# header); the others are sent without one.
BODY_METHODS = ("POST", "PATCH", "PUT")


def needs_idempotency_key(template: str, method: str, schema: dict) -> bool:
    operation = schema["paths"][template][method.lower()]
    return any(
        p["in"] == "header" and p["name"] == "Idempotency-Key"
        for p in operation.get("parameters", [])
    )


# --- What a request may have written --------------------------------------------

# Every table of the apps that hold merchants' data, except the API keys'
# ``last_used_at`` (bookkeeping the authentication writes at most once a
# minute per key, whatever the answer).
_APPS = ("payments", "vault", "ledger", "gateways")
_SKIP = {ApiKey._meta.db_table}


def _tables() -> list[str]:
    return sorted(
        m._meta.db_table
        for label in _APPS
        for m in apps.get_app_config(label).get_models()
        if not m._meta.proxy and m._meta.managed and m._meta.db_table not in _SKIP
    )


def db_state() -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of its rows (order-free)."""
    # Table names come from the models, never from input.
    parts = [
        f"SELECT '{t}', count(*), coalesce(md5(string_agg(md5(x::text), '' "  # noqa: S608
        f"ORDER BY md5(x::text))), '') FROM \"{t}\" x"
        for t in _tables()
    ]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts))
        return {name: (count, digest) for name, count, digest in cursor.fetchall()}


def changed(before: dict, after: dict) -> list[str]:
    return sorted(t for t in before if before[t] != after.get(t))
