"""Risk rules: configured per merchant, assessed by the enrich stage a batch at
a time, never a query per payment.

Rules (each off until a merchant sets it; ``Rule`` names them):

- ``blocked_bin`` / ``blocked_country``: the card's BIN (first six digits) or
  its country (from the vault's BIN data) is on the merchant's list. A card
  whose country the BIN data does not know never matches a country.
- ``amount_ceiling``: the payment's amount is over the merchant's ceiling.
- ``card_velocity`` / ``customer_velocity``: more than N payments, or more
  than an amount, per card fingerprint (or per customer reference) within
  the window. The count is of payments accepted before this one within the
  window (the same card's earlier payments in the batch included), so the
  (N+1)th payment in any window fires.

The static rules need nothing but the batch's own rows. Velocity costs two
statements per batch (``payments.sql.velocity_assess``), and only when a
merchant in the batch has a velocity rule on. A payment that several rules
catch gets the most severe outcome (block over review), and the first rule
in ``Rule`` order with that outcome is the one reported. The thresholds are
never shown to a merchant: a payment carries only ``{outcome, rule}``.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import InvalidRequest
from payments import sql
from payments.models import Merchant


class Rule(StrEnum):
    """The rules, in the order a payment's verdict reports them."""

    BLOCKED_BIN = "blocked_bin"
    BLOCKED_COUNTRY = "blocked_country"
    AMOUNT_CEILING = "amount_ceiling"
    CARD_VELOCITY = "card_velocity"
    CUSTOMER_VELOCITY = "customer_velocity"


