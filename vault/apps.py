import logging

from django.apps import AppConfig
from django.conf import settings


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Card vault"

    def ready(self) -> None:
        from vault import crypto  # noqa: F401  (connects the keyring reset signal)
        from vault.logging import install_record_factory

        install_record_factory()
        if settings.PRODUCTION:
            # A failing handler would otherwise print the raw exception chain,
            # which may hold a card number, straight to stderr (handleError).
            logging.raiseExceptions = False
