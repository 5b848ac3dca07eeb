"""Settlement throughput: ``DATABASE_URL=postgres://.../surge_ledger_bench
python -m tests.ledger.bench_settlements [total] [batch] [merchants]``.

Not a test (pytest does not collect it). Needs a migrated scratch database.
"""

import os
import sys
import time
import uuid

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.db import transaction  # noqa: E402

from ledger.services import Settlement, fee_for, post_settlements  # noqa: E402


def main(total: int = 50_000, batch: int = 500, merchants: int = 20) -> None:
    run = uuid.uuid4().hex[:8]
    items = [
        Settlement(
            payment_id=f"pay_{run}_{i}",
            merchant_id=f"mer_{run}_{i % merchants}",
            gateway="sandbox",
            amount=1000 + i % 977,
            currency="usd",
            fee=fee_for(amount=1000 + i % 977, fee_bps=290, fee_fixed=30),
        )
        for i in range(total)
    ]
    start = time.perf_counter()
    posted = 0
    for i in range(0, total, batch):
        with transaction.atomic():
            posted += post_settlements(items[i : i + batch])
    elapsed = time.perf_counter() - start
    print(f"{posted} settlements in {elapsed:.2f}s: {posted / elapsed:,.0f}/s "
          f"(batch {batch}, {merchants} merchants)")  # fmt: skip


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
