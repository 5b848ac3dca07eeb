"""HTTP adapter for the acquirer simulator's protocol (gateways/simulator/server.py)."""

from datetime import datetime
from urllib.parse import quote

import httpx

from gateways.base import ChargeRequest, ChargeResult, RefundRequest, RefundResult
from gateways.exceptions import RequestRejected, RetryableSafe, UnknownOutcome


def _result(data: dict) -> ChargeResult:
    return ChargeResult(
        status=data["status"],
        reference=data["id"],
        decline_code=data.get("decline_code", ""),
        amount=data["amount"],
        currency=data["currency"],
    )


class SimulatorGateway:
    """Pooled keep-alive client; errors classified by what they prove.

    Not sent (connect refused/timed out, no pool slot): RetryableSafe. Sent but
    no answer (read timeout, dropped connection): UnknownOutcome. 5xx saying
    ``processed: false``: RetryableSafe; any other 5xx: UnknownOutcome.
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
        self.client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=read_timeout,
            ),
            limits=httpx.Limits(
                max_connections=pool_size,
                max_keepalive_connections=pool_size,
                keepalive_expiry=30,
            ),
        )

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, path: str, *, key: str = "", body=None, params=None):
        headers = {"Idempotency-Key": key} if key else None
        try:
            response = self.client.request(
                method, path, json=body, headers=headers, params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableSafe(
                f"{self.name}: not sent ({type(exc).__name__})", code="not_sent"
            ) from exc
        except httpx.TransportError as exc:
            raise UnknownOutcome(
                f"{self.name}: no answer after send ({type(exc).__name__})"
            ) from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        status = response.status_code
        if status >= 500:
            code = _error_code(data)
            if isinstance(data, dict) and data.get("processed") is False:
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
