from django.core.management.base import BaseCommand, CommandError

from core.errors import SurgeError
from payments.management.commands._risk_options import add_risk_arguments, risk_changes
from payments.models import Merchant
from payments.services.operations import merchant_risk_change
from payments.services.risk import risk_rules_describe


class Command(BaseCommand):
    help = (
        "Show or change a merchant's risk rules, e.g. merchant_risk mer_... "
        "--card-velocity 5 --amount-ceiling 100000 --block-country XX "
        "--block-bin 400000 --outcome amount_ceiling=block. With no option, "
        "show them. Bad input changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("merchant_id")
        add_risk_arguments(parser, editing=True)

    def handle(self, *args, merchant_id, **opts):
        merchant = Merchant.objects.filter(pk=merchant_id).first()
        if merchant is None:
            raise CommandError(f"No merchant {merchant_id[:40]!r}.")
        changes = risk_changes(opts, merchant)
        if changes:
            try:
                merchant = merchant_risk_change(
                    merchant=merchant, changes=changes, actor="manage.py merchant_risk"
                )
            except SurgeError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(f"Risk rules of {merchant.id} changed:")
        else:
            self.stdout.write(f"Risk rules of {merchant.id}:")
        for rule, setting in risk_rules_describe(merchant):
            self.stdout.write(f"  {rule}: {setting}")
