"""The acquirer simulator: one asyncio loop, minimal HTTP/1.1 with keep-alive.

Endpoints (JSON; amounts are integer minor units):
  POST /v1/charges        Idempotency-Key header; {payment_id, merchant_id, amount,
                          currency, card: {number, exp_month, exp_year}}
  GET  /v1/charges/<key>  inquiry by idempotency key; 404 = no such charge
  POST /v1/refunds        Idempotency-Key header; {charge, amount, currency}
  GET  /v1/records?since=<unix seconds>   the charge and refund log
  GET  /_control          knobs and counters (in-flight, max in-flight, ...)
  POST /_control          {latency_ms: [lo, hi], error_rate, timeout_rate,
                           timeout_delay_ms, outage: bool | "refuse",
                           outage_seconds, reset_stats: bool, clear: bool}

Failure modes: "error" answers 503 {"processed": false} without recording;
"timeout" records the charge, then holds the response past any sane client
timeout; outage=true answers 503 {"processed": false}; outage="refuse" stops
listening (connection refused) for outage_seconds. No card number is stored,
logged or echoed.
"""

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from gateways import testcards

logger = logging.getLogger(__name__)

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
MAX_BODY = 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status = status
        self.body = body


def _not_processed(status: int, code: str) -> HTTPError:
    return HTTPError(status, {"processed": False, "error": {"code": code}})


def _valid_amount(value: object) -> bool:
    return type(value) is int and value > 0


def _valid_currency(value: object) -> bool:
    return isinstance(value, str) and len(value) == 3 and value.isalpha()


