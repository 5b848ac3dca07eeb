from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from payments.services.replay import events_to_replay, replay_events


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--{name} must be an ISO 8601 time with a zone offset.")
    return parsed


class Command(BaseCommand):
    help = (
        "Re-publish outbox events (by payment, type or time range). Every stage "
        "is idempotent, so a replay only finishes what is unfinished."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--payment", action="append", default=[], help="pay_... (repeatable)"
        )
        parser.add_argument(
            "--type", action="append", default=[], help="e.g. payment.created"
        )
        parser.add_argument("--since", help="ISO 8601, e.g. 2026-11-21T10:00:00Z")
        parser.add_argument("--until", help="ISO 8601")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, payment, type, since, until, dry_run, **opts):
        since_at, until_at = _when(since, "since"), _when(until, "until")
        if not (payment or type or since_at or until_at):
            raise CommandError(
                "Say what to replay: --payment, --type, --since or --until."
            )
        if since_at and until_at and since_at > until_at:
            raise CommandError("--since is after --until.")
        ids = events_to_replay(
            payment_ids=payment, types=type, since=since_at, until=until_at
        )
        if dry_run:
            self.stdout.write(f"dry run: {len(ids)} event(s) would be re-published")
            return
        with tqdm(total=len(ids), unit="event", disable=None) as bar:
            done = replay_events(ids, progress=bar.update)
        self.stdout.write(f"re-published {done} event(s); the relay sends them now")
