from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health
from payments.api.metrics_view import metrics

urlpatterns = [
    path("v1/", include("payments.api.urls")),
    path("v1/", include("vault.api.urls")),
    path("v1/", include("ledger.api.urls")),
    path(
        "v1/schema",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="schema",
    ),
    path(
        "v1/docs",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[]
        ),
        name="docs",
    ),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]

# The API's paths answer with the error object even where no view does.
handler400 = "core.api.bad_request"
handler404 = "core.api.not_found"
handler500 = "core.api.server_error"
