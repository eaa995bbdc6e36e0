"""The benchmarks at smoke size, so that they keep working; the figures
that count come from the full-size runs (make bench)."""

from __future__ import annotations

import pytest

from benchmarks import enforcement

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]


def test_enforcement_benchmark_runs_and_both_validators_refuse_in_time(
    clean_redis: str,
) -> None:
    """Five revocations: each validator process refuses each certificate
    within a generous 5 s, and both applied every entry from the stream."""
    report = enforcement.run(revocations=5, redis_url=clean_redis)

    assert report.worst() <= 5.0, report.text()
    for latencies in report.from_return.values():
        assert len(latencies) == 5
    assert len(report.stream_delivery) == 5
    for count, _ in report.histograms.values():
        assert count >= 5
