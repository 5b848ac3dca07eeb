"""The baseline endpoint ships with the bench, not with the product."""

import pytest
from django.urls import Resolver404, resolve

import bench.settings
from bench.__main__ import STACK_ENV, Stack, parser
from bench.baseline import BaselineInsertView


def test_bench_urls_add_the_baseline_to_every_product_route():
    match = resolve("/bench/baseline", urlconf="bench.urls")
    assert match.func.view_class is BaselineInsertView
    assert resolve("/v1/payments", urlconf="bench.urls").func == (
        resolve("/v1/payments", urlconf="config.urls").func
    )


def test_the_product_has_no_baseline_route():
    with pytest.raises(Resolver404):
        resolve("/bench/baseline", urlconf="config.urls")


def test_the_stack_runs_on_the_bench_settings(monkeypatch):
    monkeypatch.setattr("os.environ", {"DJANGO_SETTINGS_MODULE": "config.settings"})
    assert (
        Stack(parser().parse_args([])).env["DJANGO_SETTINGS_MODULE"] == "bench.settings"
    )
    assert "DJANGO_SETTINGS_MODULE" in STACK_ENV
    assert bench.settings.ROOT_URLCONF == "bench.urls"
