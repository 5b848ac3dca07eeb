"""HTTP adapter for the acquirer simulator's protocol (gateways/simulator/server.py)."""

import json
import queue
import socket
from datetime import datetime
from urllib.parse import quote, urlencode, urlsplit

from gateways.base import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from gateways.error_codes import ErrorCode
from gateways.exceptions import RequestRejected, RetryableSafe, UnknownOutcome


def _result(data: dict) -> ChargeResult:
    return ChargeResult(
        status=data["status"],
        reference=data["id"],
        decline_code=data.get("decline_code", ""),
        amount=data["amount"],
        currency=data["currency"],
    )


class ProtocolError(Exception):
    """The simulator's answer was not the HTTP/1.1 it speaks."""


class Disconnected(ConnectionResetError):
    """The connection closed before any byte of an answer (a kept-alive
    connection the server had already closed looks like this)."""


_MAX_HEAD = 16 * 1024
_MAX_BODY = 256 * 1024 * 1024  # the charge log of a few million payments


def _request_bytes(
    host: str, port: int, method: str, path: str, body: bytes, headers: dict
) -> bytes:
    """One request, head and body; a header value that could split it is refused."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid value for header {name}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking the simulator's protocol:
    every answer carries Content-Length (server.py never chunks).

    http.client writes headers one call at a time and parses the answer's
    through the email package, general work this fixed protocol does not
    need; this writes the request in one ``sendall`` and reads the status
    line, two headers and the body.
    """

    def __init__(self, host: str, port: int, connect_timeout: float):
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> None:
        sock = socket.create_connection(
            (self.host, self.port), timeout=self.connect_timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self._buf = sock, b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self._buf = None, b""

    def exchange(self, request: bytes, read_timeout: float) -> tuple[int, bytes, bool]:
        """(status, body, whether the server closes the connection after it)."""
        sock = self.sock
        sock.settimeout(read_timeout)
        sock.sendall(request)
        data = self._buf
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > _MAX_HEAD:
                raise ProtocolError("response head too long")
            chunk = sock.recv(65536)
            if not chunk:
                if data:
                    raise ProtocolError("connection closed inside the response head")
                raise Disconnected("connection closed before any answer")
            data += chunk
        head, data = data[:end].decode("latin-1").split("\r\n"), data[end + 4 :]
        version, _, rest = head[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ProtocolError(f"bad status line {head[0][:40]!r}")
        length, close = None, version != "HTTP/1.1"
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                if not value.strip().isdigit():
                    raise ProtocolError("bad Content-Length")
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                raise ProtocolError("transfer-encoding is not the simulator's")
        if length is None or length > _MAX_BODY:
            raise ProtocolError("no usable Content-Length")
        if len(data) >= length:
            self._buf = data[length:]
            return int(code), data[:length], close
        # The rest straight into one buffer (the charge log can run to
        # megabytes): no copy per piece received.
        body = bytearray(length)
        body[: len(data)] = data
        view, got = memoryview(body), len(data)
        while got < length:
            n = sock.recv_into(view[got:])
            if not n:
                raise ProtocolError("connection closed inside the response body")
            got += n
        self._buf = b""
        return int(code), bytes(body), close


class _Pool:
    """Idle keep-alive connections, most recently used first.

    One connection per in-flight call: a pool shared under one lock (httpx's)
    makes 64+ threads contend for it on every charge, and that contention,
    not the network, capped a worker's charge rate.
    """

    def __init__(self, host: str, port: int, connect_timeout: float, size: int):
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.idle: queue.LifoQueue[_Connection] = queue.LifoQueue(size)

    def get(self) -> tuple[_Connection, bool]:
        """A connection and whether it was reused (may have gone stale)."""
        try:
            return self.idle.get_nowait(), True
        except queue.Empty:
            return _Connection(self.host, self.port, self.connect_timeout), False

    def put(self, conn: _Connection) -> None:
        try:
            self.idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


# A reused keep-alive connection the server had already closed fails like this
# (Disconnected is a ConnectionResetError) before any answer; the request is
# sent again on a fresh connection with the same idempotency key, so the
# gateway applies it at most once.
_STALE = (BrokenPipeError, ConnectionResetError)


class SimulatorGateway:
    """Pooled keep-alive client; errors classified by what they prove.

    Not sent (connect refused/timed out): RetryableSafe. Sent but no answer
    (read timeout, dropped connection): UnknownOutcome. 5xx saying
    ``processed: false``: RetryableSafe; any other 5xx: UnknownOutcome. A
    request re-sent after a kept connection closed under it proves nothing
    by failing again: the first send may have been applied (UnknownOutcome).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
    ):
        self.name = name
        self.base_url = base_url
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{name}: simulator URL must be http://host:port")
        self.read_timeout = read_timeout
        self.pool = _Pool(
            parts.hostname, parts.port or 80, connect_timeout, max(1, pool_size)
        )

    def close(self) -> None:
        self.pool.close()

    def _exchange(self, method: str, path: str, payload: bytes | None, headers: dict):
        request = _request_bytes(
            self.pool.host, self.pool.port, method, path, payload or b"", headers
        )
        for attempt in (1, 2):
            conn, reused = self.pool.get()
            try:
                if conn.sock is None:
                    try:
                        conn.connect()
                    except OSError as exc:
                        if attempt == 2:
                            # The first attempt went out on a kept connection
                            # the server closed: it may have been applied
                            # before the close (found by `make drill`).
                            raise UnknownOutcome(
                                f"{self.name}: no answer after send, then "
                                f"not sent again ({type(exc).__name__})"
                            ) from exc
                        raise RetryableSafe(
                            f"{self.name}: not sent ({type(exc).__name__})",
                            code=ErrorCode.NOT_SENT,
                        ) from exc
                status, raw, will_close = conn.exchange(request, self.read_timeout)
            except (RetryableSafe, UnknownOutcome):
                conn.close()
                raise
            except _STALE as exc:
                conn.close()
                if reused and attempt == 1:
                    continue
                raise UnknownOutcome(
                    f"{self.name}: no answer after send ({type(exc).__name__})"
                ) from exc
            except (OSError, ProtocolError) as exc:
                conn.close()
                raise UnknownOutcome(
                    f"{self.name}: no answer after send ({type(exc).__name__})"
                ) from exc
            if will_close:
                conn.close()
            else:
                self.pool.put(conn)
            return status, raw, attempt == 2
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, *, key: str = "", body=None, params=None):
        headers = {"Idempotency-Key": key} if key else {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if params:
            path = f"{path}?{urlencode(params)}"
        status, raw, resent = self._exchange(method, path, payload, headers)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status >= 500:
            code = _error_code(data)
            # "Not processed" speaks for this request only: after a resend
            # the first one may have been applied (the simulator refuses an
            # outage before it looks the key up), so nothing is proven.
            if (
                isinstance(data, dict)
                and data.get("processed") is False
                and not (resent and method == "POST")
            ):
                raise RetryableSafe(
                    f"{self.name}: {status} not processed ({code})", code=code
                )
            raise UnknownOutcome(f"{self.name}: {status} without a verdict ({code})")
        if status == 200 and isinstance(data, dict):
            return data
        if status == 404 and method == "GET":
            return None
        if 400 <= status < 500:
            code = _error_code(data)
            raise RequestRejected(f"{self.name}: {status} ({code})", code=code)
        raise UnknownOutcome(f"{self.name}: unexpected answer {status}")

    def charge(self, req: ChargeRequest) -> ChargeResult:
        card = req.card
        data = self._send(
            "POST",
            "/v1/charges",
            key=req.idempotency_key,
            body={
                "payment_id": req.payment_id,
                "merchant_id": req.merchant_id,
                "amount": req.amount,
                "currency": req.currency,
                "card": {
                    "number": card.pan,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            },
        )
        return _result(data)

    def inquire(self, idempotency_key: str) -> ChargeResult | None:
        data = self._send("GET", f"/v1/charges/{quote(idempotency_key, safe='')}")
        return None if data is None else _result(data)

    def refund(self, req: RefundRequest) -> RefundResult:
        data = self._send(
            "POST",
            "/v1/refunds",
            key=req.idempotency_key,
            body={
                "charge": req.charge_reference,
                "amount": req.amount,
                "currency": req.currency,
            },
        )
        return RefundResult(status=data["status"], reference=data["id"])

    def records(self, since: datetime | None = None) -> list[dict]:
        params = {"since": str(since.timestamp())} if since else None
        data = self._send("GET", "/v1/records", params=params)
        out = []
        for r in (data or {}).get("data", []):
            out.append(
                {
                    "kind": r["kind"],
                    "idempotency_key": r["idempotency_key"],
                    "reference": r["id"],
                    "payment_id": r.get("payment_id", ""),
                    "amount": r["amount"],
                    "currency": r["currency"],
                    "status": r["status"],
                }
            )
        return out


def _error_code(data: object) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("code", "unknown"))
    return "unknown"
