"""The benchmark harness's pure parts: the rate read from refresh steps, the bridge's memory bound, the table.

Synthetic samples only (no clock, no stack): what the engine's `_count` would show when each index makes
what was written before its refresh searchable, once a second, at its own phase.
"""

from __future__ import annotations

import math

import pytest

from bench.memory import HANDOFF_COPIES, bridge_bound
from bench.report import perf_table
from bench.stats import Sample, first_to_all_rate, steady_rate
from panopticon.settings import load_settings

POLL_S = 0.1


def _visible(at: float, phase: float, began: float, rate: float, total: int) -> int:
    """Documents of one index searchable at `at`: those written before its last refresh (phase + k seconds)."""
    refresh = phase + math.floor(at - phase)
    return 0 if refresh <= began else int(min(total, (refresh - began) * rate))


def _samples(streams: list[tuple[float, float, float, int]]) -> list[Sample]:
    """Polls every POLL_S until all is searchable; each stream is (refresh phase, began, rate, total)."""
    out, at = [], 0.0
    goal = sum(total for *_, total in streams)
    while not out or out[-1].count < goal:
        parts = tuple(_visible(at, phase, began, rate, total) for phase, began, rate, total in streams)
        out.append(Sample(at, sum(parts), parts))
        at += POLL_S
    return out


@pytest.mark.parametrize("phases", [(0.25, 0.8), (0.5, 0.55), (0.05, 0.95)])
def test_steady_rate_of_two_streams_written_together(phases: tuple[float, float]) -> None:
    # 45,000 events/s in all: 27,000 spans/s and 18,000 logs/s from t=1.3 s, 150,000 events.
    samples = _samples([(phases[0], 1.3, 27_000, 90_000), (phases[1], 1.3, 18_000, 60_000)])
    assert steady_rate(samples, 150_000) == pytest.approx(45_000, rel=0.03)


def test_steady_rate_of_two_streams_written_one_after_the_other() -> None:
    # 20,000 events/s: 100,000 spans in 5 s, then 80,000 logs in 4 s. Summing per-stream rates would say 40,000.
    samples = _samples([(0.3, 1.0, 20_000, 100_000), (0.7, 6.0, 20_000, 80_000)])
    assert steady_rate(samples, 180_000) == pytest.approx(20_000, rel=0.03)


def test_first_to_all_counts_the_tail_the_steady_rate_leaves_out() -> None:
    samples = _samples([(0.9, 1.0, 30_000, 90_000), (0.95, 1.0, 20_000, 60_000)])
    steady, first_to_all = steady_rate(samples, 150_000), first_to_all_rate(samples, 150_000)
    assert steady == pytest.approx(50_000, rel=0.03)
    assert first_to_all is not None and first_to_all < 0.9 * 50_000


def test_no_steady_rate_from_a_run_shorter_than_its_refreshes() -> None:
    # 20,000 events in 0.4 s: each index shows them all at its first refresh.
    samples = _samples([(0.2, 1.0, 30_000, 12_000), (0.3, 1.0, 20_000, 8_000)])
    assert steady_rate(samples, 20_000) is None


def test_steady_rate_of_a_single_series() -> None:
    series = [(at / 10, _visible(at / 10, 0.4, 0.5, 10_000, 60_000)) for at in range(0, 80)]
    assert steady_rate(series, 60_000) == pytest.approx(10_000, rel=0.03)


def test_bridge_bound_follows_its_settings() -> None:
    settings = load_settings({"BULK_BATCH_BYTES_MB": "5", "BULK_MAX_PARALLEL_FLUSHES": "8"})
    bound = bridge_bound(settings, baseline=50 * 2**20, message_bytes=1_000_000)
    assert bound["B_bytes"] == 5 * 2**20
    assert bound["bytes"] >= 50 * 2**20 + (2 * 8 - 1 + HANDOFF_COPIES) * 5 * 2**20
    wider = bridge_bound(settings.replace(bulk_max_parallel_flushes=16), baseline=50 * 2**20, message_bytes=1_000_000)
    # Two batches more for every flush in flight (and a few more message objects held).
    assert wider["bytes"] - bound["bytes"] == pytest.approx(2 * 8 * 5 * 2**20, abs=2**20)
    larger = bridge_bound(settings.replace(bulk_batch_bytes_mb=10), baseline=50 * 2**20, message_bytes=1_000_000)
    assert larger["B_bytes"] == 10 * 2**20 and larger["bytes"] > bound["bytes"]


def test_bridge_bound_takes_a_message_larger_than_a_batch_as_the_batch() -> None:
    settings = load_settings({"BULK_BATCH_BYTES_MB": "0.5", "MAX_MESSAGE_BYTES": "1048576"})
    assert bridge_bound(settings, baseline=0, message_bytes=1_000_000)["B_bytes"] == 1_048_576


def test_perf_table_says_which_goals_are_met() -> None:
    results = {
        "generated_at": "2026-12-01T00:00:00Z", "machine": {"cores_logical": 2}, "versions": {"git_commit": "abc"},
        "ingest": {"ceiling_eps": 40_000, "ceiling_best": {"bulk_size": 5000, "processes": 2, "threads": 1},
                   "ratio_to_ceiling": 0.85, "pipeline_eps": 34_000, "live_ratio_to_ceiling": 0.6,
                   "pipeline_live": {"eps": 24_000}, "own_cpu_s_per_1000": {"backlog": 0.018, "live": 0.019},
                   "engine_cpu_s_per_1000": {"backlog": 0.03}, "freshness_p99_ms": 1200.0},
        "errors": {"not_run": "not selected"}, "memory": {"not_run": "not selected"},
        "compare": {"not_run": "not selected"},
    }
    table = perf_table(results)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "(met)" in rows["ingest / ceiling, backlog"]
    assert "(not met)" in rows["ingest / ceiling, live"]
    assert "(met)" in rows["own CPU per 1,000 events (bridge + worker), backlog / live"]
    assert "(not met)" in rows["freshness p99 at 1,000 events/s"]
    figures = [line for line in rows.values() if not line.startswith(("| figure", "| ---"))]
    assert figures and all(line.endswith("| `make bench` |") for line in figures)
