"""``manage.py partitions [--ahead N]``: create the monthly partitions of the
events and webhook deliveries for this month and N after it (beat runs it
daily); idempotent."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.services.partitions import partitions_ensure


class Command(BaseCommand):
    help = "Create the events' and webhook deliveries' monthly partitions ahead."

    def add_arguments(self, parser):
        parser.add_argument(
            "--ahead",
            type=int,
            default=settings.SURGE_PARTITION_MONTHS_AHEAD,
            help="months after the current one (default SURGE_PARTITION_MONTHS_AHEAD)",
        )

    def handle(self, *args, **options):
        if options["ahead"] < 0:
            raise CommandError("--ahead must be 0 or more", returncode=2)
        result = partitions_ensure(ahead=options["ahead"])
        for name in result.created:
            self.stdout.write(f"created {name}")
        if result.moved_from_default:
            self.stdout.write(
                f"moved {result.moved_from_default} rows from a default partition "
                "into their months"
            )
        for table, rows in result.left_in_default.items():
            self.stderr.write(
                self.style.WARNING(
                    f"{table}_default holds {rows} rows outside every month "
                    "partition (see docs/operations.md#retention)"
                )
            )
        if not result.created:
            self.stdout.write("partitions: nothing to create")
