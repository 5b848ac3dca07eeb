"""``manage.py audit_events [--since ISO]``: fold each payment's events (and
its refunds') and compare with the payments and refunds tables; print every
divergence with its event trail; exit 1 on any (2 on a bad argument)."""

from django.core.management.base import BaseCommand, CommandError

from payments.management.commands.reconcile import parse_since
from payments.services.audit import audit_events


class Command(BaseCommand):
    help = "Check that the events tell the same story as the payments and refunds."

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            help="only payments created at/after this ISO date or date-time "
            "(default: every payment whose events are still kept)",
        )

    def handle(self, *args, **options):
        try:
            since = parse_since(options["since"]) if options["since"] else None
        except CommandError as exc:
            raise CommandError(str(exc), returncode=2) from None
        report = audit_events(since=since, report=lambda d: self.stdout.write(str(d)))
        if report.ok:
            clean = f"audit_events: clean ({report.summary()})"
            self.stdout.write(self.style.SUCCESS(clean))
            return
        raise CommandError(f"audit_events: {report.summary()}")
