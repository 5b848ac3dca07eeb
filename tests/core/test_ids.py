import time

import pytest

from core.ids import id_timestamp_ms, new_id
from core.money import Money, is_amount


def test_ids_sort_by_creation_time():
    first = [new_id("pay") for _ in range(50)]
    time.sleep(0.002)
    later = new_id("pay")
    assert all(earlier < later for earlier in first)
    assert len({*first, later}) == 51


def test_ids_made_within_one_millisecond_keep_their_order():
    values = [new_id("whd") for _ in range(2000)]  # many share a millisecond
    stamps = [id_timestamp_ms(v) for v in values]
    assert len(set(stamps)) < len(values)
    assert values == sorted(values) and len(set(values)) == len(values)


def test_a_forked_child_starts_its_own_sequence():
    import os

    new_id("pay")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id is random after the millisecond
        from core import ids

        os.write(write, repr(ids._last).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 100) == b"(0, 0)"


def test_id_carries_its_creation_millisecond():
    before = time.time_ns() // 1_000_000
    value = new_id("evt")
    after = time.time_ns() // 1_000_000
    assert value.startswith("evt_") and len(value) == 30
    assert before <= id_timestamp_ms(value) <= after


@pytest.mark.parametrize("value", ["pay_short", "nope", "pay_" + "!" * 26])
def test_foreign_strings_have_no_timestamp(value):
    assert id_timestamp_ms(value) is None


def test_unknown_prefix_is_refused():
    with pytest.raises(ValueError):
        new_id("card")


@pytest.mark.parametrize("value", [10.5, "100", True, 0, -1, None])
def test_only_positive_ints_are_amounts(value):
    assert not is_amount(value)


def test_money_formats_by_currency_exponent_and_refuses_floats():
    assert str(Money(123456, "usd")) == "1234.56 USD"
    assert str(Money(500, "jpy")) == "500 JPY"
    assert str(Money(-1005, "kwd")) == "-1.005 KWD"
    with pytest.raises(TypeError):
        Money(10.5, "usd")


def test_the_encoding_is_base32_of_the_sixteen_bytes_in_crockfords_alphabet():
    import base64
    import random

    from core.ids import _ALPHABET, _encode

    to_crockford = bytes.maketrans(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode()
    )
    rng = random.Random(7)
    values = [0, 1, 2**128 - 1, 2**80, (2**48 - 1) << 80]
    values += [rng.getrandbits(128) for _ in range(2000)]
    for value in values:
        raw = value.to_bytes(16, "big")
        expected = base64.b32encode(raw).translate(to_crockford)[:26].decode()
        assert _encode(value) == expected
    assert sorted(values) == sorted(values, key=_encode)  # it sorts like the number
