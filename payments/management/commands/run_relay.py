import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from core import tracing
from core.metrics_server import serve_metrics
from payments.services.relay import StageBacklog, run_relay


class Command(BaseCommand):
    help = "Publish outbox events to Celery (LISTEN/NOTIFY on PostgreSQL, else polls)."

    def add_arguments(self, parser):
        parser.add_argument("--poll-seconds", type=float, default=0.5)
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--linger-ms", type=int, default=50,
            help="wait after a wake-up so single payments leave in batches",
        )  # fmt: skip
        parser.add_argument(
            "--hold-ms", type=int, default=500,
            help="while stage messages wait for a worker, or payments stream in "
            "faster than a task batch per hold, hold up to this long so batches "
            "grow under load (0: never hold)",
        )  # fmt: skip

    def handle(self, *args, poll_seconds, batch_size, linger_ms, hold_ms, **opts):
        if poll_seconds <= 0 or batch_size <= 0 or linger_ms < 0 or hold_ms < 0:
            self.stderr.write(
                "--poll-seconds and --batch-size must be positive, "
                "--linger-ms and --hold-ms >= 0."
            )
            raise SystemExit(2)
        tracing.configure()  # only if the OTEL_* variables ask for it
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        # Its own scrape target where it has its own metrics folder (compose).
        serve_metrics(settings.SURGE_METRICS_PORT, settings.SURGE_METRICS_ADDR)
        self.stdout.write(f"relay running (poll {poll_seconds}s, batch {batch_size})")
        run_relay(
            stop=stop,
            poll_seconds=poll_seconds,
            batch_size=batch_size,
            linger_seconds=linger_ms / 1000,
            hold_seconds=hold_ms / 1000,
            backlog=StageBacklog() if hold_ms else None,
        )
        self.stdout.write("relay stopped")