class Outcome(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"


# The platform's outcome for each rule; a merchant may override any of them
# (``Merchant.risk_outcomes``).
DEFAULT_OUTCOMES: dict[str, str] = {
    Rule.BLOCKED_BIN: Outcome.BLOCK,
    Rule.BLOCKED_COUNTRY: Outcome.BLOCK,
    Rule.AMOUNT_CEILING: Outcome.REVIEW,
    Rule.CARD_VELOCITY: Outcome.REVIEW,
    Rule.CUSTOMER_VELOCITY: Outcome.REVIEW,
}

_SEVERITY = {Outcome.ALLOW: 0, Outcome.REVIEW: 1, Outcome.BLOCK: 2}

# The merchant's fields the rules are read from (one query per batch).
MERCHANT_FIELDS = (
    "risk_card_velocity_count",
    "risk_card_velocity_amount",
    "risk_card_velocity_window",
    "risk_customer_velocity_count",
    "risk_customer_velocity_amount",
    "risk_customer_velocity_window",
    "risk_amount_ceiling",
    "risk_blocked_countries",
    "risk_blocked_bins",
    "risk_outcomes",
)

# Integer rules: field -> (what it is, for messages).
_POSITIVE = {
    "risk_card_velocity_count": "card velocity count",
    "risk_card_velocity_amount": "card velocity amount",
    "risk_card_velocity_window": "card velocity window",
    "risk_customer_velocity_count": "customer velocity count",
    "risk_customer_velocity_amount": "customer velocity amount",
    "risk_customer_velocity_window": "customer velocity window",
    "risk_amount_ceiling": "amount ceiling",
}
_COUNTRY = re.compile(r"[A-Z]{2}")
_BIN = re.compile(r"[0-9]{6}")
MAX_LIST = 1000  # entries in a blocked list


@dataclass(frozen=True, slots=True)
class Velocity:
    count: int | None
    amount: int | None
    window: int  # seconds

    @property
    def on(self) -> bool:
        return self.count is not None or self.amount is not None


@dataclass(frozen=True, slots=True)
class Rules:
    """One merchant's rules, as the stage applies them."""

    card: Velocity
    customer: Velocity
    amount_ceiling: int | None
    blocked_countries: frozenset[str]
    blocked_bins: frozenset[str]
    outcomes: Mapping[str, str]

    @classmethod
    def of(cls, row: Mapping[str, object]) -> "Rules":
        """From a merchant's ``MERCHANT_FIELDS`` (a model or a values() row)."""
        get = row.__getitem__ if isinstance(row, Mapping) else partial(getattr, row)
        default_window = settings.SURGE_RISK_VELOCITY_WINDOW_SECONDS
        return cls(
            card=Velocity(
                get("risk_card_velocity_count"),
                get("risk_card_velocity_amount"),
                get("risk_card_velocity_window") or default_window,
            ),
            customer=Velocity(
                get("risk_customer_velocity_count"),
                get("risk_customer_velocity_amount"),
                get("risk_customer_velocity_window") or default_window,
            ),
            amount_ceiling=get("risk_amount_ceiling"),
            blocked_countries=frozenset(get("risk_blocked_countries") or ()),
            blocked_bins=frozenset(get("risk_blocked_bins") or ()),
            # Only what the service would have accepted: a value written
            # around it must not stop the stage.
            outcomes={
                **DEFAULT_OUTCOMES,
                **{
                    rule: outcome
                    for rule, outcome in (get("risk_outcomes") or {}).items()
                    if rule in DEFAULT_OUTCOMES
                    and outcome in (Outcome.REVIEW, Outcome.BLOCK)
                },
            },
        )

    @property
    def any_on(self) -> bool:
        return bool(
            self.card.on
            or self.customer.on
            or self.amount_ceiling is not None
            or self.blocked_countries
            or self.blocked_bins
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    rule: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"outcome": self.outcome, "rule": self.rule}


ALLOW = Verdict(Outcome.ALLOW)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the rules look at in one payment."""

    payment_id: str
    merchant_id: str
    amount: int
    created_at: datetime | None  # read only when a velocity rule is on
    bin: str
    country: str
    fingerprint: str
    customer: str


def assess(
    candidates: Sequence[Candidate], rules: Mapping[str, Rules]
) -> dict[str, Verdict]:
    """A verdict for each candidate (payment id -> Verdict), for a whole batch.

    Run inside the transaction that records the verdicts: the velocity entries
    it writes, and the per-merchant lock it takes, commit with them.
    """
    fired: dict[str, list[str]] = {}
    velocity: list[tuple[Candidate, str, str, Velocity]] = []
    for c in candidates:
        r = rules[c.merchant_id]
        if not r.any_on:
            continue
        hits = fired.setdefault(c.payment_id, [])
        if c.bin and c.bin in r.blocked_bins:
            hits.append(Rule.BLOCKED_BIN)
        if c.country and c.country in r.blocked_countries:
            hits.append(Rule.BLOCKED_COUNTRY)
        if r.amount_ceiling is not None and c.amount > r.amount_ceiling:
            hits.append(Rule.AMOUNT_CEILING)
        if r.card.on and c.fingerprint:
            velocity.append((c, "card", c.fingerprint, r.card))
        if r.customer.on and c.customer:
            velocity.append((c, "customer", c.customer, r.customer))
    if velocity:
        counts = sql.velocity_assess(
            [
                sql.VelocityItem(
                    payment_id=c.payment_id,
                    merchant_id=c.merchant_id,
                    kind=kind,
                    key=key,
                    amount=c.amount,
                    created_at=c.created_at,
                    window=v.window,
                    cap=v.count if v.amount is None else None,
                )
                for c, kind, key, v in velocity
            ]
        )
        for c, kind, _, v in velocity:
            before, total = counts[(c.payment_id, kind)]
            if (v.count is not None and before + 1 > v.count) or (
                v.amount is not None and total > v.amount
            ):
                fired[c.payment_id].append(
                    Rule.CARD_VELOCITY if kind == "card" else Rule.CUSTOMER_VELOCITY
                )
    verdicts: dict[str, Verdict] = {}
    for c in candidates:
        hits = fired.get(c.payment_id)
        if not hits:
            verdicts[c.payment_id] = ALLOW
            continue
        outcomes = rules[c.merchant_id].outcomes
        worst = max(hits, key=lambda rule: _SEVERITY[outcomes[rule]])
        first = next(
            rule for rule in Rule if rule in hits and outcomes[rule] == outcomes[worst]
        )
        verdicts[c.payment_id] = Verdict(outcomes[first], first)
    return verdicts


# --- configuration ----------------------------------------------------------------


def _positive(field: str, value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise InvalidRequest(
            f"The {_POSITIVE[field]} must be a positive integer.", param=field
        )
    if field.endswith("_window") and value > settings.SURGE_RISK_MAX_WINDOW_SECONDS:
        raise InvalidRequest(
            f"The {_POSITIVE[field]} is at most "
            f"{settings.SURGE_RISK_MAX_WINDOW_SECONDS} seconds.",
            param=field,
        )
    return value


def normalize_countries(values: Iterable[object]) -> list[str]:
    """ISO 3166-1 alpha-2 codes, upper case, sorted, each once."""
    out = set()
    for value in values:
        code = value.strip().upper() if isinstance(value, str) else ""
        if not _COUNTRY.fullmatch(code):
            raise InvalidRequest(
                "A blocked country must be a two-letter ISO 3166-1 code, e.g. 'GB'.",
                param="risk_blocked_countries",
            )
        out.add(code)
    return _bounded(sorted(out), "risk_blocked_countries")


def normalize_bins(values: Iterable[object]) -> list[str]:
    """Six-digit BINs, sorted, each once."""
    out = set()
    for value in values:
        text = value.strip() if isinstance(value, str) else ""
        if not _BIN.fullmatch(text):
            raise InvalidRequest(
                "A blocked BIN must be the first six digits of a card, e.g. '400000'.",
                param="risk_blocked_bins",
            )
        out.add(text)
    return _bounded(sorted(out), "risk_blocked_bins")


def _bounded(values: list[str], param: str) -> list[str]:
    if len(values) > MAX_LIST:
        raise InvalidRequest(f"At most {MAX_LIST} entries.", param=param)
    return values


def normalize_outcomes(values: Mapping[object, object]) -> dict[str, str]:
    """Per-rule outcome overrides: a rule name -> ``review`` or ``block``."""
    out = {}
    for rule, outcome in values.items():
        if rule not in Rule.__members__.values():
            raise InvalidRequest(
                f"Unknown risk rule {str(rule)[:40]!r}; one of {', '.join(Rule)}.",
                param="risk_outcomes",
            )
        if outcome not in (Outcome.REVIEW, Outcome.BLOCK):
            raise InvalidRequest(
                f"The outcome of {rule} must be 'review' or 'block'.",
                param="risk_outcomes",
            )
        out[str(rule)] = str(outcome)
    return out


def risk_rules_clean(changes: Mapping[str, object]) -> dict[str, object]:
    """Validate and normalize changes to a merchant's rules (field -> value;
    None clears a threshold); raise InvalidRequest naming the field."""
    cleaned: dict[str, object] = {}
    for field, value in changes.items():
        if field in _POSITIVE:
            cleaned[field] = _positive(field, value)
        elif field == "risk_blocked_countries":
            cleaned[field] = normalize_countries(value or [])
        elif field == "risk_blocked_bins":
            cleaned[field] = normalize_bins(value or [])
        elif field == "risk_outcomes":
            value = value or {}
            if not isinstance(value, Mapping):
                raise InvalidRequest("Outcomes must be a mapping.", param=field)
            cleaned[field] = normalize_outcomes(value)
        else:
            raise InvalidRequest(f"{field} is not a risk rule.", param=field)
    return cleaned


def merchant_risk_update(
    *, merchant: Merchant, changes: Mapping[str, object]
) -> Merchant:
    """Change a merchant's rules: all of ``changes`` or (on bad input) nothing.
    The next batch the enrich stage runs applies them."""
    cleaned = risk_rules_clean(changes)
    with transaction.atomic():
        Merchant.objects.filter(pk=merchant.pk).update(**cleaned)
    merchant.refresh_from_db()
    return merchant


def risk_rules_describe(merchant: Merchant) -> list[tuple[str, str]]:
    """(rule, setting and outcome) for people (the command, the admin)."""
    r = Rules.of(merchant)
    lines = []
    for rule, velocity in (
        (Rule.CARD_VELOCITY, r.card),
        (Rule.CUSTOMER_VELOCITY, r.customer),
    ):
        if velocity.on:
            limits = []
            if velocity.count is not None:
                limits.append(f"{velocity.count} payments")
            if velocity.amount is not None:
                limits.append(f"amount {velocity.amount}")
            lines.append((rule, f"{' or '.join(limits)} per {velocity.window} s"))
        else:
            lines.append((rule, "off"))
    lines.append(
        (
            Rule.AMOUNT_CEILING,
            "off" if r.amount_ceiling is None else str(r.amount_ceiling),
        )
    )
    lines.append(
        (Rule.BLOCKED_COUNTRY, ", ".join(sorted(r.blocked_countries)) or "off")
    )
    lines.append((Rule.BLOCKED_BIN, ", ".join(sorted(r.blocked_bins)) or "off"))
    return [
        (rule, f"{setting} -> {r.outcomes[rule]}" if setting != "off" else setting)
        for rule, setting in lines
    ]


def risk_velocity_purge(*, limit: int = 10_000) -> int:
    """Forget velocity entries older than the longest window a merchant may
    set (beat, hourly); returns how many went."""
    before = timezone.now() - timedelta(seconds=settings.SURGE_RISK_MAX_WINDOW_SECONDS)
    return sql.velocity_purge(before=before, limit=limit)
