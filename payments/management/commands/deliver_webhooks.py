import signal
import threading

from django.core.management.base import BaseCommand

from payments.services.webhooks import run_once


class Command(BaseCommand):
    help = "Dispatch new events to webhook endpoints and post due deliveries."

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop", action="store_true", help="keep running until SIGINT/SIGTERM"
        )
        parser.add_argument("--interval", type=float, default=1.0)

    def handle(self, *args, loop, interval, **opts):
        if interval <= 0:
            self.stderr.write("--interval must be positive.")
            raise SystemExit(2)
        stop = threading.Event()
        if loop:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
        while True:
            result = run_once()
            if any(result.values()) or not loop:
                self.stdout.write(
                    " ".join(f"{k}={v}" for k, v in sorted(result.items()))
                    or "nothing to do"
                )
            if not loop or stop.wait(interval):
                return
