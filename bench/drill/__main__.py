"""The drill: a burst through a multi-host-shaped stack while everything goes
wrong, then a verdict.

    python -m bench.drill                          (make drill: 20,000, every fault)
    python -m bench.drill --payments 1000 --seed 7 --broker rabbitmq
    python -m bench.drill --faults kill-worker,postgres-restart

It starts its own stack (bench/drill/stack.py), offers the payments (half
single POSTs, half in batches) through haproxy while the faults
(bench/drill/faults.py) run at moments drawn from the seed, waits until every
payment is final, re-drives the open dead letters, verifies
(bench/drill/verify.py), prints the verdict table and appends it to
bench/DRILLS.md. Exit status 1 when any check fails.
"""

import argparse
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.drill import faults as faults_mod
from bench.drill.load import CARDS, make_jobs, run_load
from bench.drill.stack import RABBITMQ_SERVER, ROOT, DrillStack
from bench.drill.verify import (
    Check,
    last_final_at,
    retry_dead_letters,
    retrying,
    verify,
    wait_final,
)

DRILLS = ROOT / "bench" / "DRILLS.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.drill", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--payments", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=None, help="default: a random one")
    p.add_argument(
        "--faults", default="all",
        help="comma-separated names, 'all' or 'none': "
        + ", ".join(faults_mod.FAULTS),
    )  # fmt: skip
    p.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    p.add_argument(
        "--duration", type=float, default=None,
        help="seconds over which the payments are offered (default: payments/250, "
        "at least 30); the faults fall in its first 85%%",
    )  # fmt: skip
    p.add_argument("--merchants", type=int, default=4)
    p.add_argument(
        "--failing-share", type=float, default=0.0,
        help="share of payments with the card that fails at every gateway "
        "(dead letters to retry), e.g. 0.005; off by default: see "
        "docs/operations.md, 'Open, for a decision'",
    )  # fmt: skip
    p.add_argument("--settle-timeout", type=float, default=600)
    p.add_argument(
        "--dir", type=Path, default=ROOT / "bench" / "out" / "drill",
        help="the stack's data and logs (emptied first)",
    )  # fmt: skip
    p.add_argument(
        "--record", type=Path, default=DRILLS,
        help="the file the run is appended to ('-': none)",
    )  # fmt: skip
    return p


def choose_faults(spec: str) -> list[str]:
    if spec == "all":
        return list(faults_mod.FAULTS)
    if spec == "none":
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in faults_mod.FAULTS]
    if unknown:
        raise ValueError(f"unknown faults: {', '.join(unknown)}")
    return names


def _django(env: dict) -> None:
    for name in (
        "CELERY_BROKER_URL", "REDIS_URL", "SURGE_ENV",
        "DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR", "SURGE_VAR_DIR",
    ):  # fmt: skip
        os.environ[name] = env[name]
    import django

    django.setup()


