import prometheus_client
from django.http import HttpResponse
from prometheus_client import multiprocess

from payments.collectors import SurgeCollector


def metrics(request):
    """Counters from every process (multiprocess dir) plus live DB gauges."""
    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(SurgeCollector())
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
