"""The SSRF guard: registration and every delivery refuse internal addresses,
connect to the address checked (Host and TLS name kept), follow no redirect.

No test sends a packet off this machine: other names come from a fake
resolver (``dns``), a refused address is refused before any connection, and
the receivers listen on loopback.
"""

import datetime as dt
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook

from payments.models import WebhookDelivery, WebhookEndpoint
from payments.services import webhooks
from payments.services.webhooks import delivery, egress
from tests.payments.webhook_helpers import (
    Receiver,
    emit,
    endpoint_for,
    make_payment,
    run,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("webhook_settings", "in_test_transaction"),
]

# One address per refused class, in IPv4, IPv6 and IPv6 forms of IPv4.
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.0.10", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("fd12:3456::1", "private"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "cloud metadata"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("192.0.2.10", "private"),  # documentation range: not public
]


@pytest.fixture
def guard_on(settings, webhook_settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []


def _host(headers: dict) -> str:
    return {k.lower(): v for k, v in headers.items()}["host"]


def _url(address: str, port: int = 8443) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}:{port}/hooks"


# --- The address checker -----------------------------------------------------


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_each_internal_address_class_is_refused(guard_on, address, kind):
    assert kind in egress.refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(guard_on, address):
    assert egress.refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_let_loopback_through_but_never_metadata(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "169.254.0.0/16", "::1/128"]
    assert egress.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert egress.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert egress.refusal(ipaddress.ip_address("::1")) is None
    assert egress.refusal(ipaddress.ip_address("169.254.1.1")) is None
    assert "metadata" in egress.refusal(ipaddress.ip_address("169.254.169.254"))
    assert "private" in egress.refusal(ipaddress.ip_address("10.0.0.1"))


def test_a_literal_address_is_named_as_such(guard_on):
    with pytest.raises(egress.EgressRefused) as refused:
        egress.check("https://[::ffff:10.0.0.1]/hooks")
    assert refused.value.reason == "is a private address"


def test_a_name_is_refused_if_any_of_its_addresses_is(guard_on, dns):
    dns.names["mixed.test"] = ["93.184.215.14", "10.0.0.7"]
    with pytest.raises(
        egress.EgressRefused, match=r"mixed\.test resolves to 10\.0\.0\.7"
    ):
        egress.check("https://mixed.test/hooks")


def test_the_checked_target_keeps_the_name_for_host_and_tls(guard_on, dns):
    dns.names["shop.test"] = ["93.184.215.14"]
    target = egress.check("https://shop.test:8443/hooks?x=1")
    assert target.url == "https://93.184.215.14:8443/hooks?x=1"
    assert target.host_header == "shop.test:8443"
    assert target.server_name == "shop.test"
    dns.names["v6.test"] = ["2606:4700::1111"]
    target = egress.check("http://v6.test/")
    assert target.url == "http://[2606:4700::1111]/"
    assert (target.host_header, target.server_name) == ("v6.test", None)


# --- At registration -----------------------------------------------------------


