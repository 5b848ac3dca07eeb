"""Gateway settings are cached per process, and a changed setting is seen."""

from gateways import conf


def test_a_changed_setting_clears_the_cache(settings):
    settings.GATEWAY_RETRY_TRIES = 7
    assert conf.get("GATEWAY_RETRY_TRIES") == 7
    settings.GATEWAY_RETRY_TRIES = "9"  # coerced to the default's type
    assert conf.get("GATEWAY_RETRY_TRIES") == 9


def test_environment_then_default(settings, monkeypatch):
    del settings.GATEWAY_POOL_WORKERS  # not a Django setting: the environment
    monkeypatch.setenv("GATEWAY_POOL_WORKERS", "12")
    conf.clear()
    assert conf.get("GATEWAY_POOL_WORKERS") == 12
    monkeypatch.delenv("GATEWAY_POOL_WORKERS")
    conf.clear()
    assert conf.get("GATEWAY_POOL_WORKERS") == conf.DEFAULTS["GATEWAY_POOL_WORKERS"]


def test_other_settings_keep_the_cache(settings):
    settings.GATEWAY_BULKHEAD_SIZE = 5
    assert conf.get("GATEWAY_BULKHEAD_SIZE") == 5
    conf._cache["GATEWAY_BULKHEAD_SIZE"] = 6  # what a cached read looks like
    settings.SURGE_TASK_BATCH_SIZE = 17  # unrelated: the cache stays
    assert conf.get("GATEWAY_BULKHEAD_SIZE") == 6
