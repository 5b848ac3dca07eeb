"""Celery processes hand the heap that finished work freed back to the OS.

Threads that allocate get glibc arenas of their own, and what they free stays
in the process's RSS until ``malloc_trim`` returns it. Each real test leaves
a freshly started interpreter with ~50 MB freed across eight threads' arenas.
"""

import subprocess
import sys

from core.memory import HeapTrimmer
from tests.stack import ROOT

_FRAGMENT = """
import threading

def rss_kb():
    return int(open("/proc/self/statm").read().split()[1]) * 4

kept = []
start = rss_kb()
all_started = threading.Barrier(8)  # alive together: an arena each, none reused

def fragment():
    all_started.wait()
    junk = [bytes(2000) + str(i).encode() for i in range(10_000)]
    kept.append(junk[::50])  # one block in fifty stays: pages stay half-used

threads = [threading.Thread(target=fragment) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
before = rss_kb()
"""


def _rss(code: str, setup: str = "") -> tuple[int, int, int]:
    """RSS in kB: at the start, with the heap fragmented, after ``code``."""
    program = setup + _FRAGMENT + code + "\nprint(start, before, rss_kb())"
    out = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    start, before, after = out.stdout.split()[-3:]
    return int(start), int(before), int(after)


def test_freed_heap_stays_in_rss_without_a_trim():
    start, before, after = _rss("")
    # ~3 MB is still held; tens of MB freed by the threads stay resident.
    assert before - start > 30_000, (start, before)
    assert after > before * 0.9


def test_a_trim_gives_the_freed_heap_back():
    _, before, after = _rss(
        "from core.memory import HeapTrimmer\nassert HeapTrimmer(5).maybe_trim()"
    )
    assert before - after > 20_000, (before, after)  # kB: most of ~50 MB freed


def test_a_celery_process_trims_after_a_task_then_not_again_for_a_while():
    _, before, after = _rss(
        "signals.task_postrun.send(sender=None)\n"
        "assert config.celery._trimmer._last is not None\n"
        "last = config.celery._trimmer._last\n"
        "signals.task_received.send(sender=None)  # the consumer's signal, too soon\n"
        "assert config.celery._trimmer._last == last",
        setup="import django; django.setup()\n"
        "from celery import signals\n"
        "import config.celery\n",
    )
    assert before - after > 20_000, (before, after)


def test_trims_are_spaced_and_zero_turns_them_off():
    calls: list[int] = []
    now = [100.0]
    trimmer = HeapTrimmer(5, trim=calls.append, clock=lambda: now[0])
    assert trimmer.maybe_trim()  # the first time: at once
    now[0] += 4.9
    assert not trimmer.maybe_trim()
    now[0] += 0.1
    assert trimmer.maybe_trim()
    assert calls == [0, 0]  # malloc_trim(0): keep no padding at the heap's top

    off = HeapTrimmer(0, trim=calls.append, clock=lambda: now[0])
    assert not off.maybe_trim()
    assert calls == [0, 0]


def test_without_glibc_there_is_nothing_to_trim(monkeypatch):
    monkeypatch.setattr("core.memory._malloc_trim", lambda: None)
    assert not HeapTrimmer(5).maybe_trim()
