"""``manage.py archive --before YYYY-MM [--dry-run] [--dir PATH]``: write each
month older than YYYY-MM of the events and webhook deliveries to gzip'd CSV
files, verify their row counts, then detach and drop its partitions. Stops at
the first month that must stay (and says why); exit 1 then, 2 on bad input."""

from django.core.management.base import BaseCommand, CommandError

from payments.services.archive import ArchiveError, archive_months
from payments.services.partitions import Month


class Command(BaseCommand):
    help = "Archive old months of events and webhook deliveries, then drop them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--before", required=True, help="archive the months before this YYYY-MM"
        )
        parser.add_argument(
            "--dir", help="where the files go (default SURGE_ARCHIVE_DIR)"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check and count; change nothing"
        )

    def handle(self, *args, **options):
        try:
            before = Month.parse(options["before"])
        except ValueError as exc:
            raise CommandError(f"--before: {exc}", returncode=2) from None
        dry = options["dry_run"]

        def report(outcome):
            if outcome.refused:
                reasons = "; ".join(outcome.refused)
                self.stdout.write(f"{outcome.month}: stays: {reasons}")
                return
            rows = ", ".join(f"{name} {n} rows" for name, n in outcome.rows.items())
            if dry:
                self.stdout.write(f"{outcome.month}: would archive {rows}")
            else:
                files = ", ".join(str(f) for f in outcome.files)
                self.stdout.write(f"{outcome.month}: archived {rows} to {files}")

        try:
            done = archive_months(
                before=before, directory=options["dir"], dry_run=dry, report=report
            )
        except ArchiveError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if not done:
            self.stdout.write(f"archive: no partition older than {before}")
        refused = [o for o in done if o.refused]
        if refused:
            raise CommandError(
                f"archive: {refused[0].month} must stay; it and later months were "
                "not archived"
            )
