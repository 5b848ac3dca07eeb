"""Webhooks to merchants: outbox events -> deliveries -> signed POSTs.

Nothing here runs on the payment hot path. Three rooms:

- ``endpoints``: create and disable endpoints, retry failed deliveries;
- ``dispatch``: events -> one delivery per (endpoint, event), behind the
  commit horizon;
- ``delivery``: claim due deliveries, POST them signed, back off, record.

``run_once`` (the beat task) does dispatch then delivery. The public names are
re-exported here, except the ``dispatch`` function: ``webhooks.dispatch`` is
the module, so call ``webhooks.dispatch.dispatch()``.
"""

from payments.services.webhooks import dispatch
from payments.services.webhooks.delivery import (
    DEAD_LETTER_STAGE,
    USER_AGENT,
    backoff,
    deliver_due,
)
from payments.services.webhooks.dispatch import horizon_ms, id_at, now_ms
from payments.services.webhooks.endpoints import (
    EVENT_TYPES,
    MAX_URL_LENGTH,
    clean_enabled_events,
    clean_url,
    new_secret,
    webhook_delivery_retry,
    webhook_endpoint_create,
    webhook_endpoint_disable,
)

__all__ = [
    "DEAD_LETTER_STAGE",
    "EVENT_TYPES",
    "MAX_URL_LENGTH",
    "USER_AGENT",
    "backoff",
    "clean_enabled_events",
    "clean_url",
    "deliver_due",
    "dispatch",
    "horizon_ms",
    "id_at",
    "new_secret",
    "now_ms",
    "run_once",
    "webhook_delivery_retry",
    "webhook_endpoint_create",
    "webhook_endpoint_disable",
]


def run_once() -> dict[str, int]:
    """Dispatch new events, then deliver what is due (the beat task)."""
    result = dispatch.dispatch()
    result.update(deliver_due())
    return result
