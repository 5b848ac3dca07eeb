"""``manage.py reconcile [--since ISO] [--report out.json]``: exit 0 when the
ledger, payments and gateway records agree, 1 with the list of breaks."""

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from payments.services.reconciliation import open_review_items, reconcile


def parse_since(value: str) -> dt.datetime:
    try:  # well formed but impossible (month 13) raises ValueError
        parsed = parse_datetime(value)
        day = parse_date(value) if parsed is None else None
    except ValueError:
        parsed = day = None
    if parsed is None:
        if day is None:
            raise CommandError(f"--since: not an ISO date or datetime: {value!r}")
        parsed = dt.datetime.combine(day, dt.time.min)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.UTC)
    return parsed


class Command(BaseCommand):
    help = "Check the ledger against itself, settled payments and gateway records."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="only payments created at/after (ISO)")
        parser.add_argument("--report", help="write the full report as JSON here")
        parser.add_argument(
            "--no-review-items",
            action="store_true",
            help="do not open a dead letter per break",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        since = parse_since(options["since"]) if options["since"] else None
        report = reconcile(since=since, progress=not options["no_progress"])
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if options["report"]:
            with open(options["report"], "w") as fh:
                json.dump(report.as_dict(), fh, indent=2)
        checked = ", ".join(f"{k}={v}" for k, v in sorted(report.checked.items()))
        if report.ok:
            self.stdout.write(self.style.SUCCESS(f"reconcile: clean ({checked})"))
            return
        for b in report.breaks:
            self.stdout.write(f"BREAK {b.kind}: {b.message}")
        if not options["no_review_items"]:
            open_review_items(report)
        raise CommandError(f"reconcile: {len(report.breaks)} break(s) ({checked})")
