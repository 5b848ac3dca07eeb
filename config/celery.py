import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
