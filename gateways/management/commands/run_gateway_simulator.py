import contextlib

import uvloop
from django.core.management.base import BaseCommand, CommandError

from gateways.simulator.server import Simulator, serve


def _latency(value: str) -> tuple[int, int]:
    lo, _, hi = value.partition("-")
    return int(lo), int(hi or lo)


class Command(BaseCommand):
    help = "Run the HTTP acquirer simulator (test cards, idempotent charges, drills)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument(
            "--latency-ms", type=_latency, default=(0, 0), help="e.g. 20-50"
        )
        parser.add_argument("--error-rate", type=float, default=0.0)
        parser.add_argument("--timeout-rate", type=float, default=0.0)
        parser.add_argument("--timeout-delay-ms", type=int, default=30_000)
        parser.add_argument("--outage", action="store_true")
        parser.add_argument("--log-file", default=None, help="JSON-lines charge log")

    def handle(self, *args, host, port, latency_ms, log_file, **opts):
        for name in ("error_rate", "timeout_rate"):
            if not 0.0 <= opts[name] <= 1.0:
                raise CommandError(f"--{name.replace('_', '-')} must be in [0, 1]")
        simulator = Simulator(
            latency_ms=latency_ms,
            error_rate=opts["error_rate"],
            timeout_rate=opts["timeout_rate"],
            timeout_delay_ms=opts["timeout_delay_ms"],
            outage=opts["outage"],
            log_file=log_file,
        )
        self.stdout.write(f"gateway simulator on http://{host}:{port}")
        # uvloop: the simulator stands in for a remote processor but shares
        # this box's cores with Surge in the bench, and libuv's loop spends
        # less CPU per charge than asyncio's.
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(host, port, simulator))
