"""Test-card outcomes shared by the sandbox and the simulator (no Django here)."""

from datetime import date

from gateways.error_codes import DeclineCode, ErrorCode

SUCCEEDS = "4242424242424242"
CARD_DECLINED = "4000000000000002"
INSUFFICIENT_FUNDS = "4000000000009995"
PROCESSING_ERROR = "4000000000000119"

DECLINES = {
    CARD_DECLINED: DeclineCode.CARD_DECLINED,
    INSUFFICIENT_FUNDS: DeclineCode.INSUFFICIENT_FUNDS,
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def outcome(pan: str, exp_month: int, exp_year: int, today: date | None = None) -> str:
    """Return "succeeded", "processing_error" or a decline code."""
    if pan == PROCESSING_ERROR:
        return ErrorCode.PROCESSING_ERROR
    if pan in DECLINES:
        return DECLINES[pan]
    if not (pan.isdigit() and 12 <= len(pan) <= 19 and luhn_ok(pan)):
        return DeclineCode.INCORRECT_NUMBER
    today = today or date.today()
    if (int(exp_year), int(exp_month)) < (today.year, today.month):
        return DeclineCode.EXPIRED_CARD
    return "succeeded"
