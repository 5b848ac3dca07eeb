"""The product's routes plus ``bench/baseline`` (the bare-INSERT endpoint)."""

from django.urls import path

from bench.baseline import BaselineInsertView
from config.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    *product_urlpatterns,
    path("bench/baseline", BaselineInsertView.as_view()),
]
