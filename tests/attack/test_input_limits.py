"""Input limits on every write the API takes (read from the URLconf): an
oversized body, JSON nested 10,000 deep, huge metadata, NUL characters and
unpaired surrogates in any string, CR/LF in the Idempotency-Key. Each is a
clear 4xx with the error object, and writes nothing."""

import json

import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from core.parsers import MAX_JSON_DEPTH
from tests.attack.world import (
    BODY_METHODS,
    ID_KINDS,
    REQUESTS,
    api_routes,
    changed,
    db_state,
    needs_idempotency_key,
)

pytestmark = pytest.mark.django_db

WRITES = [(r.template, m) for r in api_routes() for m in r.methods if m in BODY_METHODS]
BY_TEMPLATE = {r.template: r for r in api_routes()}
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
KEYED_WRITES = [w for w in WRITES if needs_idempotency_key(*w, SCHEMA)]


def test_every_write_is_attacked():
    assert {t for t, _ in WRITES} >= {
        "/v1/payments", "/v1/payment_batches", "/v1/tokens",
        "/v1/payments/{payment_id}/refunds", "/v1/webhook_endpoints",
    }  # fmt: skip
    assert all(w in REQUESTS for w in WRITES)


class Target:
    def __init__(self, world, template, method):
        self.world, self.method = world, method
        route = BY_TEMPLATE[template]
        self.path = route.path(**{p: world.ids[ID_KINDS[p]] for p in route.params})
        self.body = REQUESTS[(template, method)](world)
        self.keyed = needs_idempotency_key(template, method, SCHEMA)

    def send(self, raw: bytes | str, **extra):
        if self.keyed:
            extra.setdefault("HTTP_IDEMPOTENCY_KEY", self.world.key())
        return self.world.client.generic(
            self.method, self.path, raw, content_type="application/json", **extra
        )

    def refused(self, raw, status: int, code: str | set, **extra) -> dict:
        """Send, expect ``status`` with ``code`` and the whole error object,
        and nothing written."""
        before = db_state()
        resp = self.send(raw, **extra)
        assert resp.status_code == status, (resp.status_code, resp.content[:400])
        assert resp["Content-Type"] == "application/json"
        error = resp.json()["error"]
        assert {"type", "code", "message", "param"} <= set(error), error
        assert error["code"] in ({code} if isinstance(code, str) else code), error
        assert changed(before, db_state()) == []
        return error

    def accepted(self):
        """The unaltered request goes through: the refusals were the attack's."""
        resp = self.send(json.dumps(self.body))
        assert resp.status_code < 300, (resp.status_code, resp.content[:400])


@pytest.fixture(params=WRITES, ids=[f"{m} {t}" for t, m in WRITES])
def target(request, victim):
    return Target(victim, *request.param)


@pytest.fixture(params=KEYED_WRITES, ids=[f"{m} {t}" for t, m in KEYED_WRITES])
def keyed_target(request, victim):
    return Target(victim, *request.param)


def test_an_oversized_body_is_413(target):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # Refused on the declared length, before one byte is read: the body here
    # is far shorter than declared, and reading past it would fail the test.
    target.refused(b"{}", 413, "body_too_large", CONTENT_LENGTH=str(limit + 1))
    big = {**target.body, "pad": "x" * (limit + 10)}
    target.refused(json.dumps(big), 413, "body_too_large")
    target.accepted()


def test_json_nested_ten_thousand_deep_is_400(target):
    deep = "[" * 10_000 + "]" * 10_000
    target.refused(deep, 400, "json_too_deep")
    target.refused('{"a": ' + deep + "}", 400, "json_too_deep")
    # Deep enough to refuse, shallow enough that json itself parses it.
    inner = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    name = next(iter(target.body))
    text = json.dumps({**target.body, name: "@"}).replace('"@"', inner)
    target.refused(text, 400, "json_too_deep")
    target.accepted()


def _with_metadata(body: dict, metadata) -> dict:
    if "payments" in body:
        return {"payments": [{**body["payments"][0], "metadata": metadata}]}
    return {**body, "metadata": metadata}


HUGE_METADATA = {
    "51 keys": {f"k{i}": "v" for i in range(51)},
    "10,000 keys": {f"k{i}": "v" * 10 for i in range(10_000)},
    "a 41-character key": {"k" * 41: "v"},
    "an empty key": {"": "v"},
    "a 501-character value": {"k": "v" * 501},
    "a 100,000-character value": {"k": "v" * 100_000},
    "an object value": {"k": {"nested": "v"}},
    "a number value": {"k": 1},
    "not an object": ["k", "v"],
}


def test_huge_metadata_is_400(target):
    takes_metadata = "metadata" in json.dumps(target.body)
    codes = {"parameter_invalid", "batch_invalid"}
    for case, metadata in HUGE_METADATA.items():
        body = _with_metadata(target.body, metadata)
        error = target.refused(json.dumps(body), 400, codes)
        if takes_metadata:
            assert "metadata" in json.dumps(error), (case, error)
        else:  # a write without metadata names the field it does not know
            assert error["param"] == "metadata", (case, error)
    target.accepted()


def _strings(value, path=()):
    """(path, string) of every string value in a body."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))
    elif isinstance(value, str):
        yield path, value


def _objects(value, path=()):
    """The path of every object (dict) in a body, the body itself first."""
    if isinstance(value, dict):
        yield path
        for k, v in value.items():
            yield from _objects(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _objects(v, (*path, i))


def _replace(value, path, new):
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _with_key(value, key, path=()):
    """The body with ``key`` added to the innermost object on ``path``."""
    if isinstance(value, dict) and not path:
        return {**value, key: "v"}
    head, *rest = path
    if isinstance(value, dict):
        return {**value, head: _with_key(value[head], key, rest)}
    return [_with_key(v, key, rest) if i == head else v for i, v in enumerate(value)]


def test_nul_and_unpaired_surrogates_in_any_string_are_400(target):
    """In every string value of the body, and as a key in every object of it."""
    strings = list(_strings(target.body))
    objects = list(_objects(target.body))
    codes = {"parameter_invalid", "batch_invalid", "invalid_json", "invalid_request"}
    for bad in ("\x00", "\ud800", "\udfff", "\ud800\x00"):
        for path, value in strings:
            for new in (value + bad, bad + value, bad):
                body = _replace(target.body, path, new)
                # ensure_ascii: the surrogate travels as the escape \ud800,
                # the only way JSON text can hold one.
                target.refused(json.dumps(body), 400, codes)
        for path in objects:
            body = _with_key(target.body, f"k{bad}", path)
            target.refused(json.dumps(body), 400, codes)
    target.accepted()


CRLF = ["a\r\nb", "a\nb", "a\rb", "\r\n", "order-1\r\nX-Injected: yes", "a\x00b"]


def test_cr_lf_in_the_idempotency_key_is_400(keyed_target):
    target = keyed_target
    for key in CRLF:
        error = target.refused(
            json.dumps(target.body), 400, "idempotency_key_invalid",
            HTTP_IDEMPOTENCY_KEY=key,
        )  # fmt: skip
        assert error["param"] == "Idempotency-Key"
    target.accepted()
