"""Test urlconf until config/urls.py includes ledger.api.urls."""

from django.urls import include, path

urlpatterns = [path("v1/", include("ledger.api.urls"))]
