"""Does the pipeline keep memory per payment? ``python -m bench.memcheck``.

The soak's RSS samples cannot tell a leak from an allocator that settles
(a worker runs 64 gateway threads, each with its own malloc arena). This runs
batches through validate -> execute -> settle in one process, against a fresh
database and the gateway simulator over HTTP, and compares Python's own
allocations (tracemalloc) after a warm-up with those at the end: memory kept
per payment shows up there, whatever the allocator does.

2026-11-22 (this machine, 500-payment batches, the simulator at 1-2 ms):
20,000 payments after 20,000 of warm-up kept +20.3 KiB of Python
allocations, about 1 byte a payment (Django's and Celery's small caches).
Traced from the warm-up's start; traced only from its end, psycopg's
bounded per-connection statement LRU looked like +725 KiB, because only the
entries it added were traced, not the ones it dropped.
"""

import argparse
import gc
import os
import subprocess
import sys
import time
import tracemalloc

from bench.__main__ import PY, ROOT, _free_port, _wait_port


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=60, help="measured batches")
    p.add_argument("--size", type=int, default=500, help="payments per batch")
    p.add_argument("--warmup", type=int, default=20, help="batches before measuring")
    p.add_argument("--db", default="surge_memcheck")
    p.add_argument("--redis-db", type=int, default=13, help="emptied before and after")
    args = p.parse_args(argv)
    if min(args.batches, args.size, args.warmup) <= 0:
        p.error("--batches, --size and --warmup must be positive")

    port = _free_port()
    broker = f"redis://127.0.0.1:6379/{args.redis_db}"
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.db}",
        CELERY_BROKER_URL=broker,  # the stages hand on through the broker
        REDIS_URL=broker,
        SURGE_ENV="bench",
        GATEWAY_SIMULATOR_URLS=f"simulator=http://127.0.0.1:{port}",
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
    simulator = subprocess.Popen(
        [PY, "manage.py", "run_gateway_simulator", "--port", str(port),
         "--latency-ms", "1-2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port)
        return _run(args)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        subprocess.run(flush, check=False, capture_output=True)


def _run(args) -> int:
    import django

    django.setup()
    # deferred: these modules hold models, so they load after django.setup()
    # above (the database is chosen from this run's options).
    from payments.services import pipeline
    from payments.services.batches import BatchItem, payment_batch_create
    from payments.services.enrich import enrich_batch
    from payments.services.keys import merchant_create
    from vault.services import token_create

    merchant, _ = merchant_create(
        name="memcheck", primary_gateway="simulator", max_amount=10**9
    )
    token = token_create(
        merchant_id=merchant.id, number="4242424242424242",
        exp_month=12, exp_year=2099, cvc="123",
    )  # fmt: skip

    def batch(n: int) -> None:
        items = [
            BatchItem(amount=100 + i, currency="usd", source=token.pk,
                      reference=f"m{n}-{i}")
            for i in range(args.size)
        ]  # fmt: skip
        _, payments = payment_batch_create(merchant=merchant, items=items)
        ids = [p.pk for p in payments]
        pipeline.validate_batch(ids)
        enrich_batch(ids)
        pipeline.execute_batch(ids)
        if pipeline.settle_batch(ids) != args.size:
            raise RuntimeError(f"batch {n} did not settle in full")

    # Traced from the start: a bounded cache replaces entries made in the
    # warm-up, and only traced frees are counted.
    tracemalloc.start(10)
    for n in range(args.warmup):
        batch(n)
    gc.collect()
    before, rss_before = tracemalloc.take_snapshot(), _rss_mb()
    started = time.monotonic()
    for n in range(args.warmup, args.warmup + args.batches):
        batch(n)
    gc.collect()
    after, rss_after = tracemalloc.take_snapshot(), _rss_mb()
    payments = args.batches * args.size
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(
        f"{payments} payments after {args.warmup * args.size} warm-up "
        f"({time.monotonic() - started:.0f} s): Python allocations "
        f"{grown / 1024:+.1f} KiB ({grown / payments:+.2f} B a payment), "
        f"RSS {rss_before:.1f} -> {rss_after:.1f} MB"
    )
    print("largest differences:")
    for stat in after.compare_to(before, "lineno")[:5]:
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
