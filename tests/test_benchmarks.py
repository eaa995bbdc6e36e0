"""The benchmarks at smoke size, so that they keep working; the figures
that count come from the full-size runs (make bench)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import crl, enforcement, ocsp, registry, verdicts
from tests.support import require_tool

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


def test_verdict_benchmark_runs_both_series(clean_redis: str) -> None:
    """Fifty calls with and without the verdict cache; the cached series is
    not slower (a generous check: the figures come from full-size runs)."""
    uncached, cached = verdicts.run(calls=50, redis_url=clean_redis)

    assert uncached.verdict_cache_seconds == 0
    assert cached.verdict_cache_seconds == 1
    assert cached.median < uncached.median * 2


def test_crl_benchmark_runs_both_sides_on_the_same_entries() -> None:
    """Ten thousand entries through Tessera and through cryptography alone:
    both CRLs hold every entry and have the same size within the extensions
    only Tessera adds; generous bounds on time and memory."""
    report = crl.run(entries=10_000)

    assert report.tessera.entries == report.reference.entries == 10_000
    assert abs(report.tessera.crl_bytes - report.reference.crl_bytes) < 1000
    assert report.ratio < 10, report.text()
    assert report.tessera.peak_bytes < crl.GIB, report.text()


def test_ocsp_benchmark_measures_both_responders() -> None:
    """One second a series: both responders answer under wrk's load, with
    and without nonce (each series first checks one good response), and
    Tessera's pre-signed answers are not slower than a third of openssl's
    (a generous bound: the figures come from full-size runs)."""
    require_tool("wrk")
    require_tool("openssl")

    report = ocsp.run(seconds=1)

    assert len(report.series) == 4, report.text()
    for series in report.series:
        assert series.requests_per_second > 50, report.text()
    assert report.ratio(nonce=False) > 0.33, report.text()


def test_ocsp_report_takes_medians_over_rounds() -> None:
    """With several rounds the report gives each rate's median and the
    median of the rounds' own ratios (not a ratio of medians), and lists
    every round's ratio."""
    rates = {
        # round: (openssl, tessera) without nonce, then with nonce
        0: ((1000, 3000), (1000, 900)),
        1: ((2000, 5000), (500, 700)),
        2: ((1500, 3300), (800, 880)),
    }
    series = [
        ocsp.Series(responder, nonce, rate, "", number)
        for number, both in rates.items()
        for nonce, pair in zip((False, True), both, strict=True)
        for responder, rate in zip(("openssl", "tessera"), pair, strict=True)
    ]
    report = ocsp.Report(series, seconds=10)

    assert report.rounds == 3
    assert report.rate("openssl", nonce=True) == 800
    assert report.rate("tessera", nonce=True) == 880
    assert report.ratios(nonce=True) == [0.9, 1.4, 1.1]
    assert report.ratio(nonce=True) == 1.1
    assert report.ratio(nonce=False) == 2.5
    assert "median of 3 rounds" in report.text()
    assert "(rounds: 0.90, 1.40, 1.10)" in report.text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_registry_benchmark_loads_and_measures_every_query(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Ten thousand records on each database: every query finds what it
    looks for within a generous second, the first expiry pass claims one
    warning for about 4 % of them and sends nothing, the second claims none
    (the figures that count come from the full-size runs)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))

    report = registry.run(url, records=10_000, runs=5)

    assert report.records == 10_000
    pages = [series for series in report.series if series.kind == "page"]
    keys = [series for series in report.series if series.kind == "key"]
    assert {series.rows for series in keys} == {1}, report.text()
    assert report.get("frontdoor + status, first page of 100").rows == 100
    assert report.get("frontdoor + status, 11th page (token)").rows == 100
    assert report.get("frontdoor, expiring in 30 days, by notAfter").rows == 100
    assert report.get("by SAN value").rows == 1
    assert report.get("ListServiceCertificates, service in prod").rows >= 1
    for series in [*keys, *pages]:
        assert series.median < 1000, report.text()
    assert report.first_scan is not None
    assert report.steady_scan is not None
    assert 200 < len(report.first_scan.claimed) < 600, report.text()
    assert report.first_scan.delivered == 0
    assert report.steady_scan.claimed == ()
    assert report.steady_scan.inside_windows == report.first_scan.inside_windows
    assert report.database_bytes > 0
