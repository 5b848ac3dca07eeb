"""After the drill: what the clients were told against what the database,
the gateways' own logs and the ledger say. Each check is a row of the
verdict table; any row off fails the drill.
"""

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.__main__ import charges_by_payment, simulator_records
from bench.drill.load import Job, Outcome
from bench.drill.stack import PY, ROOT, DrillStack


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    note: bool = False  # a row to read, not a verdict

    @property
    def verdict(self) -> str:
        if self.note:
            return "note"
        return "pass" if self.ok else "FAIL"


def retrying(fn: Callable, timeout: float = 120):
    """Run a query, reconnecting while the drill's PostgreSQL comes back."""
    # deferred: Django is set up at run time, on the drill's database.
    from django.db import Error, connections

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except Error:
            connections.close_all()
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def open_count() -> tuple[int, int]:
    """(payments, payments not final)."""
    from django.db import connection  # deferred: Django set up at run time

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = ANY(%s)) "
            "FROM payments_payment",
            [list(_non_terminal())],
        )
        return cursor.fetchone()


def _non_terminal() -> list[str]:
    from payments.state import NON_TERMINAL  # deferred: Django set up at run time

    return sorted(NON_TERMINAL)


def wait_final(expected: int, timeout: float) -> float | None:
    """Wait until ``expected`` payments exist and none is open; the Unix
    time it happened, or None at the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        total, open_ = last = retrying(open_count)
        if total >= expected and open_ == 0:
            return time.time()
        time.sleep(1)
    print(f"not final after {timeout:.0f} s: {last[1]} of {last[0]} open")
    return None


def last_final_at() -> float | None:
    """When the last payment reached its final state (Unix time); an open
    payment's lease bumps are not an end."""
    from django.db import connection  # deferred: Django set up at run time

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM max(updated_at)) FROM payments_payment "
            "WHERE NOT status = ANY(%s)",
            [_non_terminal()],
        )
        value = cursor.fetchone()[0]
    return float(value) if value is not None else None


def retry_dead_letters(stack: DrillStack, timeout: float) -> Check:
    """Every dead letter carries a reason; retrying the open ones, through
    the same service as the admin's *retry* action (``dead_letter_retry``:
    a payment that failed provably uncharged goes back to execute, a stuck
    one is re-driven), finishes their payments."""
    # The Celery app must be Surge's: a retry hands on through its broker.
    from django.db import connection  # deferred: Django set up at run time

    import config.celery  # noqa: F401  # deferred: Django set up at run time
    from payments.models import DeadLetter  # deferred: Django set up at run time
    from payments.services.operations import (  # deferred: Django set up at run time
        dead_letter_retry,
    )

    def letters():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'open'), "
                "count(*) FILTER (WHERE error_class = '' OR message = ''), "
                "array_agg(DISTINCT payment_id) FILTER (WHERE status = 'open'), "
                "array_agg(DISTINCT stage || ':' || error_class) "
                "FROM payments_deadletter"
            )
            return cursor.fetchone()

    total, open_, no_reason, open_payments, kinds = retrying(letters)
    open_payments = [p for p in (open_payments or []) if p]
    detail = (
        f"{total} letters ({', '.join(sorted(kinds or [])) or 'none'}), {open_} open"
    )
    name = "dead letters: reason, retried to the end"
    if no_reason:
        return Check(name, False, f"{detail}; {no_reason} without a reason")
    if not open_:
        return Check(name, True, detail)
    attempts_before = retrying(lambda: _attempts_of(open_payments))
    outcomes = retrying(
        lambda: [
            dead_letter_retry(
                dead_letter=letter, actor="make drill",
                reason="the drill retries every open dead letter",
            )
            for letter in DeadLetter.objects.filter(status=DeadLetter.Status.OPEN)
        ]
    )  # fmt: skip
    refused = [o.message for o in outcomes if not o.done]

    def still_open():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM payments_payment "
                "WHERE id = ANY(%s) AND status = ANY(%s)",
                [open_payments, _non_terminal()],
            )
            return cursor.fetchone()[0]

    deadline = time.monotonic() + timeout
    time.sleep(1)
    left = retrying(still_open)
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = retrying(still_open)
    statuses = retrying(lambda: _statuses_of(open_payments))
    attempts_after = retrying(lambda: _attempts_of(open_payments))
    # Re-driven for real: each went through the gateway stage again.
    redriven = [
        pid for pid in open_payments
        if attempts_after.get(pid, 0) > attempts_before.get(pid, 0)
    ]  # fmt: skip
    return Check(
        name, left == 0 and not refused and len(redriven) == len(open_payments),
        f"{detail}; retried: {len(outcomes) - len(refused)} done, "
        f"{len(refused)} refused{' (' + refused[0] + ')' if refused else ''}; "
        f"{len(redriven)} of {len(open_payments)} payments charged again, now "
        f"{statuses}",
    )  # fmt: skip


def _attempts_of(ids: list[str]) -> dict[str, int]:
    from django.db import connection  # deferred: Django set up at run time

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, attempts FROM payments_payment WHERE id = ANY(%s)", [ids]
        )
        return dict(cursor.fetchall())


def _statuses_of(ids: list[str]) -> dict[str, int]:
    from django.db import connection  # deferred: Django set up at run time

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM payments_payment WHERE id = ANY(%s) "
            "GROUP BY 1",
            [ids],
        )
        return dict(cursor.fetchall())


def verify(stack: DrillStack, jobs: list[Job], load: Outcome) -> list[Check]:
    return retrying(lambda: _verify(stack, jobs, load))


