from django.conf import settings
from django.core.management.base import BaseCommand

from payments.models import Merchant
from payments.services.keys import api_key_authenticate, merchant_create

DEMO_NAME = "Demo Merchant"


class Command(BaseCommand):
    help = (
        "Development only: ensure a demo merchant exists and print its key and the URL."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000")

    def handle(self, *args, port, **opts):
        if settings.PRODUCTION:
            self.stderr.write(
                "bootstrap_demo is for development; skipped in production."
            )
            return
        key_file = settings.VAR_DIR / "demo_secret_key"
        secret = key_file.read_text().strip() if key_file.exists() else ""
        merchant = api_key_authenticate(secret) if secret else None
        if merchant is None:
            Merchant.objects.filter(name=DEMO_NAME).update(
                status=Merchant.Status.DISABLED
            )
            merchant, secret = merchant_create(name=DEMO_NAME)
            key_file.touch(mode=0o600)
            key_file.write_text(secret)
        line = "=" * 72
        self.stdout.write(line)
        self.stdout.write(f"Surge is starting at http://127.0.0.1:{port}/v1/docs")
        self.stdout.write(f"Demo merchant {merchant.id}")
        self.stdout.write(f"  export SURGE_KEY={secret}")
        self.stdout.write(line)
