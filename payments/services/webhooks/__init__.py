"""Webhooks to merchants: outbox events -> deliveries -> signed POSTs.

Nothing here runs on the payment hot path. Three rooms:

- ``endpoints``: create, update, rotate secrets, disable and re-enable
  endpoints, resend events, retry failed deliveries;
- ``dispatch``: events -> one delivery per (endpoint, event), behind the
  commit horizon;
- ``delivery``: claim due deliveries, POST them signed, back off, record,
  disable endpoints that keep failing;
- ``egress``: the SSRF guard (which addresses a delivery may go to).

``run_once`` (the beat task) does dispatch then delivery. The public names are
re-exported here, except the ``dispatch`` function: ``webhooks.dispatch`` is
the module, so call ``webhooks.dispatch.dispatch()``.
"""

from payments.services.webhooks import dispatch, egress
from payments.services.webhooks.delivery import (
    DEAD_LETTER_STAGE,
    RESPONSE_BODY_LIMIT,
    USER_AGENT,
    backoff,
    deliver_due,
)
from payments.services.webhooks.dispatch import (
    event_payloads,
    events_render,
    horizon_ms,
    id_at,
    now_ms,
)
from payments.services.webhooks.endpoints import (
    EVENT_TYPES,
    MAX_DESCRIPTION_LENGTH,
    MAX_ROTATION_OVERLAP_SECONDS,
    MAX_URL_LENGTH,
    RESEND_MAX_EVENTS,
    ROTATION_OVERLAP_SECONDS,
    clean_enabled_events,
    clean_url,
    new_secret,
    signing_secrets,
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_disable,
    webhook_endpoint_enable,
    webhook_endpoint_resend,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_endpoints_disable_failing,
)

__all__ = [
    "DEAD_LETTER_STAGE",
    "EVENT_TYPES",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ROTATION_OVERLAP_SECONDS",
    "MAX_URL_LENGTH",
    "RESEND_MAX_EVENTS",
    "RESPONSE_BODY_LIMIT",
    "ROTATION_OVERLAP_SECONDS",
    "USER_AGENT",
    "backoff",
    "clean_enabled_events",
    "clean_url",
    "deliver_due",
    "dispatch",
    "egress",
    "event_payloads",
    "events_render",
    "horizon_ms",
    "id_at",
    "new_secret",
    "now_ms",
    "run_once",
    "signing_secrets",
    "webhook_delivery_retry",
    "webhook_endpoint_create",
    "webhook_endpoint_disable",
    "webhook_endpoint_enable",
    "webhook_endpoint_resend",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_update",
    "webhook_endpoints_disable_failing",
]


def run_once() -> dict[str, int]:
    """Dispatch new events, then deliver what is due (the beat task)."""
    result = dispatch.dispatch()
    result.update(deliver_due())
    return result
