"""Shared by the webhook tests: a real HTTP receiver and test settings."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

from payments.models import Payment
from payments.services import webhooks
from payments.services.events import events_insert
from tests.factories import TokenFactory


class Receiver:
    """A merchant's webhook endpoint: records every request, answers with the
    queued status codes (then 200)."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.codes: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.02,), daemon=True
        )
        self.thread.start()

    def events(self, secret: str) -> list[dict]:
        """Every received body, verified with the endpoint's secret."""
        return [
            Webhook(secret).verify(body, headers) for headers, body in self.requests
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_payment(merchant) -> Payment:
    return Payment.objects.create(
        merchant=merchant,
        amount=1234,
        currency="usd",
        source=TokenFactory(merchant_id=merchant.id),
    )


def emit(payment, *types) -> None:
    for event_type in types:
        events_insert(event_type, [(payment.merchant_id, payment.pk, {"status": "x"})])


def run() -> dict:
    time.sleep(0.003)  # the horizon is exclusive of the current millisecond
    return webhooks.run_once()


def endpoint_for(merchant, receiver, **kwargs):
    return webhooks.webhook_endpoint_create(
        merchant=merchant, url=receiver.url, **kwargs
    )