def _create(api, url, key="we-guard"):
    return api.post(
        "/v1/webhook_endpoints",
        data={"url": url},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_registration_refuses_each_class_by_literal_and_by_name(
    api, guard_on, dns, address, kind
):
    dns.names["internal.test"] = [address]
    for i, url in enumerate([_url(address), "https://internal.test/hooks"]):
        resp = _create(api, url, key=f"k{i}")
        assert resp.status_code == 400, resp.content
        error = resp.json()["error"]
        assert (error["code"], error["param"]) == ("url_address_refused", "url")
        assert kind in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_localhost_is_refused_when_the_allowlist_is_off(api, guard_on):
    resp = _create(api, "http://localhost:9/hooks")
    assert resp.status_code == 400
    assert resp.json()["error"]["message"].startswith(
        "url is refused: its host resolves to 127.0.0.1, a loopback address"
    )
    assert not WebhookEndpoint.objects.exists()


def test_a_name_that_does_not_resolve_is_refused(api, guard_on):
    resp = _create(api, "https://nowhere.invalid/hooks")
    assert resp.status_code == 400
    assert "does not resolve" in resp.json()["error"]["message"]


def test_a_public_name_is_accepted(api, guard_on):
    assert _create(api, "https://example.com/hooks").status_code == 201


# --- At every delivery ---------------------------------------------------------


def _endpoint_at(merchant, url):
    """An endpoint stored as if it had passed registration earlier."""
    endpoint = WebhookEndpoint(
        merchant=merchant, url=url, secret=webhooks.new_secret(), cursor=""
    )
    endpoint.cursor = webhooks.id_at("evt", webhooks.now_ms() - 1, last=True)
    endpoint.save()
    return endpoint


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_a_delivery_to_each_class_is_a_failed_attempt_with_the_reason(
    merchant, guard_on, dns, address, kind
):
    """The endpoint's name now resolves to an internal address (the DNS answer
    changed since registration): the attempt is refused before connecting."""
    dns.names["moved.test"] = [address]
    _endpoint_at(merchant, "https://moved.test/hooks")
    emit(make_payment(merchant), "payment.created")
    assert run()["retrying"] == 1
    attempt = WebhookDelivery.objects.get()
    assert attempt.status == "pending" and attempt.attempts == 1
    shown = ipaddress.ip_address(address)
    assert attempt.last_error.startswith(f"refused: moved.test resolves to {shown}")
    assert kind in attempt.last_error and attempt.last_status_code is None
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.failing_since is not None  # counts as a failure


def test_a_name_resolving_to_loopback_gets_nothing_when_the_allowlist_is_off(
    merchant, receiver, settings
):
    webhooks.webhook_endpoint_create(
        merchant=merchant, url=f"http://localhost:{receiver.port}/hooks"
    )  # allowed while the allowlist lets loopback in
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    emit(make_payment(merchant), "payment.created")
    assert run()["retrying"] == 1
    assert not receiver.requests
    assert WebhookDelivery.objects.get().last_error == (
        "refused: localhost resolves to 127.0.0.1, a loopback address"
    )
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert webhooks.deliver_due() == {"succeeded": 1}
    assert len(receiver.requests) == 1


def test_the_request_goes_to_the_checked_address_with_the_original_host(
    merchant, receiver, settings, dns
):
    """DNS rebinding: the name answers 127.0.0.1 when checked, then 127.0.0.2
    (not allowed). The request still reaches 127.0.0.1: nothing resolves the
    name again after the check."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    dns.names["rebind.test"] = [["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"]]
    _, secret = webhooks.webhook_endpoint_create(
        merchant=merchant, url=f"http://rebind.test:{receiver.port}/hooks"
    )  # first answer
    emit(make_payment(merchant), "payment.created")
    assert run()["succeeded"] == 1  # second answer, checked and used
    ((headers, body),) = receiver.requests
    assert _host(headers) == f"rebind.test:{receiver.port}"
    Webhook(secret).verify(body, headers)
    assert dns.asked.count("rebind.test") == 2  # once per check, never by httpx
    emit(make_payment(merchant), "payment.created")
    assert run()["retrying"] == 1  # third answer: 127.0.0.2 is refused
    assert len(receiver.requests) == 1
    last = WebhookDelivery.objects.order_by("-id").first()
    assert "127.0.0.2, a loopback address" in last.last_error


def test_a_redirect_is_not_followed(merchant, receiver):
    elsewhere = Receiver()
    try:
        receiver.codes = [302]
        receiver.reply_headers = {"Location": elsewhere.url}
        endpoint_for(merchant, receiver)
        emit(make_payment(merchant), "payment.created")
        assert run()["retrying"] == 1
        assert len(receiver.requests) == 1 and not elsewhere.requests
        attempt = WebhookDelivery.objects.get()
        assert attempt.last_status_code == 302
        assert attempt.last_error == "HTTP 302 (redirects are not followed)"
    finally:
        elsewhere.close()


# --- HTTPS: the name is the TLS server name and the certificate's -----------


def _certificate_authority():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Surge test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_context(tmp_path, ca_key, ca_cert, dns_name: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp_path / f"{dns_name}.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A CA the delivery client trusts, and receivers with its certificates."""
    ca_key, ca_cert = _certificate_authority()
    client = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    monkeypatch.setattr(delivery._Clients, "verify", client)
    made = []

    def receiver_for(dns_name):
        r = Receiver(ssl_context=_server_context(tmp_path, ca_key, ca_cert, dns_name))
        made.append(r)
        return r

    yield receiver_for
    for r in made:
        r.close()


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_cert(
    merchant, dns, tls
):
    server = tls("hooks.shop.test")
    dns.names["hooks.shop.test"] = ["127.0.0.1"]
    url = f"https://hooks.shop.test:{server.port}/hooks"
    _, secret = webhooks.webhook_endpoint_create(merchant=merchant, url=url)
    emit(make_payment(merchant), "payment.created")
    assert run()["succeeded"] == 1
    ((headers, body),) = server.requests
    assert server.server_names == ["hooks.shop.test"]
    assert _host(headers) == f"hooks.shop.test:{server.port}"
    Webhook(secret).verify(body, headers)


def test_https_refuses_a_certificate_for_another_name(merchant, dns, tls):
    """The address is checked, but the server there must still prove the name."""
    impostor = tls("other.test")
    dns.names["hooks.shop.test"] = ["127.0.0.1"]
    webhooks.webhook_endpoint_create(
        merchant=merchant, url=f"https://hooks.shop.test:{impostor.port}/hooks"
    )
    emit(make_payment(merchant), "payment.created")
    assert run()["retrying"] == 1
    assert not impostor.requests
    assert WebhookDelivery.objects.get().last_error == "ConnectError"
