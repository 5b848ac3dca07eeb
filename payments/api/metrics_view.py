import prometheus_client
from django.http import HttpResponse
from prometheus_client import multiprocess

from payments.collectors import SurgeCollector


def metrics(request):
    """Counters of every process writing to this PROMETHEUS_MULTIPROC_DIR (all
    of them under ``make run``; the web's gunicorn workers under compose, where
    the worker, relay and beat serve their own: core/metrics_server.py), plus
    the gauges read from the database and the broker, served here only."""
    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(SurgeCollector())
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
