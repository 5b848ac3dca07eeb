from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Card vault"

    def ready(self) -> None:
        from vault import crypto  # noqa: F401  (connects the keyring reset signal)
        from vault.logging import install_record_factory

        install_record_factory()