class Simulator:
    def __init__(
        self,
        *,
        latency_ms: tuple[int, int] = (0, 0),
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        timeout_delay_ms: int = 30_000,
        outage: bool | str = False,
        log_file: str | None = None,
    ):
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.timeout_delay_ms = timeout_delay_ms
        self.outage = outage
        self.charges: dict[str, dict] = {}  # by idempotency key
        self.by_reference: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.log: list[dict] = []
        self.stats = {"in_flight": 0, "max_in_flight": 0, "requests": 0}
        self._log_file = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.host = "127.0.0.1"
        self.port = 0
        if log_file:
            self._load(Path(log_file))
            self._log_file = open(log_file, "a", buffering=1)  # noqa: SIM115

    # --- state ----------------------------------------------------------------
    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            if line.strip():
                self._remember(json.loads(line))

    def _remember(self, record: dict) -> None:
        self.log.append(record)
        if record["kind"] == "charge":
            self.charges[record["idempotency_key"]] = record
            self.by_reference[record["id"]] = record
        else:
            self.refunds[record["idempotency_key"]] = record

    def _record(self, record: dict) -> None:
        self._remember(record)
        if self._log_file is not None:
            self._log_file.write(json.dumps(record) + "\n")

    # --- handlers -------------------------------------------------------------
    async def _latency(self) -> None:
        lo, hi = self.latency_ms
        if hi > 0:
            await asyncio.sleep(random.uniform(lo, hi) / 1000)

    async def _gate(self) -> None:
        """Latency, outage and injected errors, common to the money endpoints."""
        if self.outage:
            raise _not_processed(503, "outage")
        await self._latency()
        if self.error_rate and random.random() < self.error_rate:
            raise _not_processed(503, "temporarily_unavailable")

    async def _hold_if_timeout(self) -> None:
        if self.timeout_rate and random.random() < self.timeout_rate:
            await asyncio.sleep(self.timeout_delay_ms / 1000)

    async def charge(self, key: str, body: dict) -> dict:
        if not key:
            raise _not_processed(400, "idempotency_key_missing")
        card = body.get("card")
        if not (
            isinstance(card, dict)
            and isinstance(card.get("number"), str)
            and _valid_amount(card.get("exp_month"))
            and _valid_amount(card.get("exp_year"))
            and _valid_amount(body.get("amount"))
            and _valid_currency(body.get("currency"))
        ):
            raise _not_processed(400, "invalid_request")
        await self._gate()
        existing = self.charges.get(key)
        if existing is not None:
            if (existing["amount"], existing["currency"]) != (
                body["amount"],
                body["currency"],
            ):
                raise _not_processed(409, "idempotency_error")
            return existing
        verdict = testcards.outcome(card["number"], card["exp_month"], card["exp_year"])
        if verdict == "processing_error":
            raise _not_processed(500, "processing_error")
        record = {
            "kind": "charge",
            "id": f"ch_sim_{uuid.uuid4().hex}",
            "idempotency_key": key,
            "payment_id": str(body.get("payment_id", "")),
            "merchant_id": str(body.get("merchant_id", "")),
            "amount": body["amount"],
            "currency": body["currency"],
            "status": "succeeded" if verdict == "succeeded" else "declined",
            "decline_code": "" if verdict == "succeeded" else verdict,
            "created": time.time(),
        }
        self._record(record)
        await self._hold_if_timeout()
        return record

    async def inquire(self, key: str) -> dict:
        if self.outage:
            raise _not_processed(503, "outage")
        await self._latency()
        record = self.charges.get(key)
        if record is None:
            raise HTTPError(404, {"error": {"code": "no_such_charge"}})
        return record

    async def refund(self, key: str, body: dict) -> dict:
        if not key:
            raise _not_processed(400, "idempotency_key_missing")
        if not (
            _valid_amount(body.get("amount")) and _valid_currency(body.get("currency"))
        ):
            raise _not_processed(400, "invalid_request")
        await self._gate()
        existing = self.refunds.get(key)
        if existing is not None:
            return existing
        charge = self.by_reference.get(str(body.get("charge", "")))
        if charge is None:
            raise _not_processed(404, "no_such_charge")
        refunded = sum(
            r["amount"]
            for r in self.refunds.values()
            if r["charge"] == charge["id"] and r["status"] == "succeeded"
        )
        ok = (
            charge["status"] == "succeeded"
            and body["currency"] == charge["currency"]
            and refunded + body["amount"] <= charge["amount"]
        )
        record = {
            "kind": "refund",
            "id": f"re_sim_{uuid.uuid4().hex}",
            "idempotency_key": key,
            "charge": charge["id"],
            "payment_id": charge["payment_id"],
            "amount": body["amount"],
            "currency": body["currency"],
            "status": "succeeded" if ok else "failed",
            "created": time.time(),
        }
        self._record(record)
        await self._hold_if_timeout()
        return record

    def records(self, since: float | None) -> dict:
        data = (
            self.log
            if since is None
            else [r for r in self.log if r["created"] >= since]
        )
        return {"data": data}

    def control(self, body: dict | None) -> dict:
        if body:
            if "latency_ms" in body:
                lo, hi = body["latency_ms"]
                self.latency_ms = (int(lo), int(hi))
            for name in ("error_rate", "timeout_rate"):
                if name in body:
                    setattr(self, name, float(body[name]))
            if "timeout_delay_ms" in body:
                self.timeout_delay_ms = int(body["timeout_delay_ms"])
            if body.get("reset_stats"):
                self.stats["max_in_flight"] = self.stats["in_flight"]
                self.stats["requests"] = 0
            if body.get("clear"):
                self.charges.clear()
                self.by_reference.clear()
                self.refunds.clear()
                self.log.clear()
            if "outage" in body:
                self.outage = body["outage"]
                if self.outage == "refuse":
                    seconds = float(body.get("outage_seconds", 5))
                    asyncio.get_running_loop().call_later(0.05, self._refuse, seconds)
        return {
            "latency_ms": list(self.latency_ms),
            "error_rate": self.error_rate,
            "timeout_rate": self.timeout_rate,
            "timeout_delay_ms": self.timeout_delay_ms,
            "outage": self.outage,
            "charges": len(self.charges),
            "refunds": len(self.refunds),
            **self.stats,
        }

    # --- refuse-connections outage -----------------------------------------------
    def _refuse(self, seconds: float) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        asyncio.get_running_loop().call_later(
            seconds, lambda: asyncio.ensure_future(self._relisten())
        )

    async def _relisten(self) -> None:
        self.outage = False
        await self.start(self.host, self.port)

    # --- HTTP -----------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0):
        self._server = await asyncio.start_server(
            self._connection, host, port, reuse_address=True, backlog=2048
        )
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    async def _dispatch(self, method: str, target: str, headers: dict, raw: bytes):
        url = urlsplit(target)
        path = url.path
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise _not_processed(400, "invalid_json") from None
        if not isinstance(body, dict):
            raise _not_processed(400, "invalid_json")
        key = headers.get("idempotency-key", "")
        if path == "/v1/charges" and method == "POST":
            return await self.charge(key, body)
        if path.startswith("/v1/charges/") and method == "GET":
            return await self.inquire(unquote(path[len("/v1/charges/") :]))
        if path == "/v1/refunds" and method == "POST":
            return await self.refund(key, body)
        if path == "/v1/records" and method == "GET":
            since = parse_qs(url.query).get("since")
            return self.records(float(since[0]) if since else None)
        if path == "/_control" and method in ("GET", "POST"):
            return self.control(body if method == "POST" else None)
        if path == "/health":
            return {"ok": True}
        raise HTTPError(404, {"error": {"code": "no_such_route"}})

    async def _connection(self, reader: asyncio.StreamReader, writer) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                keep_alive = version == "HTTP/1.1" and (
                    headers.get("connection", "").lower() != "close"
                )
                status, payload = 200, None
                if "chunked" in headers.get("transfer-encoding", ""):
                    status, payload = 411, {"error": {"code": "length_required"}}
                    keep_alive = False
                    raw = b""
                else:
                    length = int(headers.get("content-length") or 0)
                    if length > MAX_BODY:
                        status, payload = 413, {"error": {"code": "too_large"}}
                        keep_alive = False
                        raw = b""
                    else:
                        raw = await reader.readexactly(length) if length else b""
                if payload is None:
                    status, payload = await self._handle(method, target, headers, raw)
                if writer.is_closing():
                    return
                body = json.dumps(payload).encode()
                writer.write(
                    (
                        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n"
                        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
                        "\r\n"
                    ).encode()
                    + body
                )
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, method, target, headers, raw) -> tuple[int, dict]:
        counted = not target.startswith("/_control")
        if counted:
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["max_in_flight"] = max(
                self.stats["max_in_flight"], self.stats["in_flight"]
            )
        try:
            return 200, await self._dispatch(method, target, headers, raw)
        except HTTPError as exc:
            return exc.status, exc.body
        except Exception:
            logger.exception("simulator: handler error on %s %s", method, target)
            return 500, {"error": {"code": "internal"}}
        finally:
            if counted:
                self.stats["in_flight"] -= 1


async def serve(host: str, port: int, simulator: Simulator) -> None:
    await simulator.start(host, port)
    logger.info("gateway simulator listening on %s:%s", host, simulator.port)
    while True:
        await asyncio.sleep(3600)


class SimulatorThread:
    """Run a simulator on its own event loop in a daemon thread (tests, drills)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs):
        self.simulator = Simulator(**knobs)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.simulator.start(host, port))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(
            target=run, name="gateway-simulator", daemon=True
        )
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("simulator did not start")
        self.url = f"http://{host}:{self.simulator.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            if self.simulator._server is not None:
                self.simulator._server.close()
            for writer in list(self.simulator._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
