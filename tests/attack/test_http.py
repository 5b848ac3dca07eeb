"""The input limits on the wire: the product's web server (granian, as the
Procfile and the Dockerfile run it) serving the application,
spoken to over a raw socket, where a client can send what no HTTP library
would (a body it never finishes, a CR inside a header)."""

import json
import socket
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.attack.world import changed, db_state, make_world
from tests.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

GRANIAN = str(Path(sys.executable).with_name("granian"))


@pytest.fixture
def web(tmp_path):
    stack = Stack(tmp_path)
    port = free_port()
    stack.start(
        "web", [GRANIAN, "--interface", "wsgi", "--no-ws", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--blocking-threads", "2",
                "config.wsgi:application"],
    )  # fmt: skip

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(up, timeout=30)
        yield port
    finally:
        stack.stop_all()


def _exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send ``head`` and ``body`` (however short of its Content-Length) and read
    the answer without sending more."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(header.split()[1]), rest


def _head(secret: str, length: int, key: bytes = b"live-1") -> bytes:
    return (
        b"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + secret.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Idempotency-Key: " + key + b"\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
    )


def test_an_oversized_body_is_refused_before_it_is_sent(web):
    world = make_world()
    before = db_state()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # Declares 1 byte over the limit, sends 2: the 413 comes back at once.
    status, body = _exchange(web, _head(world.secret, limit + 1), b'{"')
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "body_too_large"
    assert changed(before, db_state()) == []


def test_a_cr_inside_the_idempotency_key_is_refused(web):
    world = make_world()
    body = json.dumps(
        {"amount": 100, "currency": "usd", "source": world.ids["token"]}
    ).encode()
    before = db_state()
    for key in (b"a\rb", b"a\x00b", b"a\x7fb"):
        status, answer = _exchange(web, _head(world.secret, len(body), key), body)
        assert 400 <= status < 500, (key, status, answer)
    assert changed(before, db_state()) == []
    # The same request with a clean key goes through: the refusals were the key's.
    status, answer = _exchange(web, _head(world.secret, len(body), b"a-b"), body)
    assert status == 202, answer
