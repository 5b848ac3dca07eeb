"""Fuzzing: schemathesis reads the OpenAPI description the app serves at
/v1/schema and sends every operation generated requests (valid ones and
ones that break the schema), as a merchant with a valid key, through the
WSGI application the web server serves (core.handlers.SurgeWSGIApplication).

For every answer: no 5xx; the status code, content type, headers and body
are the ones the schema documents; and an answer in the 4xx wrote nothing
(every table of the merchants' data compared before and after).

Half of the generated path ids are the merchant's real objects, so the
fuzzer gets past "no such object" into the views. Reproducible: Hypothesis
is derandomized (a fixed seed), and each operation is bounded in examples.
"""

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
from tests.attack.world import ID_KINDS, changed, db_state

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


@schema.hooks.hook("before_generate_path_parameters")
def _real_ids(ctx, strategy):
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
    case.headers = {
        **(case.headers or {}),
        "Authorization": f"Bearer {fuzz_world.secret}",
    }
    before = db_state()
    response = case.call()
    if 400 <= response.status_code < 500:
        assert changed(before, db_state()) == [], (
            response.status_code,
            response.text[:300],
        )
    case.validate_response(response, checks=CHECKS)
