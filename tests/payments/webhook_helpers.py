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
    queued status codes (then 200), ``reply_body`` and ``reply_headers``."""

    def __init__(self, ssl_context=None):
        self.requests: list[tuple[dict, bytes]] = []
        self.codes: list[int] = []
        self.reply_body = b"ok"
        self.reply_headers: dict[str, str] = {}
        self.server_names: list[str | None] = []  # TLS SNI seen, per handshake
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                for name, value in receiver.reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.reply_body)))
                self.end_headers()
                self.wfile.write(receiver.reply_body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        if ssl_context is not None:
            ssl_context.sni_callback = lambda sock, name, ctx: (
                receiver.server_names.append(name)
            )
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True
            )
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hooks"
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
