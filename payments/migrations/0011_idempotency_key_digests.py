"""Idempotency-Keys are stored as HMAC digests: turn the keys already stored
into theirs, so a retry that arrives after the upgrade still replays."""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations

BATCH = 5000


def digest_keys(apps, schema_editor):
    model = apps.get_model("payments", "IdempotencyKey")
    secret = settings.IDEMPOTENCY_KEY_SECRET.encode()
    last = 0
    while True:
        rows = list(
            model.objects.filter(pk__gt=last).order_by("pk").values_list("pk", "key")[
                :BATCH
            ]
        )
        if not rows:
            return
        for pk, key in rows:
            digest = hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()
            model.objects.filter(pk=pk).update(key=digest)
        last = rows[-1][0]


class Migration(migrations.Migration):
    dependencies = [("payments", "0010_open_payments_no_pattern_index")]

    # Stored digests cannot be turned back into keys: going back forgets them.
    operations = [migrations.RunPython(digest_keys, migrations.RunPython.noop)]
