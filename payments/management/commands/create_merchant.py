from django.core.management.base import BaseCommand, CommandError

from core.errors import SurgeError
from payments.management.commands._risk_options import add_risk_arguments, risk_changes
from payments.services.keys import merchant_create
from payments.services.risk import risk_rules_clean

# Per-merchant overrides of the platform's rate limits (settings SURGE_RATE_*).
RATE_LIMITS = {
    "--rate-limit-per-second": "requests a second per API key",
    "--rate-limit-burst": "requests an API key may burst to",
    "--payments-per-minute": "payments the merchant may create a minute",
    "--payments-per-hour": "payments the merchant may create an hour",
}


class Command(BaseCommand):
    help = "Create a merchant and print its id and secret API key (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--fee-bps", type=int, default=None)
        parser.add_argument("--fee-fixed", type=int, default=None)
        parser.add_argument("--gateway", default=None, help="primary gateway name")
        parser.add_argument("--secondary-gateway", default=None)
        for flag, what in RATE_LIMITS.items():
            parser.add_argument(flag, type=int, default=None, help=what)
        add_risk_arguments(parser, editing=False)

    def handle(
        self, *args, name, fee_bps, fee_fixed, gateway, secondary_gateway, **opts
    ):
        fields = {}
        for flag in RATE_LIMITS:
            field = flag[2:].replace("-", "_")
            value = opts.get(field)
            if value is not None:
                if value <= 0:
                    raise CommandError(f"{flag} must be a positive integer.")
                fields[field] = value
        if fee_bps is not None:
            if fee_bps < 0 or fee_bps > 10_000:
                raise CommandError("--fee-bps must be between 0 and 10000.")
            fields["fee_bps"] = fee_bps
        if fee_fixed is not None:
            if fee_fixed < 0:
                raise CommandError("--fee-fixed must be >= 0.")
            fields["fee_fixed"] = fee_fixed
        if gateway:
            fields["primary_gateway"] = gateway
        if secondary_gateway:
            fields["secondary_gateway"] = secondary_gateway
        try:
            fields.update(risk_rules_clean(risk_changes(opts)))
        except SurgeError as exc:
            raise CommandError(exc.message) from None
        try:
            merchant, secret = merchant_create(name=name, **fields)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"merchant_id: {merchant.id}")
        self.stdout.write(f"secret_key:  {secret}")
        self.stdout.write("Store the secret key now; it is not shown again.")
