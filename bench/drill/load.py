"""The drill's clients: half the payments as single POSTs, half in batches,
through the load balancer, as merchants' systems behave on a bad day.

A request that times out, meets a dropped connection or a 5xx is retried
with the same Idempotency-Key and body until it is acknowledged (or the
drill's deadline passes); a 429 waits its Retry-After. During the
``client-timeouts`` window a client gives up after 50 ms (the server has
usually received the request) and retries; during ``duplicates`` every
request is sent twice at once. Every answer for a key is kept: all of them
must name the same payment(s).
"""

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.drill.faults import Schedule
from bench.loadgen import Connection

SUCCEEDS = "4242424242424242"
DECLINED = "4000000000000002"
# Fails at every gateway with a retryable processing_error: the payment
# fails with a dead letter, which the drill then retries.
GATEWAY_ERROR = "4000000000000119"
CARDS = (SUCCEEDS, DECLINED, GATEWAY_ERROR)


def _card(rng: random.Random, failing: float) -> str:
    """About 5% declined, ``failing`` failing at every gateway, the rest succeed."""
    draw = rng.random()
    if draw < 0.05:
        return DECLINED
    if draw < 0.05 + failing:
        return GATEWAY_ERROR
    return SUCCEEDS


CLIENT_TIMEOUT = 30.0  # seconds, a client's patience normally
SHORT_TIMEOUT = 0.05  # during client-timeouts


@dataclass
class Job:
    key: str  # Idempotency-Key
    merchant: int
    path: str
    body: dict
    asked: list[str]  # what the client asked for: descriptions or references


@dataclass
class Outcome:
    # key -> every set of payment ids an acknowledgement for that key named
    answers: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    retries: int = 0
    duplicates_sent: int = 0
    unacknowledged: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # key -> 4xx body
    started: float = 0.0
    finished: float = 0.0


def make_jobs(
    *, payments: int, merchants: int, tokens: list[dict], seed: int, run: str,
    failing: float = 0.005,
) -> list[Job]:  # fmt: skip
    """Half the payments single, half in batches, batches spread through the
    singles; about 5% with a card that is declined, ``failing`` with one that
    fails at every gateway."""
    rng = random.Random(seed)
    n_batch = payments // 2
    n_single = payments - n_batch
    batch_size = max(10, min(500, n_batch // 10 or 10))
    singles = []
    for i in range(n_single):
        m = i % merchants
        card = _card(rng, failing)
        key = f"{run}s{i}"
        body = {
            "amount": rng.randint(100, 500_000),
            "currency": "usd",
            "source": tokens[m][card],
            "description": f"drill {key}",
        }
        singles.append(Job(key, m, "/v1/payments", body, [body["description"]]))
    batches = []
    b = 0
    left = n_batch
    while left > 0:
        size = min(batch_size, left)
        m = b % merchants
        items = []
        for p in range(size):
            card = _card(rng, failing)
            items.append({
                "amount": rng.randint(100, 500_000),
                "currency": "usd",
                "source": tokens[m][card],
                "reference": f"{run}b{b}p{p}",
            })  # fmt: skip
        key = f"{run}b{b}"
        batches.append(
            Job(key, m, "/v1/payment_batches", {"payments": items},
                [item["reference"] for item in items])
        )  # fmt: skip
        left -= size
        b += 1
    jobs = list(singles)
    # Batches at even intervals among the singles.
    step = max(1, len(singles) // max(1, len(batches)))
    for i, batch in enumerate(batches):
        jobs.insert(min(len(jobs), i * (step + 1)), batch)
    return jobs


def payment_ids(path: str, body: dict) -> tuple[str, ...]:
    if path == "/v1/payment_batches":
        return tuple(sorted(p["id"] for p in body["payments"]))
    return (body["id"],)


async def _attempt(conn: Connection, job: Job, secret: str, timeout: float):
    headers = {
        "Authorization": f"Bearer {secret}",
        "Content-Type": "application/json",
        "Idempotency-Key": job.key,
    }
    body = json.dumps(job.body).encode()
    return await asyncio.wait_for(
        conn.request("POST", job.path, headers, body), timeout
    )


async def _submit(job, secrets, port, schedule: Schedule, out: Outcome, deadline):
    """Send ``job`` until acknowledged; record every acknowledgement."""
    conn = Connection("127.0.0.1", port)
    backoff = 0.1
    first = True
    try:
        while time.monotonic() < deadline:
            # An impatient client gives up on its first try; its retries wait.
            short = first and "client-timeouts" in schedule.active
            first = False
            timeout = SHORT_TIMEOUT if short else CLIENT_TIMEOUT
            try:
                status, payload = await _attempt(
                    conn, job, secrets[job.merchant], timeout
                )
            except TimeoutError:
                conn.close()
                out.errors["client timeout"] += 1
                out.retries += 1
                await asyncio.sleep(backoff if not short else 0.01)
                continue
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                out.errors[type(exc).__name__] += 1
                out.retries += 1
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            out.statuses[status] += 1
            if status in (200, 201, 202):
                ids = payment_ids(job.path, json.loads(payload))
                out.answers.setdefault(job.key, []).append(ids)
                return
            if status == 429 or status == 409 or status >= 500:
                # 409: the same key is being processed by a concurrent request
                out.retries += 1
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            out.rejected[job.key] = payload.decode(errors="replace")[:500]
            return
        out.unacknowledged.append(job.key)
    finally:
        conn.close()


async def _drive(jobs, secrets, port, rate, schedule, out, deadline, clients):
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def client():
        while True:
            item = await queue.get()
            if item is None:
                return
            job = item
            if "duplicates" in schedule.active:
                out.duplicates_sent += 1
                await asyncio.gather(
                    _submit(job, secrets, port, schedule, out, deadline),
                    _submit(job, secrets, port, schedule, out, deadline),
                )
            else:
                await _submit(job, secrets, port, schedule, out, deadline)

    workers = [asyncio.create_task(client()) for _ in range(clients)]
    sent = 0
    for job in jobs:
        # Paced by payments: a batch of 500 takes 500 payments' share of time.
        due = t0 + sent / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await queue.put(job)
        sent += len(job.asked)
        while queue.qsize() > clients * 4:  # the clients are behind: wait
            await asyncio.sleep(0.01)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)


def run_load(
    jobs: list[Job], *, secrets: list[str], port: int, rate: float,
    schedule: Schedule, timeout: float, clients: int = 48,
) -> Outcome:  # fmt: skip
    out = Outcome(started=time.time())
    deadline = time.monotonic() + timeout
    asyncio.run(_drive(jobs, secrets, port, rate, schedule, out, deadline, clients))
    out.finished = time.time()
    return out
