"""A tiny local stand-in for the Stripe API: just what the adapter calls.

PaymentIntents (create with confirm, search by metadata, list), refunds,
Idempotency-Key replay, and card errors for the test cards.
"""

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from gateways import testcards


def _nest(pairs: list[tuple[str, str]]) -> dict:
    """``a[b][c]=v`` form fields into nested dicts."""
    out: dict = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class FakeStripe:
    def __init__(self):
        self.intents: dict[str, dict] = {}
        self.replays: dict[str, tuple[int, dict]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                url = urlsplit(self.path)
                fake.requests.append(f"GET {url.path}")
                query = dict(parse_qsl(url.query))
                if url.path == "/v1/payment_intents/search":
                    m = re.search(r"metadata\['(\w+)'\]:'([^']*)'", query["query"])
                    data = [
                        i for i in fake.intents.values()
                        if i["metadata"].get(m.group(1)) == m.group(2)
                    ]  # fmt: skip
                    return self._send(200, {"object": "search_result", "data": data,
                                            "has_more": False, "url": url.path})  # fmt: skip
                if url.path == "/v1/payment_intents":
                    return self._send(200, {"object": "list", "url": url.path,
                                            "data": list(fake.intents.values()),
                                            "has_more": False})  # fmt: skip
                self._send(404, {"error": {"type": "invalid_request_error"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = _nest(parse_qsl(self.rfile.read(length).decode()))
                path = urlsplit(self.path).path
                fake.requests.append(f"POST {path}")
                key = self.headers.get("Idempotency-Key")
                if key and key in fake.replays:
                    return self._send(*fake.replays[key])
                if path == "/v1/payment_intents":
                    status, body = fake.create_intent(form)
                elif path == "/v1/refunds":
                    status, body = 200, {
                        "id": f"re_{uuid.uuid4().hex[:14]}", "object": "refund",
                        "amount": int(form["amount"]), "status": "succeeded",
                        "payment_intent": form["payment_intent"],
                    }  # fmt: skip
                else:
                    status, body = 404, {"error": {"type": "invalid_request_error"}}
                if key:
                    fake.replays[key] = (status, body)
                self._send(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def create_intent(self, form: dict) -> tuple[int, dict]:
        card = form["payment_method_data"]["card"]
        verdict = testcards.outcome(
            card["number"], int(card["exp_month"]), int(card["exp_year"])
        )
        intent = {
            "id": f"pi_{uuid.uuid4().hex[:14]}", "object": "payment_intent",
            "amount": int(form["amount"]), "currency": form["currency"],
            "metadata": form.get("metadata", {}), "created": int(time.time()),
            "status": "succeeded", "last_payment_error": None,
        }  # fmt: skip
        if verdict == "processing_error":
            return 500, {"error": {"type": "api_error", "message": "Try again."}}
        self.intents[intent["id"]] = intent
        if verdict == "succeeded":
            return 200, intent
        error = {"type": "card_error", "code": "card_declined",
                 "decline_code": verdict, "message": "Your card was declined."}  # fmt: skip
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = error
        return 402, {"error": {**error, "payment_intent": intent}}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
