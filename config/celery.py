import gc
import os

from celery import Celery, signals

from core import fsbroker, tracing
from core.memory import HeapTrimmer
from core.metrics_server import close_inherited, serve_metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
fsbroker.register()  # make run's broker: whole messages only

app = Celery("surge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_unusable_db_connections(**kwargs) -> None:
    """What Django does around each request: drop a connection that broke or
    outlived CONN_MAX_AGE, keep the others (see CELERY_DB_REUSE_MAX)."""
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_init.connect  # before the pool forks: children inherit it
@signals.beat_init.connect
def _trace_if_asked(**kwargs) -> None:
    """OpenTelemetry when the OTEL_* variables ask for it (core/tracing.py)."""
    tracing.configure()


@signals.worker_process_init.connect
@signals.worker_ready.connect
def _freeze_what_was_loaded(**kwargs) -> None:
    """Move everything loaded so far (Django, the apps, their modules) out of
    the collector's reach: it lives as long as the process, and a full
    collection scanned all of it every time, for nothing.
    ``worker_process_init`` runs in each prefork child, ``worker_ready`` in the
    main process (the threads and solo pools)."""
    gc.freeze()


_trimmer = None


@signals.task_received.connect  # the consumer, in the worker's main process
@signals.task_postrun.connect  # the process (or thread) that ran the task
def _give_freed_heap_back(**kwargs) -> None:
    """RSS that follows what the process holds, not its high-water marks
    (``core.memory``); SURGE_MALLOC_TRIM_SECONDS apart at most."""
    global _trimmer
    if _trimmer is None:
        from django.conf import settings

        _trimmer = HeapTrimmer(settings.SURGE_MALLOC_TRIM_SECONDS)
    _trimmer.maybe_trim()


@signals.worker_init.connect  # the worker's main process, before the pool forks
@signals.beat_init.connect
def _serve_metrics(**kwargs) -> None:
    """This process's scrape target when SURGE_METRICS_PORT is set: under
    prefork, the parent serves the files its children write."""
    from django.conf import settings

    serve_metrics(settings.SURGE_METRICS_PORT, settings.SURGE_METRICS_ADDR)


@signals.worker_process_init.connect
def _close_inherited_metrics_socket(**kwargs) -> None:
    close_inherited()
