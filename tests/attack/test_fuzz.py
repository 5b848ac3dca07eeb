"""Fuzzing: schemathesis reads the OpenAPI description the app serves at
/v1/schema and sends every operation generated requests (valid ones and
ones that break the schema), as a merchant with a valid key, through the
WSGI application the web server serves (core.handlers.SurgeWSGIApplication).

For every answer: no 5xx; the status code, content type, headers and body
are the ones the schema documents; and an answer in the 4xx wrote nothing
(every table of the merchants' data compared before and after).

Half of the generated path ids are the merchant's real objects, so the
fuzzer gets past "no such object" into the views; a fuzz dictionary of
nasty values (NUL, CR/LF, a 5,000-character string, huge integers, look-alike
digits, ...) is mixed into path ids, queries and every field of a body.
Reproducible: Hypothesis is derandomized (a fixed seed), and each operation
is bounded in examples.
"""

import hashlib

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.handlers import SurgeWSGIApplication
from tests.attack.world import ID_KINDS, REQUESTS, changed, db_state

pytestmark = pytest.mark.django_db

# Per operation; about 20 operations. Enough to find what is findable at
# this size (tests/attack: the bugs it found), within the suite's budget.
MAX_EXAMPLES = 40

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# The merchant's real ids, by path parameter, for the test being run.
REAL_IDS: dict[str, str] = {}

# Read from the app as a client would, when the module loads (the schema
# view touches no database).
schema = schemathesis.openapi.from_wsgi(
    "/v1/schema?format=json", SurgeWSGIApplication()
)


# A fuzz dictionary: what random generation rarely makes but attackers send.
# Strings go into path ids, query values and every string of a body (values
# and an extra key); integers into every integer of a body. Surrogates only
# travel in bodies (JSON's \ud800 escape; a URL cannot carry one).
# (Schemathesis' own flatmap hooks reach only its fuzzing phase, a minority
# of the cases here, so the test applies the dictionary itself.)
NASTY_TEXT = [
    "\x00", "a\x00b", "%00", "\r\nX-Injected: 1", "../../etc/passwd", "' OR 1=1--",
    "x" * 5000, "\u0664\u0662\u0664\u0662" * 4, "\uff14\uff12" * 8, "null", "",
    " ", "\u202e", "NaN", "-0", "1e309",
]  # fmt: skip
NASTY_INTEGERS = [0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 10**4000]


def _taint(value, text, number):
    """``value`` with every string replaced by ``text``, every integer by
    ``number``, and ``text`` added as a key to every object."""
    if isinstance(value, dict):
        out = {k: _taint(v, text, number) for k, v in value.items()}
        out[text] = text
        return out
    if isinstance(value, list):
        return [_taint(v, text, number) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return text
    if isinstance(value, int):
        return number
    return value


def _strings_to(value: dict, text: str) -> dict:
    return {k: text if isinstance(v, str) else v for k, v in value.items()}


def _taint_case(case) -> bool:
    """Half the cases get an entry of the dictionary in their path ids, query strings
    and body. Which half, and which entry, is a function of the case itself
    (a digest of what was generated), so a failing case replays and shrinks
    the same way, and each operation meets most entries whatever it draws."""
    generated = repr((case.method, case.path_parameters, case.query, case.body))
    digest = int(hashlib.sha256(generated.encode("utf-8", "replace")).hexdigest(), 16)
    if digest % 2 == 0:
        return False
    i = digest // 2
    text = NASTY_TEXT[i % len(NASTY_TEXT)]
    if case.path_parameters:
        case.path_parameters = _strings_to(case.path_parameters, f"x{text}")
    if case.query:
        case.query = _strings_to(case.query, text)
    if isinstance(case.body, dict | list):
        case.body = _taint(case.body, text, NASTY_INTEGERS[i % len(NASTY_INTEGERS)])
    return True


@schema.hooks.hook("before_generate_path_parameters")
def _real_ids(ctx, strategy):
    """Half the generated path ids are the merchant's real objects."""
    names = [p for p in ID_KINDS if "{" + p + "}" in ctx.operation.path]
    if not names:
        return strategy
    real = st.deferred(lambda: st.just({p: REAL_IDS[p] for p in names}))
    return st.one_of(strategy, real)


@pytest.fixture
def fuzz_world(victim):
    REAL_IDS.clear()
    REAL_IDS.update({param: victim.ids[kind] for param, kind in ID_KINDS.items()})
    # The requests run inside the test's transaction: keep the connection
    # open across them, as Django's test client does.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield victim
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_fails_its_schema_or_writes_on_a_4xx(case, fuzz_world):
    _taint_case(case)
    _call_and_check(case, fuzz_world)


def _call_and_check(case, world) -> None:
    """Send as the merchant; no 5xx, as documented, nothing written by a 4xx."""
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {world.secret}"}
    before = db_state()
    response = case.call()
    if 400 <= response.status_code < 500:
        assert changed(before, db_state()) == [], (
            response.status_code,
            response.text[:300],
        )
    case.validate_response(response, checks=CHECKS)


OPERATIONS = [
    (op.path, op.method.upper())
    for op in (result.ok() for result in schema.get_all_operations())
]


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_dictionary_entry_reaches_every_operation(path, method, fuzz_world):
    """Hypothesis draws few distinct values for a lone path id or query
    field; this sweep sends every entry of the dictionary to every operation
    anyway: as a path id (alone, and after a real one), as every query value,
    and as every string, key and integer of a body the operation accepts."""
    operation = schema[path][method]
    spec = schema.raw_schema["paths"][path][method.lower()]
    params = spec.get("parameters", [])
    names = [p["name"] for p in params if p["in"] == "path"]
    query = [p["name"] for p in params if p["in"] == "query"]
    keyed = any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in params)
    real = {n: fuzz_world.ids[ID_KINDS[n]] for n in names}
    body = REQUESTS[(path, method)](fuzz_world) if (path, method) in REQUESTS else None
    for i, text in enumerate(NASTY_TEXT):
        variants = []
        if names:
            variants.append({"path_parameters": _strings_to(real, f"x{text}")})
            variants.append({"path_parameters": {n: v + text for n, v in real.items()}})
        if query:
            variants.append(
                {"path_parameters": real, "query": dict.fromkeys(query, text)}
            )
        if body is not None:
            number = NASTY_INTEGERS[i % len(NASTY_INTEGERS)]
            variants.append(
                {"path_parameters": real, "body": _taint(body, text, number)}
            )
        for variant in variants:
            headers = {"Idempotency-Key": fuzz_world.key()} if keyed else {}
            kwargs = {"media_type": "application/json"} if "body" in variant else {}
            case = operation.Case(headers=headers, **variant, **kwargs)
            _call_and_check(case, fuzz_world)
