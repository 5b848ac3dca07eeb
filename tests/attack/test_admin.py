"""The admin: every URL of it (read from its URLconf) sends an anonymous
visitor, and a signed-in user who is not staff, to the login page, and a
POST without a CSRF token is refused; production settings make the admin's
cookies Secure, HttpOnly and SameSite, and a real login over HTTPS under
them sets exactly that. (``manage.py check --deploy`` being clean is
tests/config/test_deploy_settings.py.)"""

import json
import re
import subprocess
import sys

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import URLResolver, reverse
from django.urls.resolvers import RoutePattern

from tests.attack.world import changed, db_state
from tests.config.test_deploy_settings import _key
from tests.stack import ROOT

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password-1"
# A value for every parameter an admin URL takes; the login wall stands in
# front of every view, so the values need not name real objects.
SAMPLES = {
    "object_id": "mer_01KAAAAAAAAAAAAAAAAAAAAAAA",
    "id": "1",  # a user's password form
    "app_label": "payments",
    "content_type_id": "1",
    "url": "nowhere/",
}


def _admin_urls() -> list[str]:
    """One URL per pattern of the admin's URLconf, parameters filled from
    SAMPLES (a KeyError names a parameter it has not met before)."""
    urls = []

    def walk(patterns, prefix):
        for entry in patterns:
            pattern = entry.pattern
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(pattern))
                continue
            kwargs = {n: SAMPLES[n] for n in pattern.regex.groupindex}
            if entry.name:
                urls.append(reverse(f"admin:{entry.name}", kwargs=kwargs))
            elif isinstance(pattern, RoutePattern):  # e.g. <path:object_id>/
                text = str(pattern)
                for name, value in kwargs.items():
                    text = re.sub(rf"<(\w+:)?{name}>", value, text)
                urls.append(prefix + text)
            else:
                assert set(kwargs) == {"url"}, pattern  # the catch-all
                urls.append(prefix + SAMPLES["url"])

    walk(admin.site.urls[0], "/admin/")
    return sorted(set(urls))


ADMIN_URLS = _admin_urls()
LOGIN = "/admin/login/"
LOGOUT = "/admin/logout/"


def _sent_to_login(resp) -> bool:
    return resp.status_code == 302 and resp["Location"].startswith(LOGIN + "?next=")


def test_the_walk_finds_every_model_admin():
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert changelist in ADMIN_URLS


def test_an_anonymous_visitor_is_sent_to_the_login():
    client = Client(enforce_csrf_checks=True)
    for url in ADMIN_URLS:
        resp = client.get(url)
        if url == LOGIN:
            assert resp.status_code == 200
        elif url == LOGOUT:  # to the index, which sends to the login
            assert resp.status_code == 302 and resp["Location"] == "/admin/"
        else:
            assert _sent_to_login(resp), (url, resp.status_code, resp.get("Location"))
        before = db_state()
        post = client.post(
            url, {"action": "delete_selected", "_selected_action": ["x"]}
        )
        assert post.status_code == 403, url  # no CSRF token: refused before any view
        assert changed(before, db_state()) == [], url


def test_a_user_who_is_not_staff_is_refused():
    user = User.objects.create(username="customer", is_staff=False)
    client = Client()
    client.force_login(user)
    for url in ADMIN_URLS:
        if url in (LOGIN, LOGOUT):
            continue
        resp = client.get(url)
        assert _sent_to_login(resp), (url, resp.status_code, resp.get("Location"))
        before = db_state()
        resp = client.post(
            url, {"action": "delete_selected", "_selected_action": ["x"]}
        )
        assert resp.status_code in (302, 403), url
        assert changed(before, db_state()) == [], url


def test_a_staff_post_without_the_csrf_token_is_refused(merchant):
    boss = User.objects.create(username="boss", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)
    url = reverse("admin:payments_merchant_change", args=[merchant.pk])
    assert client.get(url).status_code == 200
    before = db_state()
    resp = client.post(url, {"name": "Renamed"})
    assert resp.status_code == 403
    assert changed(before, db_state()) == []


def _production_settings(tmp_path) -> dict:
    """The cookie and header settings as production loads them."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ("
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
        "'CSRF_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', 'CSRF_COOKIE_SAMESITE', "
        "'SESSION_COOKIE_AGE', 'X_FRAME_OPTIONS', 'SECURE_CONTENT_TYPE_NOSNIFF', "
        "'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'MIDDLEWARE', "
        "'API_MIDDLEWARE', 'BROWSER_PATHS')}))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SURGE_VAR_DIR": str(tmp_path / "var"),
        "SURGE_ENV": "production",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "x" * 60,
        "VAULT_KEYS": f"k1:{_key()}",
        "VAULT_FINGERPRINT_KEY": _key(),
        "DATABASE_URL": "postgres://surge@db.invalid:5432/surge",
        "ALLOWED_HOSTS": "pay.example.com",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_settings_lock_the_admins_cookies_and_forms(tmp_path):
    prod = _production_settings(tmp_path)
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"]
    assert prod["SESSION_COOKIE_HTTPONLY"] and prod["CSRF_COOKIE_HTTPONLY"]
    assert prod["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert prod["CSRF_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert prod["SESSION_COOKIE_AGE"] <= 12 * 3600
    assert prod["X_FRAME_OPTIONS"] == "DENY" and prod["SECURE_CONTENT_TYPE_NOSNIFF"]
    assert prod["SECURE_SSL_REDIRECT"] and prod["SECURE_HSTS_SECONDS"] >= 31_536_000
    # The admin's stack checks CSRF and sessions; the API's has no cookies at all.
    assert "django.middleware.csrf.CsrfViewMiddleware" in prod["MIDDLEWARE"]
    assert not any("session" in m or "csrf" in m for m in prod["API_MIDDLEWARE"])
    assert prod["BROWSER_PATHS"] == ["/admin"]

    # A real login over HTTPS under those settings: the cookies carry them.
    User.objects.create_superuser("boss", "b@example.com", PASSWORD)
    cookie_settings = {
        k: v for k, v in prod.items() if "COOKIE" in k or k == "X_FRAME_OPTIONS"
    }
    with override_settings(**cookie_settings):
        client = Client(enforce_csrf_checks=True)
        page = client.get(LOGIN, secure=True)
        assert page["X-Frame-Options"] == "DENY"
        token = page.context["csrf_token"]
        resp = client.post(
            LOGIN,
            {
                "username": "boss",
                "password": PASSWORD,
                "csrfmiddlewaretoken": str(token),
            },
            secure=True,
            HTTP_REFERER="https://testserver/admin/login/",
        )
        assert resp.status_code == 302, resp.content[:300]
        for name in ("sessionid", "csrftoken"):
            cookie = client.cookies[name]
            assert cookie["secure"] and cookie["httponly"], (name, cookie.output())
            assert cookie["samesite"] in ("Lax", "Strict"), cookie.output()
        assert int(client.cookies["sessionid"]["max-age"]) == prod["SESSION_COOKIE_AGE"]
