"""Measure the simulator's charge throughput with a lean keep-alive client:
``python -m gateways.simulator.loadtest --url http://127.0.0.1:8900``.

httpx's AsyncClient spends more CPU per request than the simulator does, so
this speaks raw HTTP/1.1 on asyncio streams to measure the server, not itself.
"""

import argparse
import asyncio
import json
import time
import uuid
from urllib.parse import urlsplit

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099}


async def _connection(host, port, jobs: asyncio.Queue, run_id: str, statuses: dict):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            try:
                i = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = json.dumps(
                {"payment_id": f"p{i}", "amount": 1000, "currency": "usd", "card": CARD}
            ).encode()
            writer.write(
                (
                    f"POST /v1/charges HTTP/1.1\r\nHost: {host}\r\n"
                    f"Idempotency-Key: load-{run_id}-{i}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(url: str, charges: int, concurrency: int) -> None:
    parts = urlsplit(url)
    jobs: asyncio.Queue[int] = asyncio.Queue()
    for i in range(charges):
        jobs.put_nowait(i)
    statuses: dict[int, int] = {}
    run_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(parts.hostname, parts.port, jobs, run_id, statuses)
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    print(
        f"{charges} charges in {elapsed:.2f}s = {charges / elapsed:.0f}/s over "
        f"{concurrency} keep-alive connections; statuses {statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8900")
    parser.add_argument("--charges", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.charges, args.concurrency))


if __name__ == "__main__":
    main()
