"""`make run`'s embedded broker keeps all of its files under the var directory."""

import os
import subprocess
import sys

from tests.stack import ROOT


def test_a_published_task_leaves_nothing_in_the_working_directory(tmp_path):
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("CELERY_BROKER_URL", "DATABASE_URL")
    }
    env.update(
        SURGE_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    code = (
        "import django; django.setup()\n"
        "from config.celery import app\n"
        "from payments.services.handoff import publish\n"
        "assert app.conf.broker_url == 'filesystem://', app.conf.broker_url\n"
        "publish('validate', ['pay_x'])\n"
    )
    work = tmp_path / "cwd"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=work, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert list(work.iterdir()) == []  # kombu's default ./control is not used
    broker = tmp_path / "var" / "broker"
    assert (broker / "control" / "validate.exchange").exists()
    assert list((broker / "out").glob("*.validate.msg"))