def _verify(stack: DrillStack, jobs: list[Job], load: Outcome) -> list[Check]:
    from django.db import connection  # deferred: Django set up at run time

    checks = []
    asked = {item for job in jobs for item in job.asked}
    acked: set[str] = set()
    inconsistent = []
    for key, answers in load.answers.items():
        acked.update(answers[0])
        if any(a != answers[0] for a in answers[1:]):
            inconsistent.append(key)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, status, coalesce(reference, description) FROM payments_payment"
        )
        rows = cursor.fetchall()
    status_of = {pid: status for pid, status, _ in rows}
    by_status: dict[str, int] = {}
    for _, status, _ in rows:
        by_status[status] = by_status.get(status, 0) + 1
    checks.append(Check(
        "every request acknowledged",
        not load.unacknowledged and not load.rejected,
        f"{len(load.answers)} of {len(jobs)} requests ({len(asked)} payments); "
        f"never acknowledged {len(load.unacknowledged)}, refused "
        f"{len(load.rejected)}"
        + (f" e.g. {next(iter(load.rejected.values()))}" if load.rejected else ""),
    ))  # fmt: skip
    checks.append(Check(
        "one answer per idempotency key", not inconsistent,
        f"{sum(len(a) for a in load.answers.values())} acknowledgements; "
        f"{len(inconsistent)} keys answered with different payments"
        + (f" e.g. {inconsistent[0]}" if inconsistent else ""),
    ))  # fmt: skip
    missing = [pid for pid in acked if pid not in status_of]
    open_ = [
        pid for pid in acked if pid in status_of and status_of[pid] in _non_terminal()
    ]
    checks.append(Check(
        "acknowledged payments exist and are final", not missing and not open_,
        f"{len(acked)} acknowledged; {len(missing)} missing, {len(open_)} not final; "
        + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())),
    ))  # fmt: skip
    seen: dict[str, int] = {}
    for _, _, what in rows:
        seen[what] = seen.get(what, 0) + 1
    unasked = [w for w in seen if w not in asked]
    doubled = [w for w, n in seen.items() if n > 1]
    checks.append(Check(
        "no payment nobody asked for", not unasked and not doubled and len(rows) == len(asked),
        f"{len(rows)} payments for {len(asked)} asked; {len(unasked)} unasked, "
        f"{len(doubled)} asked once and made twice",
    ))  # fmt: skip
    records = []
    for port in stack.gateway_ports.values():
        records += simulator_records(port)
    charges = charges_by_payment(records)
    settled = {pid for pid, s in status_of.items() if s == "settled"}
    not_settled_charged = [pid for pid in charges if status_of.get(pid) != "settled"]
    uncharged = [pid for pid in settled if pid not in charges]
    double = [pid for pid, n in charges.items() if n > 1]
    checks.append(Check(
        "one gateway charge per settled payment", not uncharged and not double,
        f"{sum(charges.values())} charges in the gateways' logs for {len(settled)} "
        f"settled; {len(uncharged)} settled without one, {len(double)} charged twice",
    ))  # fmt: skip
    checks.append(Check(
        "no charge for a declined or failed payment", not not_settled_charged,
        f"{len(not_settled_charged)} charged but not settled"
        + (f" e.g. {not_settled_charged[0]} ({status_of.get(not_settled_charged[0])})"
           if not_settled_charged else ""),
    ))  # fmt: skip
    done = subprocess.run(
        [PY, "manage.py", "reconcile"], cwd=ROOT, env=stack.env,
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    checks.append(Check(
        "reconcile clean", done.returncode == 0,
        f"exit {done.returncode}" + ("" if done.returncode == 0 else
                                     f": {(done.stdout + done.stderr)[-400:]}"),
    ))  # fmt: skip
    audit = subprocess.run(
        [PY, "manage.py", "audit_events"], cwd=ROOT, env=stack.env,
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    checks.append(Check(
        "events audit clean (each payment's events tell its row's story)",
        audit.returncode == 0,
        f"exit {audit.returncode}" + ("" if audit.returncode == 0 else
                                      f": {(audit.stdout + audit.stderr)[-400:]}"),
    ))  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM (
              SELECT entry_id, currency FROM ledger_posting GROUP BY 1, 2
              HAVING sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) <> 0
            ) unbalanced
            """
        )
        unbalanced = cursor.fetchone()[0]
        cursor.execute("SELECT count(*), count(DISTINCT entry_id) FROM ledger_posting")
        postings, entries = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*) FROM ledger_account a LEFT JOIN (
              SELECT account_id,
                     sum(CASE direction WHEN 'debit' THEN amount ELSE -amount END) AS dr
              FROM ledger_posting GROUP BY 1
            ) p ON p.account_id = a.id
            WHERE a.balance <> CASE WHEN a.type IN ('asset', 'expense')
                                    THEN coalesce(p.dr, 0) ELSE -coalesce(p.dr, 0) END
            """
        )
        off = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM ledger_account")
        accounts = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM payments_payment p WHERE status = 'settled' AND "
            "NOT EXISTS (SELECT 1 FROM ledger_journalentry e WHERE e.payment_id = p.id)"
        )
        unposted = cursor.fetchone()[0]
    checks.append(Check(
        "the ledger balances", unbalanced == 0 and unposted == 0,
        f"{entries} entries, {postings} postings; {unbalanced} unbalanced; "
        f"{unposted} settled payments without an entry",
    ))  # fmt: skip
    checks.append(Check(
        "balances = sum of postings", off == 0, f"{accounts} accounts, {off} off",
    ))  # fmt: skip
    return checks
