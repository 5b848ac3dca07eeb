from django.urls import path

from vault.api import views

urlpatterns = [
    path("tokens", views.TokenCreateView.as_view(), name="tokens"),
    path("tokens/<id:token_id>", views.TokenDetailView.as_view(), name="token"),
]
