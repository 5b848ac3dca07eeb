"""Broken object-level authorization: another merchant's object, of any kind,
in any route's id, by any method, is a 404 that changes nothing, word for
word the answer for an id that does not exist; and an id of another merchant
in a query or a body is treated as unknown too.

The matrix is read from the URLconf (tests/attack/world.py), so a new route
with an id is attacked as soon as it exists, or fails
``test_the_matrix_knows_every_route`` until the matrix knows how to fill it.
"""

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.attack.world import (
    BODY_METHODS,
    ID_KINDS,
    REQUESTS,
    UNKNOWN,
    api_routes,
    changed,
    db_state,
    needs_idempotency_key,
    routes,
)

pytestmark = pytest.mark.django_db

SCHEMA = None


def schema() -> dict:
    global SCHEMA
    if SCHEMA is None:
        SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
    return SCHEMA


ID_ROUTES = [
    (route.template, method)
    for route in api_routes()
    if route.params
    for method in route.methods
]
BY_TEMPLATE = {route.template: route for route in api_routes()}
# Every kind of object a merchant has; each is tried in every id slot.
KINDS = sorted({*ID_KINDS.values(), "webhook_delivery", "merchant"})


def test_the_matrix_knows_every_route():
    """Every parameter of every route outside the admin is an object id the
    matrix can fill, matched by the id converter (core/converters.py, which
    turns away what no id holds, like a NUL), and every write has a body."""
    assert ID_ROUTES, "no route with an id found: the URLconf walk is broken"
    for route in routes():
        for param, converter in route.converters.items():
            assert param in ID_KINDS, f"{route.template}: no factory for {param}"
            assert converter == "ObjectIdConverter", (route.template, converter)
        for method in route.methods:
            if method in BODY_METHODS:
                assert (route.template, method) in REQUESTS, (route.template, method)
    assert {kind for kind in ID_KINDS.values()} <= set(UNKNOWN)


def _shown(resp, object_id: str) -> str:
    """The answer's body with the id that was asked for taken out."""
    return resp.content.decode().replace(object_id, "<id>")


def _request(world, template, method, ids, owner_world):
    route = BY_TEMPLATE[template]
    body = REQUESTS[(template, method)](owner_world) if method in BODY_METHODS else None
    return world.call(
        method,
        route.path(**ids),
        body,
        idempotent=method in BODY_METHODS
        and needs_idempotency_key(template, method, schema()),
    )


@pytest.mark.parametrize(("template", "method"), ID_ROUTES)
def test_another_merchants_object_is_404_and_nothing_changes(
    victim, attacker, template, method
):
    route = BY_TEMPLATE[template]
    for kind in KINDS:
        foreign = {p: victim.ids[kind] for p in route.params}
        unknown = {p: UNKNOWN[kind] for p in route.params}
        before = db_state()
        resp = _request(attacker, template, method, foreign, victim)
        assert resp.status_code == 404, (kind, resp.status_code, resp.content)
        assert resp.json()["error"]["code"] == "resource_missing"
        assert changed(before, db_state()) == [], (kind, method, template)
        none = _request(attacker, template, method, unknown, victim)
        assert none.status_code == 404, kind
        assert _shown(none, UNKNOWN[kind]) == _shown(resp, victim.ids[kind]), kind
    # The same request from the owner succeeds: the 404s were about who asked.
    own = {p: victim.ids[ID_KINDS[p]] for p in route.params}
    resp = _request(victim, template, method, own, victim)
    assert resp.status_code < 300, (resp.status_code, resp.content)


def _same_as_unknown(attacker, victim, kind, make):
    """The request naming the victim's object answers exactly as the one
    naming an object that does not exist, and writes nothing."""
    before = db_state()
    foreign = make(victim.ids[kind])
    unknown = make(UNKNOWN[kind])
    assert changed(before, db_state()) == []
    assert 400 <= foreign.status_code < 500, foreign.content
    assert foreign.status_code == unknown.status_code
    assert _shown(foreign, victim.ids[kind]) == _shown(unknown, UNKNOWN[kind])


def test_another_merchants_ids_in_queries_are_unknown(victim, attacker):
    a = attacker.ids
    cases = [
        ("payment", lambda i: attacker.call("GET", f"/v1/payments?starting_after={i}")),
        ("event", lambda i: attacker.call("GET", f"/v1/events?starting_after={i}")),
        (
            "refund",
            lambda i: attacker.call(
                "GET", f"/v1/payments/{a['payment']}/refunds?starting_after={i}"
            ),
        ),
        (
            "webhook_delivery",
            lambda i: attacker.call(
                "GET",
                f"/v1/webhook_endpoints/{a['webhook_endpoint']}/deliveries"
                f"?starting_after={i}",
            ),
        ),
    ]
    for kind, make in cases:
        _same_as_unknown(attacker, victim, kind, make)


def test_another_merchants_ids_in_bodies_are_unknown(victim, attacker):
    a = attacker.ids
    cases = [
        (
            "token",
            lambda i: attacker.call(
                "POST", "/v1/payments", {"amount": 100, "currency": "usd", "source": i},
                idempotent=True,
            ),
        ),
        (
            "token",
            lambda i: attacker.call(
                "POST", "/v1/payment_batches",
                {"payments": [{"amount": 100, "currency": "usd", "source": i,
                               "reference": "x"}]},
                idempotent=True,
            ),
        ),
        (
            "event",
            lambda i: attacker.call(
                "POST", f"/v1/webhook_endpoints/{a['webhook_endpoint']}/resend",
                {"event": i},
            ),
        ),
    ]  # fmt: skip
    for kind, make in cases:
        _same_as_unknown(attacker, victim, kind, make)


# Every query parameter and body field the API takes, and whether it names
# an object. A new one fails the test below until it is sorted here (and, if
# it names an object, attacked in one of the two tests above).
ID_FIELDS = {"starting_after", "source", "event"}
NOT_ID_FIELDS = {
    "limit", "status", "type", "created[gte]", "created[lt]", "Idempotency-Key",
    "amount", "currency", "description", "metadata", "reference", "payments",
    "number", "exp_month", "exp_year", "cvc", "url", "enabled_events",
    "expires_in", "created", "gte", "lt",
    "customer",  # the merchant's own reference for its customer, not an object
}  # fmt: skip


def _fields(node, components, seen=()) -> set[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name in seen:
                return set()
            return _fields(components[name], components, (*seen, name))
        out = set(node.get("properties", {}))
        for value in node.values():
            out |= _fields(value, components, seen)
        return out
    if isinstance(node, list):
        return set().union(*(_fields(v, components, seen) for v in node))
    return set()


def test_every_parameter_is_known_to_name_an_object_or_not():
    s = schema()
    components = s["components"]["schemas"]
    found = set()
    for operations in s["paths"].values():
        for operation in operations.values():
            found |= {
                p["name"] for p in operation.get("parameters", []) if p["in"] != "path"
            }
            body = operation.get("requestBody", {}).get("content", {})
            found |= _fields(body, components)
    unknown = found - ID_FIELDS - NOT_ID_FIELDS
    assert not unknown, f"sort these into ID_FIELDS or NOT_ID_FIELDS: {unknown}"
