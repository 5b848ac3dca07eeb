"""Retry timing: exponential backoff with full jitter, bounded."""

import random

from gateways import conf


def backoff_seconds(
    attempt: int,
    *,
    base_ms: int | None = None,
    cap_ms: int | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry ``attempt`` (0-based): uniform(0, min(cap, base * 2**n)).

    Full jitter spreads a burst of synchronized retries (AWS architecture blog,
    "Exponential Backoff And Jitter").
    """
    base = conf.get("GATEWAY_RETRY_BASE_MS") if base_ms is None else base_ms
    cap = conf.get("GATEWAY_RETRY_CAP_MS") if cap_ms is None else cap_ms
    ceiling = min(cap, base * 2 ** min(attempt, 32))
    return (rng or random).uniform(0, ceiling) / 1000
