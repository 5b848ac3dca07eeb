"""The dead-letter admin in a real browser against the real stack.

Headless Chromium (Debian's ``chromium``, driven through Playwright's Python
package; ``make test`` installs it when missing) talks to a live server, while
a Celery worker, the relay and the gateway simulator run as processes. A
payment fails because its gateway is down; once the gateway is back, a
``payments_ops`` user opens the dead letter, retries it and watches the
payment settle; a ``support`` user then sees the same page with no action
offered. A screenshot of each step is saved under the test's tmp_path.
"""

import json
import urllib.request
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.admin.utils import quote
from playwright.sync_api import Page, sync_playwright

from payments.models import AuditLog, DeadLetter, Payment
from payments.services.keys import api_key_create
from tests.factories import MerchantFactory, card_token
from tests.payments.admin_helpers import PASSWORD, operator
from tests.stack import Stack, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1600, "height": 1000}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def stack(transactional_db, tmp_path):
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    s = Stack(tmp_path)
    yield s
    s.stop_all()


def simulator_charges(port: int, payment_id: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/v1/records"
    with urllib.request.urlopen(url, timeout=10) as resp:
        rows = json.loads(resp.read())["data"]
    return [r for r in rows if r["kind"] == "charge" and r["payment_id"] == payment_id]


def sign_in(page: Page, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def test_ops_retries_a_dead_letter_in_a_browser_and_support_only_looks(
    stack, live_server, client_for, tmp_path
):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # A payment whose gateway is down: refused before processing on every
    # try, so provably not charged; it fails with a dead letter.
    port = free_port()
    stack.env["GATEWAY_SIMULATOR_URLS"] = f"simulator=http://127.0.0.1:{port}"
    merchant = MerchantFactory(primary_gateway="simulator")
    _, secret = api_key_create(merchant=merchant)
    resp = client_for(secret).post(
        "/v1/payments",
        data={"amount": 4200, "currency": "usd", "source": card_token(merchant).id},
        format="json",
        HTTP_IDEMPOTENCY_KEY="browser-1",
    )
    assert resp.status_code == 202, resp.content
    payment_id = resp.json()["id"]
    stack.worker(concurrency=2)
    stack.relay()
    letter = wait_until(
        lambda: DeadLetter.objects.filter(payment_id=payment_id).first(), timeout=30
    )
    payment = Payment.objects.get(pk=payment_id)
    assert (payment.status, payment.failure_code) == ("failed", "gateway_unavailable")
    operator("olga", "payments_ops")
    operator("sam", "support")
    stack.simulator("sim", port)  # the gateway is back

    base = live_server.url
    letter_path = f"/admin/payments/deadletter/{quote(letter.pk)}/change/"
    list_path = "/admin/payments/deadletter/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # 1. payments_ops signs in and finds the open dead letter.
            ops = browser.new_context(viewport=VIEWPORT).new_page()
            sign_in(ops, base, "olga", f"{list_path}?state=open")
            ops.screenshot(path=shots / "1-ops-dead-letters.png", full_page=True)
            # 2. opens it: the failed payment, and the actions ops may take.
            ops.click(f"a[href^='{letter_path}']")
            ops.wait_for_selector("#dead-letter-actions")
            assert "gateway_unavailable" in ops.inner_text(".field-payment_status")
            ops.screenshot(path=shots / "2-ops-dead-letter.png", full_page=True)
            # 3. retries it, and is back on the letter, resolved by the retry.
            ops.click("#dead-letter-actions button[data-action=retry]")
            ops.wait_for_selector(".messagelist .success")
            assert "moved back to validated" in ops.inner_text(".messagelist")
            assert ops.inner_text(".field-state .readonly") == "resolved"
            ops.screenshot(path=shots / "3-ops-retried.png", full_page=True)
            # 4. follows the payment and sees it settle on its page.
            ops.click(".field-payment .readonly a")
            status = ops.locator(".field-status .readonly")
            for _ in range(60):
                if status.inner_text().lower() == "settled":
                    break
                ops.wait_for_timeout(500)
                ops.reload()
            assert status.inner_text().lower() == "settled"
            story = ops.inner_text("#content-main")
            assert "payment.settled" in story and "dead_letter.retry" in story
            assert "4242424242424242" not in ops.content()
            ops.screenshot(path=shots / "4-ops-payment-settled.png", full_page=True)
            # 5. support sees the same page, with no action offered.
            support = browser.new_context(viewport=VIEWPORT).new_page()
            sign_in(support, base, "sam", letter_path)
            assert support.locator("#dead-letter-actions").count() == 0
            assert support.locator("button[data-action]").count() == 0
            assert letter.pk in support.inner_text("#content-main")
            support.screenshot(path=shots / "5-support-dead-letter.png", full_page=True)
            support.goto(f"{base}{list_path}")
            assert support.locator("select[name=action]").count() == 0
            support.screenshot(
                path=shots / "6-support-dead-letters.png", full_page=True
            )
        finally:
            browser.close()

    payment.refresh_from_db()
    assert payment.status == "settled"
    assert len(simulator_charges(port, payment_id)) == 1  # charged once
    log = AuditLog.objects.get(action="dead_letter.retry")
    assert (log.actor, log.object_id, log.payment_id) == ("olga", letter.pk, payment_id)
    names = sorted(path.name for path in shots.iterdir())
    assert len(names) == 6 and all((shots / n).stat().st_size > 1000 for n in names)
