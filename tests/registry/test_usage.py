"""Certificate usage through gRPC on SQLite and PostgreSQL: validators'
reports show on records as last use, listings tell used from never used,
bad reports are refused whole, and concurrent reports lose nothing."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.common import certificate_facts as facts
from services.common.database import migrate
from services.registry.models import RegistryBase
from services.registry.usage import MAX_USAGE_BATCH
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.support import Clients, rpc_error, suite_settings

FRONTDOOR = "payments"
NEVER_USED = registry_pb2.USAGE_FILTER_NEVER_USED
USED = registry_pb2.USAGE_FILTER_USED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def usage_suite(tmp_path: Path, database_url: str) -> Iterator[Suite]:
    """The suite with the registry on each database; reports are flushed by
    the tests, never by the background job."""
    running = start_suite(
        suite_settings(
            tmp_path / "data",
            registry={"database_url": database_url},
            validator={"usage_report_seconds": 3600},
        )
    )
    yield running
    running.stop()


@pytest.fixture
def clients(usage_suite: Suite) -> Iterator[Clients]:
    connected = Clients.connect(
        usage_suite.address("issuer"),
        usage_suite.address("registry"),
        usage_suite.address("validator"),
    )
    connected.create_frontdoor(FRONTDOOR)
    yield connected
    connected.close()


def _reporter(suite: Suite) -> Any:
    reporter = suite.usage_reporter
    assert reporter is not None
    return reporter


def _record(clients: Clients, fingerprint: str) -> common_pb2.CertificateRecord:
    return clients.registry.GetCertificate(  # type: ignore[no-any-return]
        registry_pb2.GetCertificateRequest(fingerprint_sha256=fingerprint)
    )


def _listed(clients: Clients, usage: int, **fields: Any) -> list[str]:
    response = clients.registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(usage=usage, page_size=1000, **fields)
    )
    return [record.fingerprint_sha256 for record in response.certificates]


def _entry(
    fingerprint: str, when: dt.datetime, frontdoor: str = FRONTDOOR
) -> registry_pb2.CertificateUsage:
    return registry_pb2.CertificateUsage(
        fingerprint_sha256=fingerprint,
        frontdoor=frontdoor,
        last_seen_at=facts.timestamp(when),
    )


def _report(clients: Clients, *entries: registry_pb2.CertificateUsage) -> Any:
    return clients.registry.ReportUsage(
        registry_pb2.ReportUsageRequest(usage=list(entries)), timeout=30
    )


def test_validated_certificate_shows_its_last_use_after_a_flush(
    usage_suite: Suite, clients: Clients
) -> None:
    """A certificate the validator accepted carries last_used_at and the
    frontdoor once the validator has flushed; one never presented has
    neither and is the one listed as never used."""
    used = clients.issue(FRONTDOOR)
    unused = clients.issue(FRONTDOOR)
    before = dt.datetime.now(dt.UTC)
    assert clients.validate([used.certificate, *used.chain[:-1]], FRONTDOOR).valid

    assert _record(clients, used.record.fingerprint_sha256).last_used_frontdoor == ""
    assert _reporter(usage_suite).flush() == 1

    record = _record(clients, used.record.fingerprint_sha256)
    assert record.last_used_frontdoor == FRONTDOOR
    last_used = facts.from_timestamp(record.last_used_at)
    assert before <= last_used <= dt.datetime.now(dt.UTC)
    untouched = _record(clients, unused.record.fingerprint_sha256)
    assert not untouched.HasField("last_used_at")
    assert untouched.last_used_frontdoor == ""

    never = _listed(clients, NEVER_USED, frontdoor=FRONTDOOR)
    assert unused.record.fingerprint_sha256 in never
    assert used.record.fingerprint_sha256 not in never
    assert _listed(clients, USED) == [used.record.fingerprint_sha256]
    listed = clients.registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(usage=USED)
    ).certificates
    assert listed[0].last_used_at == record.last_used_at


def test_refused_certificate_is_not_reported(
    usage_suite: Suite, clients: Clients
) -> None:
    """Only accepted verdicts count as use: a revoked certificate presented
    to the validator stays never used."""
    issued = clients.issue(FRONTDOOR)
    clients.revoke(issued.record.fingerprint_sha256)

    verdict = clients.validate([issued.certificate], FRONTDOOR)

    assert not verdict.valid
    assert _reporter(usage_suite).flush() == 0
    assert issued.record.fingerprint_sha256 in _listed(clients, NEVER_USED)


def test_last_seen_only_moves_forward(clients: Clients) -> None:
    issued = clients.issue(FRONTDOOR)
    fingerprint = issued.record.fingerprint_sha256
    later = dt.datetime.now(dt.UTC).replace(microsecond=0)
    earlier = later - dt.timedelta(hours=1)

    _report(clients, _entry(fingerprint, later))
    response = _report(clients, _entry(fingerprint, earlier))

    assert response.recorded == 1
    assert facts.from_timestamp(_record(clients, fingerprint).last_used_at) == later


def test_last_use_names_the_frontdoor_that_accepted_it_last(
    clients: Clients,
) -> None:
    """A certificate trusted at two frontdoors shows the more recent one."""
    clients.create_frontdoor("billing")
    issued = clients.issue(FRONTDOOR)
    fingerprint = issued.record.fingerprint_sha256
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    _report(
        clients,
        _entry(fingerprint, now - dt.timedelta(minutes=1), FRONTDOOR),
        _entry(fingerprint, now, "billing"),
    )

    assert _record(clients, fingerprint).last_used_frontdoor == "billing"


def test_unknown_certificates_and_frontdoors_are_counted_and_ignored(
    clients: Clients,
) -> None:
    issued = clients.issue(FRONTDOOR)
    now = dt.datetime.now(dt.UTC)

    response = _report(
        clients,
        _entry("ab" * 32, now),
        _entry(issued.record.fingerprint_sha256, now, "no-such-frontdoor"),
        _entry(issued.record.fingerprint_sha256, now),
    )

    assert (
        response.recorded,
        response.unknown_certificates,
        response.unknown_frontdoors,
    ) == (1, 1, 1)
    assert _listed(clients, USED) == [issued.record.fingerprint_sha256]


def test_times_ahead_of_the_registry_are_stored_as_its_current_time(
    clients: Clients,
) -> None:
    """A validator with a fast clock cannot put a last use in the future;
    beyond five minutes of skew the response says so."""
    fast = clients.issue(FRONTDOOR)
    skewed = clients.issue(FRONTDOOR)
    now = dt.datetime.now(dt.UTC)

    response = _report(
        clients,
        _entry(fast.record.fingerprint_sha256, now + dt.timedelta(hours=2)),
        _entry(skewed.record.fingerprint_sha256, now + dt.timedelta(minutes=1)),
    )

    assert response.recorded == 2
    assert response.clamped_to_now == 1
    after = dt.datetime.now(dt.UTC)
    for issued in (fast, skewed):
        record = _record(clients, issued.record.fingerprint_sha256)
        assert now <= facts.from_timestamp(record.last_used_at) <= after


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            lambda good: [good] * (MAX_USAGE_BATCH + 1),
            "a usage report may hold at most 1000 entries; this one has 1001",
        ),
        (
            lambda good: [good, _entry("not-hex", dt.datetime.now(dt.UTC))],
            "usage entry 1: ",
        ),
        (
            lambda good: [
                good,
                registry_pb2.CertificateUsage(
                    fingerprint_sha256=good.fingerprint_sha256, frontdoor=FRONTDOOR
                ),
            ],
            "usage entry 1: last_seen_at is missing",
        ),
        (
            lambda good: [
                good,
                _entry(good.fingerprint_sha256, dt.datetime.now(dt.UTC), ""),
            ],
            "usage entry 1: frontdoor is empty",
        ),
        (
            lambda good: [
                good,
                _entry(good.fingerprint_sha256, dt.datetime.now(dt.UTC), "Bad\nName"),
            ],
            "usage entry 1: frontdoor name",
        ),
        (
            lambda good: [
                good,
                registry_pb2.CertificateUsage(
                    fingerprint_sha256=good.fingerprint_sha256,
                    frontdoor=FRONTDOOR,
                    last_seen_at={"seconds": 2**62},
                ),
            ],
            "usage entry 1: last_seen_at is not a valid timestamp",
        ),
    ],
    ids=["too-many", "fingerprint", "no-time", "no-frontdoor", "bad-name", "time"],
)
def test_bad_report_is_refused_whole(
    clients: Clients, entries: Any, message: str
) -> None:
    """The refusal says what is wrong, and the report's good entries are
    not stored either."""
    issued = clients.issue(FRONTDOOR)
    good = _entry(issued.record.fingerprint_sha256, dt.datetime.now(dt.UTC))

    error = rpc_error(lambda: _report(clients, *entries(good)))

    assert error.code() == INVALID_ARGUMENT
    assert message in (error.details() or "")
    assert _listed(clients, USED) == []


def test_unknown_usage_filter_is_refused(clients: Clients) -> None:
    error = rpc_error(lambda: _listed(clients, 7))

    assert error.code() == INVALID_ARGUMENT
    assert "usage 7 is not a usage filter" in (error.details() or "")


def test_page_token_of_one_usage_filter_is_refused_for_another(
    clients: Clients,
) -> None:
    for _ in range(3):
        clients.issue(FRONTDOOR)
    page = clients.registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(usage=NEVER_USED, page_size=1)
    )
    assert page.next_page_token

    error = rpc_error(
        lambda: clients.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(
                usage=USED, page_size=1, page_token=page.next_page_token
            )
        )
    )

    assert error.code() == INVALID_ARGUMENT


def test_concurrent_reports_lose_no_update_and_do_not_deadlock(
    clients: Clients,
) -> None:
    """Eight reporters send overlapping batches in shuffled order at once;
    every row ends at the latest time anyone reported for it."""
    fingerprints = [
        clients.issue(FRONTDOOR).record.fingerprint_sha256 for _ in range(6)
    ]
    clients.create_frontdoor("billing")
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    keys = [(fp, door) for fp in fingerprints for door in (FRONTDOOR, "billing")]
    failures: list[BaseException] = []
    latest: dict[tuple[str, str], dt.datetime] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def reporter(seed: int) -> None:
        chooser = random.Random(seed)  # noqa: S311 (test data, not secrets)
        try:
            start.wait()
            for _ in range(15):
                batch = []
                for fingerprint, frontdoor in chooser.sample(keys, len(keys)):
                    when = base + dt.timedelta(seconds=chooser.randrange(80_000))
                    batch.append(_entry(fingerprint, when, frontdoor))
                    with lock:
                        key = (fingerprint, frontdoor)
                        latest[key] = max(latest.get(key, when), when)
                _report(clients, *batch)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=reporter, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not failures
    for fingerprint in fingerprints:
        record = _record(clients, fingerprint)
        newest = max(latest[(fingerprint, door)] for door in (FRONTDOOR, "billing"))
        assert facts.from_timestamp(record.last_used_at) == newest


def test_migration_creates_the_table_the_model_describes(
    database_url: str,
) -> None:
    migrate(database_url, "common")
    migrate(database_url, "registry")
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = [
                difference
                for difference in compare_metadata(context, RegistryBase.metadata)
                if "certificate_usage" in repr(difference)
            ]
    finally:
        engine.dispose()
    assert differences == []


def test_deleted_certificate_is_unknown_to_usage_and_not_listed_as_unused(
    clients: Clients,
) -> None:
    """Once deleted, a certificate's reported use is counted as unknown and
    stored nowhere, and the never-used listing leaves it out."""
    deleted = clients.issue(FRONTDOOR).record.fingerprint_sha256
    kept = clients.issue(FRONTDOOR).record.fingerprint_sha256
    clients.revoke(deleted)
    clients.registry.DeleteCertificate(
        registry_pb2.DeleteCertificateRequest(fingerprint_sha256=deleted)
    )
    now = dt.datetime.now(dt.UTC)

    response = _report(clients, _entry(deleted, now), _entry(kept, now))

    assert (response.recorded, response.unknown_certificates) == (1, 1)
    assert _listed(clients, USED) == [kept]
    assert deleted not in _listed(clients, NEVER_USED)
    history = clients.registry.GetCertificateHistory(
        registry_pb2.GetCertificateHistoryRequest(fingerprint_sha256=deleted)
    )
    assert [event.event for event in history.events][-1] == "deleted"
