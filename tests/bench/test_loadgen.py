"""The load generator counts a warm-up apart, on the same connections."""

import asyncio

from bench.loadgen import run_open_loop


async def _serve(seen: list[tuple[str, int]]):
    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")[1]
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            length = 0
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":")[1])
            body = await reader.readexactly(length)
            seen.append((body.decode(), peer))
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    async def guarded(reader, writer):
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(guarded, "127.0.0.1", 0)


def _run(seen: list[tuple[str, int]], **kwargs):
    """run_open_loop against a local server that answers 202 to everything."""

    async def main():
        server = await _serve(seen)
        port = server.sockets[0].getsockname()[1]
        try:
            return await run_open_loop(host="127.0.0.1", port=port, **kwargs)
        finally:
            server.close()

    return asyncio.run(main())


def test_the_warm_up_is_sent_first_and_counted_apart():
    seen: list[tuple[str, int]] = []
    result = _run(
        seen, total=30, rate=500, warmup=20, connections=4,
        make_request=lambda i: ("POST", "/", {}, str(i).encode()),
    )  # fmt: skip
    assert [int(body) for body, _ in seen] == list(range(50))  # due in order
    assert result.ok == 30 and result.sent == 30
    assert result.warmup.ok == 20 and result.warmup.sent == 20
    assert len(result.latencies) == 30 and len(result.warmup.latencies) == 20
    # The measured part starts where the warm-up ends (20 requests at 500/s).
    assert abs(result.started - result.warmup.started - 0.04) < 0.005
    assert all(due >= 0 for due, _, _ in result.timeline)
    # One pool of connections for both parts: no new ones for the measured run.
    assert len({peer for _, peer in seen}) <= 4


def test_without_a_warm_up_there_is_none():
    result = _run(
        [], total=5, rate=500, connections=2,
        make_request=lambda i: ("POST", "/", {}, b"x"),
    )  # fmt: skip
    assert result.ok == 5 and result.warmup is None
