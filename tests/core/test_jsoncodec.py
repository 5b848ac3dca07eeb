import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from core import jsoncodec

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_json)
def test_the_encoders_write_what_json_dumps_writes_with_the_same_options(value):
    assert jsoncodec.compact(value) == json.dumps(value, separators=(",", ":"))
    assert jsoncodec.canonical(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=str
    )


def test_canonical_orders_keys_and_writes_other_objects_as_text():
    when = datetime(2026, 11, 22, tzinfo=UTC)
    assert jsoncodec.canonical({"b": 1, "a": when}) == (
        '{"a":"2026-11-22 00:00:00+00:00","b":1}'
    )
