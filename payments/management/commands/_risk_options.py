"""The risk-rule options ``create_merchant`` and ``merchant_risk`` share."""

from django.core.management.base import CommandError

from payments.services.risk import Rule

# flag -> (model field, help). A value is a positive integer, or ``off``
# (a window: ``default``, the platform's) to clear it.
THRESHOLDS = {
    "--card-velocity": (
        "risk_card_velocity_count",
        "at most N payments per card fingerprint per window",
    ),
    "--card-velocity-amount": (
        "risk_card_velocity_amount",
        "at most this amount (minor units) per card per window",
    ),
    "--card-velocity-window": (
        "risk_card_velocity_window",
        "the card velocity window in seconds",
    ),
    "--customer-velocity": (
        "risk_customer_velocity_count",
        "at most N payments per customer reference per window",
    ),
    "--customer-velocity-amount": (
        "risk_customer_velocity_amount",
        "at most this amount (minor units) per customer per window",
    ),
    "--customer-velocity-window": (
        "risk_customer_velocity_window",
        "the customer velocity window in seconds",
    ),
    "--amount-ceiling": (
        "risk_amount_ceiling",
        "payments over this amount (minor units) are caught",
    ),
}


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def add_risk_arguments(parser, *, editing: bool) -> None:
    for flag, (_, what) in THRESHOLDS.items():
        parser.add_argument(flag, default=None, metavar="N", help=f"{what} (or off)")
    parser.add_argument(
        "--block-country", action="append", default=[], metavar="XX",
        help="block cards from this ISO country (repeat for more)",
    )  # fmt: skip
    parser.add_argument(
        "--block-bin", action="append", default=[], metavar="NNNNNN",
        help="block cards with this BIN, the first six digits (repeat for more)",
    )  # fmt: skip
    parser.add_argument(
        "--outcome", action="append", default=[], metavar="RULE=OUTCOME",
        help=f"review or block (or default) for a rule: {', '.join(Rule)}",
    )  # fmt: skip
    if editing:
        parser.add_argument(
            "--unblock-country", action="append", default=[], metavar="XX"
        )
        parser.add_argument(
            "--unblock-bin", action="append", default=[], metavar="NNNNNN"
        )


def _threshold(flag: str, value: str) -> int | None:
    text = value.strip().lower()
    if text in ("off", "default"):
        return None
    try:
        return int(text)
    except ValueError:
        raise CommandError(
            f"{flag} must be a positive integer or 'off', not {value[:20]!r}."
        ) from None


def risk_changes(opts: dict, merchant=None) -> dict:
    """The field changes the options ask for (to be validated by the service),
    applied to ``merchant``'s current lists when editing."""
    changes: dict = {}
    for flag, (field, _) in THRESHOLDS.items():
        value = opts.get(_dest(flag))
        if value is not None:
            changes[field] = _threshold(flag, value)
    countries = list(merchant.risk_blocked_countries) if merchant else []
    bins = list(merchant.risk_blocked_bins) if merchant else []
    add_c, drop_c = opts.get("block_country") or [], opts.get("unblock_country") or []
    add_b, drop_b = opts.get("block_bin") or [], opts.get("unblock_bin") or []
    if add_c or drop_c:
        drop = {c.strip().upper() for c in drop_c if isinstance(c, str)}
        changes["risk_blocked_countries"] = [
            c for c in countries + add_c if c.strip().upper() not in drop
        ]
    if add_b or drop_b:
        drop = {b.strip() for b in drop_b}
        changes["risk_blocked_bins"] = [
            b for b in bins + add_b if b.strip() not in drop
        ]
    if opts.get("outcome"):
        outcomes = dict(merchant.risk_outcomes) if merchant else {}
        for item in opts["outcome"]:
            rule, sep, outcome = item.partition("=")
            if not sep:
                raise CommandError(f"--outcome takes RULE=OUTCOME, not {item[:40]!r}.")
            rule, outcome = rule.strip(), outcome.strip().lower()
            if outcome == "default":
                outcomes.pop(rule, None)
            else:
                outcomes[rule] = outcome
        changes["risk_outcomes"] = outcomes
    return changes
