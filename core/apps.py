import logging

from django.apps import AppConfig
from django.conf import settings

from core.pan import install_record_factory


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Surge core"

    def ready(self) -> None:
        # deferred: registrations run in AppConfig.ready (Django's rule: apps.py
        # is imported while the app registry is still loading).
        from core import converters, lookups  # noqa: F401 (lookups registers)

        converters.register()  # <id:...> in the URLconfs, imported after this

        install_record_factory()
        if settings.PRODUCTION:
            # A failing handler would otherwise print the raw exception chain,
            # which may hold a card number, straight to stderr (handleError).
            logging.raiseExceptions = False
