"""An open-loop HTTP/1.1 load generator on asyncio with keep-alive connections.

Open loop: request i is due at ``t0 + i / rate`` whatever happened before, and
its latency is measured from that due time, so a slow server shows up as
latency instead of silently lowering the offered load (coordinated omission).
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # from due time, ok only
    service: list[float] = field(default_factory=list)  # from send, ok only
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0
    bodies: list[dict] = field(default_factory=list)
    # (seconds since start when due, latency, service) per ok request: where
    # in the run the slow ones were.
    timeline: list[tuple[float, float, float]] = field(default_factory=list)
    # The first ``warmup`` requests of a run, counted apart (same loop, same
    # connections: a second run would start on fresh ones).
    warmup: "LoadResult | None" = None

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def duration(self) -> float:
        return self.finished - self.started


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict, body: bytes):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port
            )
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        # The whole head in one read (a readline per header line was most of
        # this process's CPU, which the box under test pays for).
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ConnectionError("server closed the connection") from None
            raise
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_open_loop(
    *,
    host: str,
    port: int,
    total: int,
    rate: float,
    make_request: Callable[[int], tuple[str, str, dict, bytes]],
    connections: int = 64,
    keep_bodies: bool = False,
    warmup: int = 0,
) -> LoadResult:
    """Send ``total`` requests at ``rate``/s; at most ``connections`` in flight.

    The first ``warmup`` of them (on top of ``total``) are counted apart, in
    ``result.warmup``; the result's own figures start after them.
    """
    result = LoadResult()
    warm = LoadResult() if warmup else None
    result.warmup = warm
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, port))
    loop = asyncio.get_running_loop()
    w0 = loop.time() + 0.05
    t0 = w0 + warmup / rate  # the measured part's start
    if warm is not None:
        warm.started = time.time() + (w0 - loop.time())
    result.started = time.time() + (t0 - loop.time())  # t0 as Unix time

    async def one(i: int, due: float):
        into = warm if i < warmup else result
        conn = await pool.get()
        method, path, headers, body = make_request(i)
        sent = loop.time()
        try:
            status, payload = await conn.request(method, path, headers, body)
            into.statuses[status] += 1
            if 200 <= status < 300:
                now = loop.time()
                into.latencies.append(now - due)
                into.service.append(now - sent)
                into.timeline.append((due - t0, now - due, now - sent))
                if keep_bodies:
                    into.bodies.append(json.loads(payload))
            else:
                into.errors[f"http_{status}"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            into.errors[type(exc).__name__] += 1
        finally:
            pool.put_nowait(conn)
            into.sent += 1

    # Each request's task is made when it is due: making all of them up front
    # (a hundred thousand timers) stalled the loop for the run's first seconds.
    running: set[asyncio.Task] = set()
    for i in range(warmup + total):
        due = w0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    result.finished = time.time()
    if warm is not None:
        warm.finished = result.started
    while not pool.empty():
        pool.get_nowait().close()
    return result


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
