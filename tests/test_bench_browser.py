"""scripts/bench_browser.py's arithmetic: per-second rates from the page's counters, the
server's stats pooled (its figures are read in a real browser run; see PERFORMANCE.md)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench() -> dict:
    return runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "bench_browser.py"))


def sample(t: float, sent: int, shown: int, fps: float, latency: float, p95: float) -> dict:
    return {"t": t, "sent": sent, "received": shown + 2, "decoded": shown + 1, "shown": shown,
            "dropped_decoder": 0, "dropped_at_display": int(t), "state": "live",
            "stats": {"fps": fps, "latencyMs": latency, "latencyP95Ms": p95, "dropped": 1,
                      "stages": {"track": 10 + t, "model": 3.0, "render": 20.0}}}


def test_rates_and_pooled_server_stats(bench: dict) -> None:
    samples = [sample(t, 25 * t, 20 * t, 20.0 + t, 40.0 + t, 60.0 + 10 * t)
               for t in range(11)]
    row = bench["summarise"](samples, {"server": 120.0, "browser": 30.0})
    assert row["seconds"] == 10.0
    assert row["sent_fps"] == 25.0 and row["displayed_fps"] == 20.0
    assert row["decoded_fps"] == 20.0 and row["received_fps"] == 20.0
    assert row["rendered_fps"] == 25.5  # the mean of the stats after the first: 21..30
    assert row["server_latency_median_ms"] == 45.5 and row["server_latency_p95_ms"] == 160.0
    assert row["dropped_in_server_per_s"] == 1.0 and row["dropped_at_display"] == 10
    assert row["stage_median_ms"] == {"track": 15.5, "model": 3.0, "render": 20.0}
    assert row["server_cpu_percent"] == 120.0 and row["browser_cpu_percent"] == 30.0
