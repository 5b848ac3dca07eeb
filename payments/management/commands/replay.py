from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from payments.models import Event
from payments.services.replay import (
    dead_letter_redrive_plan,
    dead_letters_open,
    dead_letters_replay,
    events_to_replay,
    replay_events,
)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"--{name} must be an ISO 8601 time with a zone offset.")
    return parsed


class Command(BaseCommand):
    help = (
        "Re-publish outbox events (by event, payment, type or time range), and/or "
        "re-drive every open dead letter's payment from where it stopped. Every "
        "stage is idempotent, so a replay only finishes what is unfinished."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--event", action="append", default=[], help="evt_... (repeatable)"
        )
        parser.add_argument(
            "--payment", action="append", default=[], help="pay_... (repeatable)"
        )
        parser.add_argument(
            "--type", action="append", default=[], help="e.g. payment.created"
        )
        parser.add_argument("--since", help="ISO 8601, e.g. 2026-11-21T10:00:00Z")
        parser.add_argument("--until", help="ISO 8601")
        parser.add_argument(
            "--dead-letters",
            action="store_true",
            help="re-drive the payment (or pending refunds) of every open dead letter",
        )
        parser.add_argument("--dry-run", action="store_true")

    def handle(
        self, *args, event, payment, type, since, until, dead_letters, dry_run, **opts
    ):
        since_at, until_at = _when(since, "since"), _when(until, "until")
        selectors = event or payment or type or since_at or until_at
        if not (selectors or dead_letters):
            raise CommandError(
                "Say what to replay: --dead-letters, --event, --payment, --type, "
                "--since or --until."
            )
        if since_at and until_at and since_at > until_at:
            raise CommandError("--since is after --until.")
        if event:
            bad = sorted(e for e in set(event) if not e.startswith("evt_"))
            missing = sorted(
                set(event) - set(bad) - set(
                    Event.objects.filter(pk__in=event).values_list("pk", flat=True)
                )
            )  # fmt: skip
            if bad or missing:
                raise CommandError(f"No such event: {', '.join(bad + missing)}.")
        if selectors:
            self._events(event, payment, type, since_at, until_at, dry_run)
        if dead_letters:
            self._dead_letters(dry_run)

    def _events(self, event, payment, type, since_at, until_at, dry_run):
        ids = events_to_replay(
            event_ids=event,
            payment_ids=payment,
            types=type,
            since=since_at,
            until=until_at,
        )
        if dry_run:
            self.stdout.write(f"dry run: {len(ids)} event(s) would be re-published")
            return
        with tqdm(total=len(ids), unit="event", disable=None) as bar:
            done = replay_events(ids, progress=bar.update)
        self.stdout.write(f"re-published {done} event(s); the relay sends them now")

    def _dead_letters(self, dry_run):
        letters = dead_letters_open()
        if dry_run:
            plans = [dead_letter_redrive_plan(dl) for dl in letters]
        else:
            with tqdm(total=len(letters), unit="letter", disable=None) as bar:
                plans = dead_letters_replay(letters, progress=bar.update)
        for plan in plans:
            who = f"{plan.dead_letter_id} ({plan.payment_id or 'no payment'})"
            self.stdout.write(f"{who}: {plan.detail}")
        redriven = sum(1 for p in plans if p.step is not None)
        verb = "would be re-driven" if dry_run else "re-driven"
        self.stdout.write(
            f"{'dry run: ' if dry_run else ''}{redriven} of {len(plans)} open dead "
            f"letter(s) {verb}"
        )
