"""Gateway settings: Django setting, else environment variable, else default.

Each value is read once per process and kept: the charge path asks several
times per charge, and reading Django's settings and the environment each time
is a cost no charge needs to pay. A changed setting (``override_settings``)
clears the cache; ``gateways.services.reset()`` clears it and rebuilds
clients and breakers.
"""

import os

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, object] = {
    # name=url pairs; every name is a simulator-protocol gateway.
    "GATEWAY_SIMULATOR_URLS": "simulator=http://127.0.0.1:8900",
    "GATEWAY_CONNECT_TIMEOUT": 1.0,  # seconds
    "GATEWAY_READ_TIMEOUT": 5.0,  # seconds; past it the outcome is unknown
    "GATEWAY_BREAKER_FAIL_MAX": 5,  # consecutive failures that open the breaker
    "GATEWAY_BREAKER_RESET_SECONDS": 30.0,
    "GATEWAY_BREAKER_SUCCESS_THRESHOLD": 1,
    "GATEWAY_RETRY_TRIES": 3,  # attempts per gateway for retryable-safe errors
    "GATEWAY_RETRY_BASE_MS": 50,
    "GATEWAY_RETRY_CAP_MS": 1000,
    "GATEWAY_INQUIRY_TRIES": 3,  # status inquiries after an unknown outcome
    "GATEWAY_BULKHEAD_SIZE": 64,  # concurrent calls per gateway per process
    "GATEWAY_BULKHEAD_WAIT_SECONDS": 30.0,
    "GATEWAY_POOL_WORKERS": 128,  # threads charge_many uses per process
    "STRIPE_API_KEY": "",
    "STRIPE_API_BASE": "https://api.stripe.com",
}


_cache: dict[str, object] = {}


def get(name: str):
    """Return the setting ``name`` coerced to its default's type."""
    try:
        return _cache[name]
    except KeyError:
        value = _cache[name] = _read(name)
        return value


def clear() -> None:
    _cache.clear()


def _on_setting_changed(*, setting: str, **kwargs) -> None:
    if setting in DEFAULTS:
        clear()


setting_changed.connect(_on_setting_changed)


def _read(name: str):
    default = DEFAULTS[name]
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    if value is None or value == "":
        return default
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def simulator_urls() -> dict[str, str]:
    """``{"simulator": "http://127.0.0.1:8900", ...}`` from GATEWAY_SIMULATOR_URLS."""
    raw = get("GATEWAY_SIMULATOR_URLS")
    if isinstance(raw, dict):
        return {str(k): str(v).rstrip("/") for k, v in raw.items()}
    urls = {}
    for pair in str(raw).split(","):
        if pair.strip():
            name, _, url = pair.partition("=")
            urls[name.strip()] = url.strip().rstrip("/")
    return urls
