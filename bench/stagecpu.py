"""What each stage costs a payment: ``python -m bench.stagecpu``.

Runs batches of payments through validate -> enrich -> execute -> settle in
this one process (the sandbox gateway, a fresh database), and reports each
stage's CPU per payment: this process's (Python, psycopg) and its PostgreSQL
backend's (read from /proc, so the server must run on this machine). Enrich
is measured twice: for a merchant without risk rules (the default) and for
one with every rule on, velocity included (thresholds no payment reaches, so
every payment still goes on). Execute's figure leaves out the sandbox
gateway's own connections (its pool threads' backends).

The stages' CPU is what a worker spends; the bench's burst figures add the
broker, the relay and the web. Results go to docs/performance.md with their
date and machine.
"""

import argparse
import os
import subprocess
import time

from bench.__main__ import PY, ROOT
from bench.pgcpu import proc_cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=10, help="measured batches")
    p.add_argument("--size", type=int, default=500, help="payments per batch")
    p.add_argument("--db", default="surge_stagecpu")
    p.add_argument("--redis-db", type=int, default=12, help="emptied before and after")
    args = p.parse_args(argv)
    if min(args.batches, args.size) <= 0:
        p.error("--batches and --size must be positive")
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.db}",
        CELERY_BROKER_URL=broker,  # the stages hand on through the broker
        REDIS_URL=broker,
        SURGE_ENV="bench",
        DJANGO_SETTINGS_MODULE="bench.settings",
    )
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]
    subprocess.run(
        [*psql, f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)"], check=True
    )
    subprocess.run([*psql, f"CREATE DATABASE {args.db}"], check=True)
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    flush = ["redis-cli", "-n", str(args.redis_db), "FLUSHDB"]
    subprocess.run(flush, check=True, capture_output=True)
    try:
        return _run(args)
    finally:
        subprocess.run(flush, check=False, capture_output=True)
        subprocess.run(
            [*psql, f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)"], check=False
        )


def _run(args) -> int:
    import django

    django.setup()
    # deferred: these modules hold models, so they load after django.setup()
    # above (the database is chosen from this run's options).
    from django.db import connection

    # deferred: as above, after django.setup()
    from payments.services import pipeline
    from payments.services.batches import BatchItem, payment_batch_create
    from payments.services.enrich import enrich_batch
    from payments.services.keys import merchant_create
    from vault.services import token_create

    plain, _ = merchant_create(name="plain", max_amount=10**9)
    ruled, _ = merchant_create(
        name="ruled", max_amount=10**9,
        risk_card_velocity_count=10**6, risk_customer_velocity_count=10**6,
        risk_amount_ceiling=10**9, risk_blocked_countries=["XX"],
        risk_blocked_bins=["999999"],
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def cpu() -> tuple[float, float]:
        return time.process_time(), proc_cpu(backend) or 0.0

    stages = {
        "validate": pipeline.validate_batch,
        "enrich": enrich_batch,
        "execute": pipeline.execute_batch,
        "settle": pipeline.settle_batch,
    }
    spent: dict[str, list[float]] = {}
    for merchant in (plain, ruled):
        token = token_create(
            merchant_id=merchant.id, number="4242424242424242",
            exp_month=12, exp_year=2099, cvc="123",
        )  # fmt: skip
        for n in range(args.batches + 1):  # the first one warms up
            items = [
                BatchItem(amount=100 + i, currency="usd", source=token.pk,
                          reference=f"{merchant.name}-{n}-{i}", customer=f"c{i}")
                for i in range(args.size)
            ]  # fmt: skip
            _, payments = payment_batch_create(merchant=merchant, items=items)
            ids = [p.pk for p in payments]
            for name, stage in stages.items():
                before = cpu()
                stage(ids)
                after = cpu()
                if n:
                    row = spent.setdefault(f"{name} ({merchant.name})", [0.0, 0.0])
                    row[0] += after[0] - before[0]
                    row[1] += after[1] - before[1]
    count = args.batches * args.size
    print(f"{count} payments a row, batches of {args.size}; CPU us a payment")
    print(f"{'stage':<20}{'process':>10}{'postgres':>10}{'total':>10}")
    for label, (proc, pg) in spent.items():
        per = [proc / count * 1e6, pg / count * 1e6]
        print(f"{label:<20}{per[0]:>10.1f}{per[1]:>10.1f}{sum(per):>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
