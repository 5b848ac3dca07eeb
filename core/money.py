"""Money as integer minor units. No float ever touches an amount."""

from dataclasses import dataclass

# ISO 4217 currencies Surge accepts, with their minor-unit exponent.
CURRENCY_EXPONENTS: dict[str, int] = {
    "usd": 2, "eur": 2, "gbp": 2, "chf": 2, "cad": 2, "aud": 2, "nzd": 2,
    "sek": 2, "nok": 2, "dkk": 2, "pln": 2, "czk": 2, "huf": 2, "ron": 2,
    "mxn": 2, "brl": 2, "inr": 2, "sgd": 2, "hkd": 2, "zar": 2, "ils": 2,
    "jpy": 0, "krw": 0, "clp": 0, "isk": 0, "vnd": 0,
    "bhd": 3, "kwd": 3, "jod": 3, "omr": 3, "tnd": 3,
}  # fmt: skip


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in CURRENCY_EXPONENTS


def is_amount(value: object) -> bool:
    """True for a positive int; bool, float and numeric strings are refused."""
    return type(value) is int and value > 0


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int:
            raise TypeError("Money.amount must be an int of minor units")
        if not is_currency(self.currency):
            raise ValueError(f"unknown currency {self.currency!r}")

    def __str__(self) -> str:
        exp = CURRENCY_EXPONENTS[self.currency]
        sign = "-" if self.amount < 0 else ""
        whole, frac = divmod(abs(self.amount), 10**exp)
        body = f"{whole}.{frac:0{exp}d}" if exp else str(whole)
        return f"{sign}{body} {self.currency.upper()}"