def setup_merchants(n: int) -> tuple[list[str], list[dict]]:
    """n merchants routed primary -> secondary; their keys and card tokens."""
    # deferred: Django is set up at run time, on the drill's database.
    from payments.services.keys import merchant_create
    from vault.services import token_create

    secrets, tokens = [], []
    for i in range(n):
        merchant, secret = merchant_create(
            name=f"Drill {i}", primary_gateway="primary",
            secondary_gateway="secondary", max_amount=10**9,
        )  # fmt: skip
        secrets.append(secret)
        tokens.append({
            card: token_create(
                merchant_id=merchant.id, number=card, exp_month=12,
                exp_year=2099, cvc="123",
            ).pk
            for card in CARDS
        })  # fmt: skip
    return secrets, tokens


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # runs the finally: the stack goes down


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        names = choose_faults(args.faults)
    except ValueError as exc:
        p.error(str(exc))
    if args.payments < 2:
        p.error("--payments must be 2 or more")
    for tool in ("haproxy", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            p.error(f"{tool} is not installed (make drill installs haproxy)")
    if args.broker == "rabbitmq" and not Path(RABBITMQ_SERVER).exists():
        p.error(f"{RABBITMQ_SERVER} is missing: install rabbitmq-server")
    seed = (
        args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    )
    duration = args.duration or max(30.0, args.payments / 250)
    print(
        f"drill: seed {seed}, {args.payments:,} payments over {duration:.0f} s, "
        f"broker {args.broker}, faults: {', '.join(names) or 'none'}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _terminate)
    shutil.rmtree(args.dir, ignore_errors=True)
    stack = DrillStack(args.dir, broker=args.broker)
    started = datetime.now(UTC)
    supervising = None
    try:
        t = time.monotonic()
        stack.up()
        print(
            f"stack up in {time.monotonic() - t:.0f} s: haproxy :{stack.lb_port} -> "
            f"web {stack.web_ports}, gateways {stack.gateway_ports}, logs {stack.dir}/logs",
            flush=True,
        )
        _django(stack.env)
        secrets, tokens = setup_merchants(args.merchants)
        run = f"d{seed}x"
        jobs = make_jobs(
            payments=args.payments, merchants=args.merchants, tokens=tokens,
            seed=seed, run=run, failing=args.failing_share,
        )  # fmt: skip
        schedule = faults_mod.plan(names, seed, duration * 0.85)
        for f in schedule.runs:
            print(f"  planned: {f.name} at {f.at} s for {f.pause} s", flush=True)
        supervising = threading.Event()
        threading.Thread(
            target=stack.supervise, args=(supervising,), daemon=True
        ).start()
        injector = faults_mod.Injector(stack, schedule, seed)
        t0 = time.time()
        injector.start(t0)
        load = run_load(
            jobs, secrets=secrets, port=stack.lb_port,
            rate=args.payments / duration, schedule=schedule,
            timeout=duration + args.settle_timeout,
        )  # fmt: skip
        print(
            f"load done in {load.finished - load.started:.1f} s: "
            f"{len(load.answers)} of {len(jobs)} requests acknowledged, "
            f"{load.retries} retries, statuses {dict(load.statuses)}, "
            f"errors {dict(load.errors)}",
            flush=True,
        )
        injector.join(120)
        # The payments the API acknowledged (a request never acknowledged
        # fails its own check, below, rather than the wait).
        expected = len({pid for a in load.answers.values() for pid in a[0]})
        final_at = wait_final(expected, args.settle_timeout)
        last_fault = schedule.last_end or t0
        last_final = retrying(last_final_at)
        checks: list[Check] = []
        checks.append(Check(
            "every fault ran", all(f.ended and not f.error for f in schedule.runs),
            "; ".join(f"{f.name} at {f.started - t0:.1f} s: {f.detail or f.error}"
                      for f in schedule.runs if f.started) or "no faults",
        ))  # fmt: skip
        recovery = (last_final - last_fault) if last_final else None
        checks.append(Check(
            "every payment final", final_at is not None,
            f"last fault ended {last_fault - t0:.1f} s into the load; the last "
            f"payment final {recovery:.1f} s after it" if recovery is not None
            else "no payment",
        ))  # fmt: skip
        checks.append(retry_dead_letters(stack, args.settle_timeout))
        checks += verify(stack, jobs, load)
        exits = [
            f"{name} (exit {code}: {why[:160]})" for name, code, why in stack.exits
        ]
        checks.append(Check(
            "processes exited on their own (restarted by the supervisor)", True,
            "; ".join(exits) or "none", note=True,
        ))  # fmt: skip
        table = render(checks)
        print(table, flush=True)
        ok = all(c.ok for c in checks)
        print(f"VERDICT: {'PASS' if ok else 'FAIL'} (seed {seed})", flush=True)
        if str(args.record) != "-":
            record(args.record, started, seed, args, names, schedule, t0, recovery,
                   table, ok, load)  # fmt: skip
        return 0 if ok else 1
    finally:
        if supervising is not None:
            supervising.set()
        if "django.db" in sys.modules:  # set up: its connections go first
            sys.modules["django.db"].connections.close_all()
        stack.down()


def render(checks: list[Check]) -> str:
    lines = ["| check | verdict | detail |", "|---|---|---|"]
    for c in checks:
        detail = c.detail.replace("|", "/").replace("\n", " ")
        lines.append(f"| {c.name} | {c.verdict} | {detail} |")
    return "\n".join(lines)


def _commit() -> str:
    """The checkout's commit, and whether it had changes: what a run ran."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def record(path, started, seed, args, names, schedule, t0, recovery, table, ok, load):
    """Append the run to bench/DRILLS.md."""
    if not path.exists():
        path.write_text(
            "# Drills\n\n`make drill` appends each run here (bench/drill/): the "
            "stack, the faults at the moments the seed chose, and the verdict.\n"
            "Rerun one with `python -m bench.drill --seed N --payments N "
            "--broker B --faults ...`.\n"
        )
    faults_line = ", ".join(
        f"{f.name} @{f.started - t0:.0f}s" for f in schedule.runs if f.started
    )
    with path.open("a") as fh:
        fh.write(
            f"\n## {started:%Y-%m-%d %H:%M} UTC: seed {seed}, broker {args.broker}, "
            f"{args.payments:,} payments: {'PASS' if ok else 'FAIL'}\n\n"
            f"Code: {_commit()}. Machine: {os.cpu_count()} cores, "
            f"{platform.machine()}, Python "
            f"{platform.python_version()}. Load {load.finished - load.started:.0f} s, "
            f"{load.retries} client retries, {load.duplicates_sent} duplicate "
            f"submissions. Faults: {faults_line or 'none'}. Last fault to last "
            f"payment final: {f'{recovery:.1f} s' if recovery is not None else '-'}.\n\n"
            f"{table}\n"
        )


if __name__ == "__main__":
    sys.exit(main())
