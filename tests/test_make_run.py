"""`make run` as a newcomer runs it: a fresh copy of the checkout, no Surge
configuration, the production servers on the embedded PostgreSQL, one Ctrl-C.

The copy holds this checkout's files as they are on disk (committed or not)
and a symlink to this venv, so `make venv` finds it installed. SURGE_PORT is
the one setting given: port 8000 may be taken on a shared machine (another
checkout's make run, another suite), and the test must not depend on it. The embedded PostgreSQL listens on a Unix socket
in the copy's var/, never on a port of the machine's own servers.
"""

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import psutil
import psycopg
import pytest

from config.embedded_db import EmbeddedPostgres
from tests.stack import ROOT, free_port, wait_until

# Configuration a newcomer does not have; the suite's own runs set these.
NOT_A_NEWCOMERS = re.compile(
    r"^(SURGE_|DATABASE_|REDIS_|CELERY_|TEST_DATABASE|PROMETHEUS_|DJANGO_|VAULT_"
    r"|GATEWAY_|WEBHOOK_|CONN_|SECRET_KEY$|DEBUG$|ALLOWED_HOSTS$|LOG_LEVEL$"
    r"|MAKE|MFLAGS$|PYTEST_)"
)


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def _port_outside_the_ephemeral_range() -> int:
    """A free port the kernel hands to no bind(0) or outgoing connection, so
    no other test takes it while make run boots (it is given before)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 10000), low), 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class MadeRun:
    """`make run` in a copy of the checkout, its output in a file."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="surge-make-run-"))
        self.checkout = self.tmp / "surge"
        self.port = _port_outside_the_ephemeral_range()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.tmp / "make-run.log"
        self.proc: subprocess.Popen | None = None

    def copy_checkout(self) -> None:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, listed):
            source = ROOT / name
            if source.is_file():  # listed but deleted on disk: not in the copy
                target = self.checkout / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)  # mtimes kept: the venv stays current
        (self.checkout / ".venv").symlink_to(sys.prefix)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not NOT_A_NEWCOMERS.match(k)}
        env["SURGE_PORT"] = str(self.port)
        self.proc = subprocess.Popen(
            ["make", "run"], cwd=self.checkout, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal of its own, for its Ctrl-C
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def docs_up(self) -> bool:
        assert self.proc.poll() is None, f"make run ended:\n{self.output()[-4000:]}"
        if f"Listening at: {self.url}" not in self.output():
            return False  # not our web server yet, whatever answers there
        try:
            return httpx.get(f"{self.url}/v1/docs", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def pgdata(self) -> Path:
        return self.checkout / "var" / "postgres"

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
            return None

    def processes(self) -> list[psutil.Process]:
        """Every process of the stack: make's descendants, and PostgreSQL's
        (pg_ctl detaches the server from make run's session)."""
        found = []
        for root in (psutil.Process(self.proc.pid), self.postmaster()):
            if root is not None:
                found += [root, *root.children(recursive=True)]
        return found

    def strays(self) -> list[psutil.Process]:
        """Processes running from the copy, whoever their parent is now."""
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
            if str(self.tmp) in cmdline or cwd.startswith(str(self.tmp)):
                found.append(proc)
        return found

    def ctrl_c(self) -> None:
        """What a terminal does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def clean_up(self) -> None:
        if self.log.exists():  # shown with a failure
            print(
                "make run's output, last lines:",
                *self.output()[-8000:].splitlines()[-80:],
                sep="\n",
            )
        if self.proc is not None and self.proc.poll() is None:
            self.ctrl_c()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.postmaster() is not None:
            EmbeddedPostgres(self.checkout / "var").stop()
        for proc in self.strays():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _command(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):  # ended, or a zombie not yet reaped
        return " ".join(proc.cmdline())
    return ""


@pytest.fixture(scope="module")
def made_run():
    run = MadeRun()
    try:
        run.copy_checkout()
        run.start()
        wait_until(run.docs_up, timeout=90, interval=0.5)
        yield run
    finally:
        run.clean_up()


@pytest.fixture(scope="module")
def demo_key(made_run):
    """The key `make run` prints for the demo merchant."""
    [key] = re.findall(r"export SURGE_KEY=(\S+)", made_run.output())
    return key


def test_docs_page_and_every_asset_it_references_answer_200(made_run):
    page = httpx.get(f"{made_run.url}/v1/docs", timeout=10)
    assert page.status_code == 200
    parser = _Assets()
    parser.feed(page.text)
    urls = {urljoin(f"{made_run.url}/v1/docs", url) for url in parser.urls}
    assert any("/static/" in url for url in urls), urls
    urls.add(f"{made_run.url}/v1/schema")  # what the page's script loads
    for url in sorted(urls):
        assert urlsplit(url).netloc == f"127.0.0.1:{made_run.port}", url  # offline
        assert httpx.get(url, timeout=10).status_code == 200, url


def test_a_payment_with_the_4242_card_settles(made_run, demo_key):
    api = httpx.Client(
        base_url=made_run.url,
        headers={"Authorization": f"Bearer {demo_key}"},
        timeout=10,
    )
    token = api.post(
        "/v1/tokens",
        json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2040,
              "cvc": "123"},
    )  # fmt: skip
    assert token.status_code == 201, token.text
    payment = api.post(
        "/v1/payments",
        json={"amount": 1250, "currency": "usd", "source": token.json()["id"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert payment.status_code == 202, payment.text
    url = f"/v1/payments/{payment.json()['id']}"
    wait_until(
        lambda: api.get(url).json()["status"] == "settled", timeout=45, interval=0.5
    )


def test_the_embedded_database_refuses_an_unbalanced_entry(made_run):
    """Its triggers are production's: the check runs at commit."""
    with psycopg.connect(
        host=str(made_run.pgdata), user="postgres", dbname="surge", autocommit=True
    ) as conn:
        [(receivable,), (payable,)] = conn.execute(
            "INSERT INTO ledger_account (code, type, currency, no_overdraft, balance) "
            "VALUES ('make-run:asset', 'asset', 'usd', false, 0), "
            "('make-run:liability', 'liability', 'usd', false, 0) RETURNING id"
        ).fetchall()
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            with conn.transaction():
                [(entry,)] = conn.execute(
                    "INSERT INTO ledger_journalentry (kind, reference) "
                    "VALUES ('manual', 'make-run-unbalanced') RETURNING id"
                ).fetchall()
                for account, amount, direction in (
                    (receivable, 100, "debit"),
                    (payable, 99, "credit"),
                ):
                    conn.execute(
                        "INSERT INTO ledger_posting (entry_id, account_id, amount, "
                        "direction, currency) VALUES (%s, %s, %s, %s, 'usd')",
                        [entry, account, amount, direction],
                    )
        left = conn.execute(
            "SELECT count(*) FROM ledger_journalentry "
            "WHERE reference = 'make-run-unbalanced'"
        ).fetchone()
        assert left == (0,)


def test_ctrl_c_stops_every_process_postgres_included(made_run):
    processes = made_run.processes()
    names = " ".join(map(_command, processes))
    for program in ("granian", "celery", "run_relay", "beat", "postgres"):
        assert program in names, names
    made_run.ctrl_c()
    made_run.proc.wait(60)
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []
    assert made_run.strays() == []
    assert not (made_run.pgdata / "postmaster.pid").exists()
    assert "Stopping the embedded PostgreSQL" in made_run.output()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{made_run.url}/v1/docs", timeout=2)
