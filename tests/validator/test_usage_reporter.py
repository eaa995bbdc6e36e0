"""The validator's usage reporter: accepted certificates reach the registry
by the background job and at shutdown, survive a registry outage, stay
within their memory bound, and never hold up validation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.common.clock import SystemClock
from services.common.config import KeyPolicyConfig
from services.common.database import Database
from services.common.errors import Unavailable
from services.common.rpc import open_channel
from services.registry.client import RegistryClient
from services.registry.store import CertificateSelector, RegistryStore
from services.suite import Suite, start_suite
from services.validator.usage import UsageReporter
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.support import Clients, eventually, free_port, suite_settings

FRONTDOOR = "payments"


def _dropped() -> float:
    return REGISTRY.get_sample_value("tessera_usage_entries_dropped_total") or 0.0


def _last_used(clients: Clients, fingerprint: str) -> str:
    record = clients.registry.GetCertificate(
        registry_pb2.GetCertificateRequest(fingerprint_sha256=fingerprint)
    )
    return str(record.last_used_frontdoor)


def _accepted(clients: Clients) -> str:
    """Issue a certificate, have the validator accept it, return its fingerprint."""
    issued = clients.issue(FRONTDOOR)
    assert clients.validate([issued.certificate], FRONTDOOR).valid
    return str(issued.record.fingerprint_sha256)


@pytest.fixture
def reporting(tmp_path: Path) -> Iterator[tuple[Suite, Clients]]:
    """A suite whose validator reports every 0.2 seconds."""
    suite = start_suite(
        suite_settings(tmp_path / "data", validator={"usage_report_seconds": 0.2})
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    clients.create_frontdoor(FRONTDOOR)
    yield suite, clients
    clients.close()
    suite.stop()


def test_background_job_reports_accepted_certificates(
    reporting: tuple[Suite, Clients],
) -> None:
    _suite, clients = reporting

    fingerprint = _accepted(clients)

    assert eventually(lambda: _last_used(clients, fingerprint) == FRONTDOOR)


def test_pending_entries_are_reported_at_shutdown(tmp_path: Path) -> None:
    """Stopping the suite sends what the validator holds before the registry
    goes, so nothing seen since the last report is lost."""
    settings = suite_settings(
        tmp_path / "data", validator={"usage_report_seconds": 3600}
    )
    suite = start_suite(settings)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        fingerprint = _accepted(clients)
        assert _last_used(clients, fingerprint) == ""
    finally:
        clients.close()
        suite.stop()

    database = Database(settings.registry_database_url)
    try:
        store = RegistryStore(database, SystemClock(), KeyPolicyConfig())
        record = store.get_certificate(CertificateSelector(fingerprint=fingerprint))
    finally:
        database.dispose()
    assert record.last_used_frontdoor == FRONTDOOR


def test_reporting_switched_off_reports_nothing(tmp_path: Path) -> None:
    suite = start_suite(
        suite_settings(tmp_path / "data", validator={"usage_report_seconds": 0})
    )
    try:
        assert suite.usage_reporter is None
    finally:
        suite.stop()


def test_entries_survive_a_registry_outage(clean_redis: str, tmp_path: Path) -> None:
    """A report made while the registry is down fails, its entries wait, and
    the first report after the registry is back delivers them."""
    registry_port = free_port()
    settings = suite_settings(
        tmp_path / "data",
        redis_url=clean_redis,
        registry={"listen": f"127.0.0.1:{registry_port}"},
        validator={"usage_report_seconds": 3600},
    )
    registry_and_issuer = start_suite(settings, ["registry", "issuer"])
    validator = start_suite(settings, ["validator"])
    clients = Clients.connect(
        registry_and_issuer.address("issuer"),
        registry_and_issuer.address("registry"),
        validator.address("validator"),
    )
    reporter = validator.usage_reporter
    assert reporter is not None
    try:
        clients.create_frontdoor(FRONTDOOR)
        fingerprint = _accepted(clients)
        registry_and_issuer.stop()

        with pytest.raises(Unavailable):
            reporter.flush()
        assert reporter.pending == 1

        registry_and_issuer = start_suite(settings, ["registry"])

        def delivered() -> bool:
            try:
                return reporter.flush() == 1
            except Unavailable:
                return False  # the channel is still reconnecting

        assert eventually(delivered, timeout=30)
        assert reporter.pending == 0
        assert _last_used(clients, fingerprint) == FRONTDOOR
    finally:
        clients.close()
        validator.stop()
        registry_and_issuer.stop()


def test_memory_is_bounded_and_drops_are_counted() -> None:
    """A full reporter still moves the times of pairs it holds, drops new
    pairs, and counts each drop, also when failed entries come back."""
    channel = open_channel(f"127.0.0.1:{free_port()}")
    reporter = UsageReporter(
        RegistryClient(channel), SystemClock(), max_entries=2, timeout_seconds=1
    )
    try:
        dropped = _dropped()
        reporter.seen("a" * 64, FRONTDOOR)
        reporter.seen("b" * 64, FRONTDOOR)
        reporter.seen("a" * 64, FRONTDOOR)
        assert _dropped() == dropped

        reporter.seen("c" * 64, FRONTDOOR)
        assert reporter.pending == 2
        assert _dropped() == dropped + 1

        # Nothing listens there: the report fails and both entries return.
        with pytest.raises(Unavailable):
            reporter.flush()
        assert reporter.pending == 2
        assert _dropped() == dropped + 1
    finally:
        channel.close()


class _StalledRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """A registry whose ReportUsage hangs until released, as an overloaded
    database would make it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def ReportUsage(self, request: Any, context: Any) -> Any:
        self.entered.set()
        self.release.wait(timeout=30)
        context.abort(grpc.StatusCode.UNAVAILABLE, "database overloaded")


def test_stalled_registry_does_not_hold_up_validations() -> None:
    """While a report waits on a registry that does not answer, noting
    accepted certificates stays immediate, and the report's entries come
    back when it fails."""
    stalled = _StalledRegistry()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(stalled, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(f"127.0.0.1:{port}")
    reporter = UsageReporter(
        RegistryClient(channel), SystemClock(), max_entries=100_000, timeout_seconds=30
    )
    try:
        for number in range(5000):
            reporter.seen(f"{number:064x}", FRONTDOOR)
        failed = threading.Event()

        def flush() -> None:
            try:
                reporter.flush()
            except Unavailable:
                failed.set()

        flushing = threading.Thread(target=flush)
        flushing.start()
        assert stalled.entered.wait(timeout=10)
        started = time.monotonic()
        for number in range(5000, 10_000):
            reporter.seen(f"{number:064x}", FRONTDOOR)
        noted_in = time.monotonic() - started
        assert reporter.pending == 5000
        stalled.release.set()
        flushing.join(timeout=30)

        assert noted_in < 1.0
        assert failed.is_set()
        assert reporter.pending == 10_000
    finally:
        stalled.release.set()
        channel.close()
        server.stop(0)
