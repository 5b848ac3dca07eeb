from django.urls import path

from payments.api import views, webhooks

urlpatterns = [
    path("payments", views.PaymentListCreateView.as_view(), name="payments"),
    path("payments/<id:payment_id>", views.PaymentDetailView.as_view(), name="payment"),
    path("payments/<id:payment_id>/refunds", views.PaymentRefundsView.as_view()),
    path("refunds/<id:refund_id>", views.RefundDetailView.as_view(), name="refund"),
    path("payment_batches", views.PaymentBatchCreateView.as_view()),
    path("payment_batches/<id:batch_id>", views.PaymentBatchDetailView.as_view()),
    path("webhook_endpoints", webhooks.WebhookEndpointListCreateView.as_view()),
    path(
        "webhook_endpoints/<id:endpoint_id>",
        webhooks.WebhookEndpointDetailView.as_view(),
    ),
    path(
        "webhook_endpoints/<id:endpoint_id>/deliveries",
        webhooks.WebhookDeliveryListView.as_view(),
    ),
    path(
        "webhook_endpoints/<id:endpoint_id>/rotate_secret",
        webhooks.WebhookEndpointRotateSecretView.as_view(),
    ),
    path(
        "webhook_endpoints/<id:endpoint_id>/resend",
        webhooks.WebhookEndpointResendView.as_view(),
    ),
    path("events", webhooks.EventListView.as_view()),
    path("events/<id:event_id>", webhooks.EventDetailView.as_view()),
]
