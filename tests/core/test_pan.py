import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.pan import (
    _RUN,
    REDACTED,
    RedactPANFilter,
    _redact_run,
    contains_pan,
    redact_pans,
)
from tests.vault.conftest import console_to_current_stderr

logger = logging.getLogger("tests.core.pan")


@pytest.mark.parametrize(
    "text",
    [
        "card 4242424242424242 refused",
        "card 4242 4242 4242 4242 refused",
        "card 4242-4242-4242-4242 refused",
        "amex 3782 822463 10005",
        "visa13 4222222222222",
        "19 digits 4000000000000000006",
        '{"number": "4242424242424242"}',
        "pan=4242424242424242&x=1",
        "qty 3 4242 4242 4242 4242",
    ],
)
def test_card_numbers_are_redacted(text):
    out = redact_pans(text)
    assert REDACTED in out
    for digits in ("4242424242424242", "4242 4242", "4222222222222", "822463"):
        assert digits not in out
    assert contains_pan(text)


def test_a_short_number_next_to_a_card_survives():
    assert redact_pans("qty 3 4242 4242 4242 4242") == f"qty 3 {REDACTED}"


@pytest.mark.parametrize(
    "text",
    [
        "amount 100000000 usd",
        "charged 1999 cents, 42 retries",
        "payment pay_01JD3K4Z8Q0000000000000000 ok",
        "not luhn 4242424242424241",
        "12 digits 424242424242",
        "24-digit reference 424242424242424242424242",
        "date 2026-11-21 12:30:00 port 5432",
        "phone +1 415-555-0100",
    ],
)
def test_ordinary_numbers_are_left_alone(text):
    assert redact_pans(text) == text
    assert not contains_pan(text)


def test_log_message_and_args_are_redacted_at_record_creation(caplog):
    with caplog.at_level(logging.INFO):
        logger.info("charging %s for %d", "4242424242424242", 1000)
    record = caplog.records[-1]
    assert record.getMessage() == f"charging {REDACTED} for 1000"
    assert "4242424242424242" not in caplog.text


def test_exception_tracebacks_are_redacted(caplog):
    with caplog.at_level(logging.ERROR):
        try:
            raise ValueError("gateway rejected 4242-4242-4242-4242")
        except ValueError:
            logger.exception("charge failed")
    assert "ValueError: gateway rejected " + REDACTED in caplog.text
    assert "4242-4242-4242-4242" not in caplog.text
    assert caplog.records[-1].exc_info is None


def test_stack_info_is_redacted(caplog):
    def frame_with_a_card(pan="4242424242424242"):
        logger.warning("here", stack_info=True)

    with caplog.at_level(logging.WARNING):
        frame_with_a_card()
    assert "4242424242424242" not in caplog.text


def test_handler_filter_redacts_extra_fields():
    record = logging.LogRecord("x", logging.INFO, "f", 1, "msg", None, None)
    record.card = "4242424242424242"
    assert RedactPANFilter().filter(record) is True
    assert record.card == REDACTED


def test_handler_filter_keeps_a_record_with_a_broken_format_string():
    record = logging.LogRecord("x", logging.INFO, "f", 1, "%d %s", ("a",), None)
    assert RedactPANFilter().filter(record) is True


def test_console_handler_from_settings_redacts(capsys):
    with console_to_current_stderr():
        logging.getLogger("tests.vault").warning(
            "declined card %s", "4000 0000 0000 0002"
        )
    err = capsys.readouterr().err
    assert f"declined card {REDACTED}" in err
    assert "4000 0000 0000 0002" not in err


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="0123456789 -ab_", max_size=60)
    | st.lists(
        st.sampled_from(
            [
                "4242424242424242",
                "4242 4242 4242 4242",
                "4222222222222",
                "4222",
                "22222",
                "0",
                "12",
                " ",
                "-",
                "x",
            ]
        ),
        max_size=8,
    ).map("".join)
)
def test_the_thirteen_digit_precheck_changes_no_result(text):
    # Without the shortcut: every run of digit groups checked on its own.
    assert redact_pans(text) == _RUN.sub(lambda m: _redact_run(m.group(0)), text)
