from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Card vault"

    def ready(self) -> None:
        # deferred: signal receivers connect in AppConfig.ready (Django's rule:
        # apps.py is imported while the app registry is still loading).
        from vault import crypto  # noqa: F401  (connects the keyring reset signal)
