"""What a run prints: a table a person reads, naming the JSON that has every figure."""

from pathlib import Path

from bench.__main__ import _slug, summary


def _row(scenario: str, **extra) -> dict:
    return {
        "when": "2026-12-04 15:58", "scenario": scenario, "variant": "",
        "machine": "2 cores, x86_64, 3.11.7, loop 48.6 ms", "ok": 20000,
        "accepted_per_s": 1020.2, "intake_p50_ms": 5033.7, "intake_p95_ms": 9192.7,
        "intake_p99_ms": 9540.3, "errors": {}, "peak_mem_mb": {"web": 86.9},
        **extra,
    }  # fmt: skip


_SETTLED = {
    "payments": 20000, "settled": 20000, "settled_per_s": 993.2,
    "last_settled_after_s": 20.2, "last_settle_minus_last_accept_s": 0.57,
    "settle_p50_ms": 754, "settle_p95_ms": 1104, "settle_p99_ms": 1250,
}  # fmt: skip


def _lines(text: str) -> dict[str, str]:
    """{figure: value}: the two columns, split on the padding between them."""
    pairs = (line.split("  ", 1) for line in text.splitlines())
    return {name.strip(): value.strip() for name, value in pairs}


def test_a_burst_prints_its_ratio_settlement_cpu_and_checks():
    row = _row(
        "burst-single",
        **_SETTLED,
        baseline={"requests_per_s": 1695.1, "intake_p99_ms": 3265.0},
        baseline_after={"requests_per_s": 1599.1, "intake_p99_ms": 2443.2},
        intake_vs_baseline=0.619,
        cpu_seconds={"web": 17.8, "worker0": 4.9, "beat": 0.0},
        checks={"every payment final": True, "reconcile clean": True},
    )
    table = _lines(summary(row, Path("bench/out/burst-single-result.json")))
    unsteady = _lines(summary({**row, "ratio_unsteady": True}))
    assert table["scenario"] == "burst-single, 2026-12-04 15:58 UTC"
    assert table["accepted"] == "20,000 payments, 1,020.2/s"
    assert table["bare-INSERT baseline"] == (
        "1,695.1 before, 1,599.1 after req/s: intake at 62%"
    )
    assert unsteady["bare-INSERT baseline"].endswith(
        "intake at 62% (the machine changed speed: ratio unsteady)"
    )
    assert table["intake ms"] == "p50 5033.7  p95 9192.7  p99 9540.3"
    assert table["settled"] == (
        "20,000, 993.2/s; the last 20.2 s after the start, 0.57 s after the last accept"
    )
    assert table["accept->settled ms"] == "p50 754  p95 1104  p99 1250"
    assert table["CPU ms a payment"] == "web 0.890, worker0 0.245"  # idle ones left out
    assert table["errors"] == "none"
    assert table["checks"] == "all pass (every payment final, reconcile clean)"
    assert table["every figure"] == "bench/out/burst-single-result.json"


def test_steady_prints_the_baselines_p99_and_a_failed_check_is_named():
    row = _row(
        "steady",
        variant="no baseline",
        **_SETTLED,
        baseline={"requests_per_s": 714.0, "intake_p99_ms": 27.6},
        errors={"timeout": 3},
        checks={"every payment final": False, "reconcile clean": True},
    )
    table = _lines(summary(row))
    assert table["scenario"] == "steady (no baseline), 2026-12-04 15:58 UTC"
    assert table["bare-INSERT baseline"] == "714.0 req/s, p99 27.6 ms"
    assert table["errors"] == "timeout 3"
    assert table["checks"].startswith("FAILED: every payment final (")
    assert "every figure" not in table


def test_intake_only_has_no_settlement_lines():
    table = _lines(summary(_row("burst-single (intake only)")))
    assert "settled" not in table and "checks" not in table
    assert table["accepted"] == "20,000 payments, 1,020.2/s"


def test_a_scenario_names_its_json_file():
    assert _slug("burst-single (intake only)") == "burst-single-intake-only"
    assert _slug("steady") == "steady"
