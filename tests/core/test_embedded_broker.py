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


def _visible_while_encoding(transport_module, channel_class, tmp_path):
    """The message files a consumer could list while the message is encoded
    (kombu's transport encodes after creating the file, ours before)."""
    folder = tmp_path / channel_class.__module__
    folder.mkdir()
    channel = object.__new__(channel_class)
    channel.__dict__["data_folder_out"] = str(folder)
    seen = []
    real = transport_module.dumps

    def dumps(payload):
        seen.extend(p.name for p in folder.iterdir() if p.name.endswith(".msg"))
        return real(payload)

    transport_module.dumps = dumps
    try:
        channel._put("validate", {"body": "x" * 1000})
    finally:
        transport_module.dumps = real
    return seen, folder


def test_a_message_is_never_seen_half_written(tmp_path):
    """A consumer listing the folder while a message is written finds nothing
    or the whole message: kombu's own transport showed it an empty file, and
    the worker exited."""
    from kombu.transport import filesystem

    from core import fsbroker

    theirs, _ = _visible_while_encoding(filesystem, filesystem.Channel, tmp_path)
    assert theirs, "kombu's transport no longer creates the file first"
    ours, folder = _visible_while_encoding(fsbroker, fsbroker.Channel, tmp_path)
    assert ours == []
    (message,) = folder.iterdir()
    assert message.name.endswith(".validate.msg")
    assert message.read_bytes().startswith(b'{"body": "xxx')


def test_filesystem_means_the_whole_message_transport():
    from kombu.transport import resolve_transport

    from config.celery import app  # noqa: F401  (registers the transport)

    assert resolve_transport("filesystem").__module__ == "core.fsbroker"
