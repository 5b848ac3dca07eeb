"""Gauges read from the database and Redis at scrape time (multiprocess-safe by
construction: nothing is kept in a process)."""

import logging

from celery import current_app
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from gateways.services import breaker_state, gateway_names
from payments.models import DeadLetter, Event, OpenPayment

logger = logging.getLogger(__name__)

QUEUES = ("validate", "execute", "settle", "default")


class SurgeCollector:
    def collect(self):
        try:
            oldest = Event.objects.filter(published_at__isnull=True).aggregate(
                oldest=Min("created_at"), n=Count("pk")
            )
            lag = GaugeMetricFamily(
                "surge_outbox_lag_seconds", "Age of the oldest unpublished event."
            )
            lag.add_metric(
                [],
                (timezone.now() - oldest["oldest"]).total_seconds()
                if oldest["oldest"]
                else 0,
            )
            yield lag
            backlog = GaugeMetricFamily(
                "surge_outbox_unpublished", "Unpublished outbox events."
            )
            backlog.add_metric([], oldest["n"])
            yield backlog
            open_payments = GaugeMetricFamily(
                "surge_payments_open", "Payments not yet final.", labels=["status"]
            )
            rows = (
                OpenPayment.objects.values_list("payment__status")
                .annotate(n=Count("pk"))
                .order_by()
            )
            for status, n in rows:
                open_payments.add_metric([status], n)
            yield open_payments
            dead = GaugeMetricFamily("surge_dead_letters_open", "Open dead letters.")
            dead.add_metric(
                [], DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count()
            )
            yield dead
        except Exception:  # a scrape must not fail because the DB is down
            logger.exception("database metrics unavailable")
        yield from self._queue_depth()
        yield from self._breakers()

    def _queue_depth(self):
        # The process's Celery app (config.celery's): payments does not import
        # config, the layer above it.
        depth = GaugeMetricFamily(
            "surge_queue_depth", "Messages waiting per Celery queue.", labels=["queue"]
        )
        try:
            with current_app.connection_for_read() as conn:
                channel = conn.default_channel
                for queue in QUEUES:
                    _, count, _ = channel.queue_declare(queue=queue, passive=True)
                    depth.add_metric([queue], count)
        except Exception:
            logger.debug("queue depth unavailable", exc_info=True)
        yield depth

    def _breakers(self):
        state = GaugeMetricFamily(
            "surge_gateway_breaker_open",
            "1 when the gateway's circuit breaker is open, 0.5 half-open, 0 closed.",
            labels=["gateway"],
        )
        try:
            for name in gateway_names():
                value = {"open": 1.0, "half-open": 0.5, "half_open": 0.5}.get(
                    breaker_state(name), 0.0
                )
                state.add_metric([name], value)
        except Exception:
            logger.debug("breaker state unavailable", exc_info=True)
        yield state
