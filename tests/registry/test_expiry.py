"""Expiry monitoring through a running suite: warning windows per frontdoor,
one notification per certificate and window across restarts and replicas,
the log, webhook and Prometheus sinks, dead letters, and the certificates
that never warn (superseded, revoked, expired)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import field_mask_pb2
from prometheus_client import REGISTRY

from services.common import identifiers
from services.common.config import ConfigError, RegistryConfig
from services.common.database import Database
from services.common.leases import Lease
from services.common.logging import configure_logging
from services.registry import expiry as expiry_module
from services.registry.expiry import (
    LEASE_NAME,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ExpiryMonitor,
    load_webhook_secret,
    open_monitor,
)
from services.registry.models import CertificateRow, ExpiryNotificationRow
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.registry.pki import ca_key_usage
from tests.registry.test_store import Ca, _aki, _builder, make_client, make_root
from tests.support import (
    Clients,
    ManualClock,
    common_name,
    eventually,
    free_port,
    rpc_error,
    suite_settings,
)

SECRET = "whsec-3c1f0e9a7b5d4c2e8f6a1b0c9d7e5f3a"
DAY = dt.timedelta(days=1)


# A webhook receiver -----------------------------------------------------------


class Receiver:
    """An aiohttp server of the test's own that records every POST."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/expiry"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        """Stop listening; a second call does nothing."""
        if self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/expiry", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=self.status)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]

    def windows(self) -> Counter[tuple[str, int]]:
        """How often each (fingerprint, window) arrived."""
        return Counter(
            (body["fingerprint_sha256"], body["window_days"]) for body in self.bodies()
        )


def verifies(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """The receiver's check, as the README describes it."""
    timestamp = headers[TIMESTAMP_HEADER]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers[SIGNATURE_HEADER], f"sha256={expected}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Logging configured as a service does it (JSON), rendered into a buffer."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    saved_level = root.level
    saved_config = structlog.get_config()
    configure_logging("json", "debug")
    buffer = io.StringIO()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_config)


# A suite whose clock the test moves ----------------------------------------------


@dataclasses.dataclass
class Monitored:
    """A running suite with its webhook settings and clock."""

    data_dir: Path
    database_url: str
    registry_settings: dict[str, Any]
    clock: ManualClock
    suite: Suite | None = None
    clients: Clients | None = None

    def start(self) -> Clients:
        settings = suite_settings(self.data_dir, registry=self.registry_settings)
        self.suite = start_suite(settings, clock=self.clock)
        self.clients = Clients.connect(
            self.suite.address("issuer"),
            self.suite.address("registry"),
            self.suite.address("validator"),
        )
        return self.clients

    def stop(self) -> None:
        if self.clients is not None:
            self.clients.close()
        if self.suite is not None:
            self.suite.stop()
        self.suite = self.clients = None

    def restart(self) -> Clients:
        self.stop()
        return self.start()

    def scan(self) -> None:
        assert self.suite is not None
        assert self.suite.expiry_monitor is not None
        assert self.suite.expiry_monitor.run_once() is not None

    def move_to(self, moment: dt.datetime) -> None:
        self.clock.advance(moment - self.clock.now())


@pytest.fixture
def monitored(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> Iterator[Monitored]:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")
    setup = Monitored(
        data_dir=tmp_path / "data",
        database_url=database_url,
        registry_settings={
            "database_url": database_url,
            # Passes are run by the test; the background job only starts one.
            "expiry_scan_seconds": 3600,
            "expiry_webhook_url": receiver.url,
            "expiry_webhook_secret_file": str(secret_file),
            "expiry_webhook_attempts": 3,
            "expiry_webhook_backoff_seconds": 0.01,
            "expiry_webhook_timeout_seconds": 5,
        },
        clock=ManualClock(),
    )
    setup.start()
    yield setup
    setup.stop()


def not_valid_after(record: common_pb2.CertificateRecord) -> dt.datetime:
    return record.not_valid_after.ToDatetime(dt.UTC)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def counter(sink: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "tessera_expiry_notifications_total", {"sink": sink, "outcome": outcome}
        )
        or 0.0
    )


# One notification per window --------------------------------------------------------


def test_one_notification_per_window_across_a_restart(
    monitored: Monitored, receiver: Receiver, log_text: io.StringIO
) -> None:
    """The webhook gets each window once, even after the registry restarted,
    and a certificate that skipped a window warns for the narrowest only."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    fingerprint = record.fingerprint_sha256
    expires = not_valid_after(record)

    monitored.move_to(expires - 29 * DAY)
    monitored.scan()
    monitored.scan()
    assert receiver.windows() == {(fingerprint, 30): 1}

    monitored.move_to(expires - 13 * DAY)
    monitored.restart()
    monitored.scan()
    monitored.scan()
    assert receiver.windows() == {(fingerprint, 30): 1, (fingerprint, 14): 1}

    # Found again only 12 hours before expiry: the 7-day window is skipped.
    monitored.move_to(expires - dt.timedelta(hours=12))
    monitored.restart()
    monitored.scan()
    monitored.move_to(expires + DAY)
    monitored.scan()
    assert receiver.windows() == {
        (fingerprint, 30): 1,
        (fingerprint, 14): 1,
        (fingerprint, 1): 1,
    }

    for headers, body in receiver.requests:
        assert verifies(headers, body)
    last = receiver.bodies()[-1]
    assert last["type"] == "tessera.certificate.expiring"
    assert last["frontdoor"] == "shop"
    assert last["kind"] == "client"
    assert last["serial_number"] == record.serial_number
    assert last["chain_not_valid_after"] == expires.isoformat()
    assert last["limited_by"] == fingerprint

    assert monitored.clients is not None
    listed = monitored.clients.registry.ListExpiryNotifications(
        registry_pb2.ListExpiryNotificationsRequest(frontdoor="shop")
    ).notifications
    assert [(n.window_days, n.state) for n in listed] == [
        (1, "delivered"),
        (14, "delivered"),
        (30, "delivered"),
    ]
    assert {n.fingerprint_sha256 for n in listed} == {fingerprint}
    assert [n.id for n in listed] == sorted(
        (body["notification_id"] for body in receiver.bodies()), reverse=True
    )

    lines = [json.loads(line) for line in log_text.getvalue().splitlines()]
    warnings = [
        line
        for line in lines
        if line["event"] == "certificate chain expires within its warning window"
    ]
    assert [(line["fingerprint"], line["window_days"]) for line in warnings] == [
        (fingerprint, 30),
        (fingerprint, 14),
        (fingerprint, 1),
    ]
    assert warnings[0]["frontdoor"] == "shop"
    assert SECRET not in log_text.getvalue()


def test_tampered_body_or_old_timestamp_does_not_verify(
    monitored: Monitored, receiver: Receiver
) -> None:
    """The signature covers the body and the timestamp, so neither can be
    changed by someone replaying a captured request."""
    assert monitored.clients is not None
    monitored.clients.create_frontdoor("shop")
    record = monitored.clients.issue("shop").record
    monitored.move_to(not_valid_after(record) - 3 * DAY)
    monitored.scan()

    ((headers, body),) = receiver.requests
    assert verifies(headers, body)
    assert int(headers[TIMESTAMP_HEADER]) == int(monitored.clock.now().timestamp())
    assert not verifies(headers, body.replace(b'"window_days": 7', b'"window_days": 1'))
    older = {**headers, TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) - 3600)}
    assert not verifies(older, body)
    assert not verifies(headers, body, secret="another-secret-of-some-length")


# Which certificates warn ---------------------------------------------------------


def test_superseded_revoked_and_expired_certificates_do_not_warn(
    monitored: Monitored, receiver: Receiver
) -> None:
    """Only the active certificate warns; the superseded, the revoked and the
    already expired ones stay silent."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    active = clients.issue("shop").record
    superseded = clients.issue("shop").record
    revoked = clients.issue("shop").record
    expired = clients.issue("shop", validity_days=10).record
    clients.revoke(revoked.fingerprint_sha256)
    # The renewal path lives elsewhere; the status is what the monitor reads.
    database = Database(monitored.database_url)
    with database.writing() as session:
        session.execute(
            sa.update(CertificateRow)
            .where(CertificateRow.fingerprint == superseded.fingerprint_sha256)
            .values(status="superseded")
        )
    database.dispose()

    monitored.move_to(not_valid_after(active) - 5 * DAY)
    monitored.scan()

    assert not_valid_after(expired) < monitored.clock.now()
    assert receiver.windows() == {(active.fingerprint_sha256, 7): 1}


def test_a_chain_expires_at_its_earliest_not_after(
    monitored: Monitored, receiver: Receiver
) -> None:
    """A client certificate outliving its intermediate warns by the
    intermediate's notAfter, and its record says so."""
    clients = monitored.clients
    assert clients is not None
    now = monitored.clock.now()
    root = make_root(now)
    clients.registry.RecordCertificate(
        registry_pb2.RecordCertificateRequest(
            certificate=root.der, kind=common_pb2.CERTIFICATE_KIND_ROOT
        )
    )
    intermediate = make_ca(root, "edge intermediate", now, days=20, path_length=0)
    clients.registry.RegisterFrontdoor(
        registry_pb2.RegisterFrontdoorRequest(
            name="edge",
            intermediate=intermediate.der,
            settings=common_pb2.FrontdoorSettings(
                alerts=common_pb2.ExpiryAlertSettings(window_days=[10])
            ),
        )
    )
    client = make_client(intermediate, now, days=90)
    record = clients.registry.RecordCertificate(
        registry_pb2.RecordCertificateRequest(
            certificate=der_of(client),
            frontdoor="edge",
            kind=common_pb2.CERTIFICATE_KIND_CLIENT,
        )
    )
    ends = intermediate.certificate.not_valid_after_utc
    assert record.chain_not_valid_after.ToDatetime(dt.UTC) == ends
    assert not_valid_after(record) == client.not_valid_after_utc
    listed = {
        listed.fingerprint_sha256: listed.chain_not_valid_after.ToDatetime(dt.UTC)
        for listed in clients.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(frontdoor="edge")
        ).certificates
    }
    assert listed == {
        identifiers.fingerprint(client): ends,
        identifiers.fingerprint(intermediate.certificate): ends,
    }

    monitored.move_to(ends - 9 * DAY)
    monitored.scan()

    client_fingerprint = identifiers.fingerprint(client)
    intermediate_fingerprint = identifiers.fingerprint(intermediate.certificate)
    assert receiver.windows() == {
        (client_fingerprint, 10): 1,
        (intermediate_fingerprint, 10): 1,
    }
    by_fingerprint = {body["fingerprint_sha256"]: body for body in receiver.bodies()}
    assert by_fingerprint[client_fingerprint]["limited_by"] == intermediate_fingerprint
    assert by_fingerprint[client_fingerprint]["chain_not_valid_after"] == (
        ends.isoformat()
    )
    assert by_fingerprint[intermediate_fingerprint]["kind"] == "intermediate"


def test_ca_certificates_warn_intermediates_by_frontdoor_and_root_by_default(
    monitored: Monitored, receiver: Receiver
) -> None:
    """An intermediate warns in its frontdoor's windows; the platform root,
    which has no frontdoor, in the default ones (30, 14, 7, 1)."""
    clients = monitored.clients
    assert clients is not None
    now = monitored.clock.now()
    root = make_ca(None, "short root", now, days=40, path_length=1)
    clients.registry.RecordCertificate(
        registry_pb2.RecordCertificateRequest(
            certificate=root.der, kind=common_pb2.CERTIFICATE_KIND_ROOT
        )
    )
    intermediate = make_ca(root, "lab intermediate", now, days=30, path_length=0)
    clients.registry.RegisterFrontdoor(
        registry_pb2.RegisterFrontdoorRequest(
            name="lab",
            intermediate=intermediate.der,
            settings=common_pb2.FrontdoorSettings(
                alerts=common_pb2.ExpiryAlertSettings(window_days=[5])
            ),
        )
    )
    root_fingerprint = identifiers.fingerprint(root.certificate)
    intermediate_fingerprint = identifiers.fingerprint(intermediate.certificate)

    # Root: 25 days left (30-day window); intermediate: 15 left, no window.
    monitored.move_to(now + 15 * DAY)
    monitored.scan()
    assert receiver.windows() == {(root_fingerprint, 30): 1}

    # Root: 14 days or less left; intermediate: 4 days, inside its 5.
    monitored.move_to(now + 26 * DAY)
    monitored.scan()
    assert receiver.windows() == {
        (root_fingerprint, 30): 1,
        (root_fingerprint, 14): 1,
        (intermediate_fingerprint, 5): 1,
    }
    bodies = {
        (body["fingerprint_sha256"], body["window_days"]): body
        for body in receiver.bodies()
    }
    assert bodies[(root_fingerprint, 14)]["frontdoor"] == ""
    assert bodies[(root_fingerprint, 14)]["kind"] == "root"
    assert bodies[(intermediate_fingerprint, 5)]["frontdoor"] == "lab"


# Webhook failures ------------------------------------------------------------------


def test_failing_receiver_is_retried_then_dead_lettered(
    monitored: Monitored, receiver: Receiver, log_text: io.StringIO
) -> None:
    """Three attempts against a receiver answering 500, each signed, then a
    dead letter with the payload and the error, shown by ListDeadLetters;
    later passes do not send it again."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    failed_before = counter("webhook", "failed")
    dead_before = counter("webhook", "dead_lettered")
    receiver.status = 500

    monitored.move_to(not_valid_after(record) - 20 * DAY)
    monitored.scan()
    monitored.scan()

    assert len(receiver.requests) == 3
    assert all(verifies(headers, body) for headers, body in receiver.requests)
    assert len({body for _, body in receiver.requests}) == 1
    (letter,) = clients.registry.ListDeadLetters(
        registry_pb2.ListDeadLettersRequest()
    ).dead_letters
    assert letter.attempts == 3
    assert letter.last_error == "the webhook answered HTTP 500"
    assert letter.url == receiver.url
    assert json.loads(letter.payload)["fingerprint_sha256"] == (
        record.fingerprint_sha256
    )
    assert letter.payload.encode() == receiver.requests[0][1]
    (notification,) = clients.registry.ListExpiryNotifications(
        registry_pb2.ListExpiryNotificationsRequest()
    ).notifications
    assert notification.state == "dead_lettered"
    assert notification.id == letter.notification_id
    assert not notification.HasField("delivered_at")
    assert counter("webhook", "failed") - failed_before == 3
    assert counter("webhook", "dead_lettered") - dead_before == 1
    assert "dead-lettered" in log_text.getvalue()
    assert SECRET not in log_text.getvalue()


def test_unreachable_receiver_is_dead_lettered_with_the_reason(
    monitored: Monitored, receiver: Receiver
) -> None:
    """A receiver that is not listening fails like one that answers 500."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    receiver.stop()

    monitored.move_to(not_valid_after(record) - 20 * DAY)
    monitored.scan()

    (letter,) = clients.registry.ListDeadLetters(
        registry_pb2.ListDeadLettersRequest()
    ).dead_letters
    assert letter.attempts == 3
    assert letter.last_error.startswith("the webhook could not be reached")


def test_a_pending_notification_is_delivered_again(
    monitored: Monitored, receiver: Receiver
) -> None:
    """A notification whose delivery was not recorded (a crash right after the
    receiver accepted it) goes out again with the same notification_id:
    the webhook is at least once, and receivers drop repeats by that id."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    monitored.move_to(not_valid_after(record) - 20 * DAY)
    monitored.scan()
    database = Database(monitored.database_url)
    with database.writing() as session:
        session.execute(sa.update(ExpiryNotificationRow).values(state="pending"))
    database.dispose()

    monitored.restart()
    monitored.scan()
    monitored.scan()

    first, second = receiver.requests
    assert first[1] == second[1]
    assert receiver.windows() == {(record.fingerprint_sha256, 30): 2}


# Metrics -------------------------------------------------------------------------


def test_metrics_show_certificates_inside_the_largest_window_only(
    monitored: Monitored,
) -> None:
    """A per-certificate gauge exists only while the certificate is inside
    its largest window; per-frontdoor counts by narrowest window reached."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    far = clients.issue("shop", validity_days=200).record
    fingerprint = record.fingerprint_sha256
    expires = not_valid_after(record)
    labels = {"fingerprint": fingerprint, "frontdoor": "shop"}

    monitored.move_to(expires - 40 * DAY)
    monitored.scan()
    assert gauge("tessera_certificate_expiry_seconds", **labels) is None
    assert (
        gauge("tessera_expiring_certificates", frontdoor="shop", window_days="30") == 0
    )

    monitored.move_to(expires - 10 * DAY)
    monitored.scan()
    assert (
        gauge("tessera_certificate_expiry_seconds", **labels)
        == (10 * DAY).total_seconds()
    )
    assert (
        gauge("tessera_expiring_certificates", frontdoor="shop", window_days="14") == 1
    )
    assert (
        gauge("tessera_expiring_certificates", frontdoor="shop", window_days="30") == 0
    )
    assert (
        gauge(
            "tessera_certificate_expiry_seconds",
            fingerprint=far.fingerprint_sha256,
            frontdoor="shop",
        )
        is None
    )

    monitored.move_to(expires + DAY)
    monitored.scan()
    assert gauge("tessera_certificate_expiry_seconds", **labels) is None
    assert (
        gauge("tessera_expiring_certificates", frontdoor="shop", window_days="14") == 0
    )


# Two replicas ----------------------------------------------------------------------


def test_two_monitors_on_one_database_send_each_notification_once(
    monitored: Monitored, receiver: Receiver
) -> None:
    """Two registry replicas (two monitors, each its own lease holder) running
    passes at the same time: the lease lets one send, the other waits."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    records = [clients.issue("shop").record for _ in range(5)]
    monitored.move_to(not_valid_after(records[0]) - 6 * DAY)
    config = RegistryConfig(**monitored.registry_settings)
    databases = [Database(monitored.database_url) for _ in range(2)]
    replicas = [
        open_monitor(database, monitored.clock, config) for database in databases
    ]
    errors: list[BaseException] = []

    def passes(monitor: ExpiryMonitor) -> None:
        try:
            for _ in range(5):
                monitor.run_once()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=passes, args=(m,)) for m in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for database in databases:
        database.dispose()

    assert not errors
    assert receiver.windows() == {(r.fingerprint_sha256, 7): 1 for r in records}


def test_a_replica_without_the_lease_does_nothing(
    monitored: Monitored, receiver: Receiver
) -> None:
    """While one holder keeps the lease, another replica's pass returns None
    and sends nothing; once the lease lapses it takes over."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    record = clients.issue("shop").record
    monitored.move_to(not_valid_after(record) - 6 * DAY)
    database = Database(monitored.database_url)
    holder = Lease(database, LEASE_NAME, monitored.clock, dt.timedelta(minutes=10))
    assert holder.acquire()

    replica = ExpiryMonitor(
        database,
        monitored.clock,
        Lease(database, LEASE_NAME, monitored.clock, dt.timedelta(minutes=10)),
    )
    assert replica.run_once() is None
    assert receiver.requests == []

    monitored.clock.advance(dt.timedelta(minutes=11))
    report = replica.run_once()
    database.dispose()
    assert report is not None
    assert report.claimed == ((record.fingerprint_sha256, 7),)


def test_warnings_claimed_by_another_replica_are_left_out_of_a_batch(
    monitored: Monitored, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims are written in batches, one transaction each: a warning that
    another replica claimed meanwhile (its lease lapsed while this pass
    read the candidates) is skipped, and the rest of its batch is still
    claimed, logged and sent, each exactly once."""
    monkeypatch.setattr(expiry_module, "_CLAIM_BATCH", 2)
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    records = [clients.issue("shop").record for _ in range(5)]
    monitored.move_to(not_valid_after(records[0]) - 6 * DAY)
    database = Database(monitored.database_url)
    with database.writing() as session:
        certificate_id = session.scalar(
            sa.select(CertificateRow.id).where(
                CertificateRow.fingerprint == records[2].fingerprint_sha256
            )
        )
        session.add(
            ExpiryNotificationRow(
                certificate_id=certificate_id,
                window_days=7,
                chain_not_valid_after=monitored.clock.now() + 6 * DAY,
                state="delivered",
                payload="{}",
                created_at=monitored.clock.now(),
                delivered_at=monitored.clock.now(),
            )
        )
    monitor = open_monitor(
        database, monitored.clock, RegistryConfig(**monitored.registry_settings)
    )
    report = monitor.run_once()
    again = monitor.run_once()
    database.dispose()

    assert report is not None
    expected = {(r.fingerprint_sha256, 7) for i, r in enumerate(records) if i != 2}
    assert set(report.claimed) == expected
    assert len(report.claimed) == 4
    assert again is not None
    assert again.claimed == ()
    assert receiver.windows() == dict.fromkeys(expected, 1)


# Settings ---------------------------------------------------------------------------


def test_default_windows_are_30_14_7_and_1_days(monitored: Monitored) -> None:
    """A frontdoor that sets no windows has the platform's, shown as effective."""
    assert monitored.clients is not None
    frontdoor = monitored.clients.create_frontdoor("shop")
    assert list(frontdoor.settings.alerts.window_days) == []
    assert list(frontdoor.effective_settings.alerts.window_days) == [30, 14, 7, 1]


def test_windows_are_changed_through_update_frontdoor_settings(
    monitored: Monitored,
) -> None:
    """Windows set through UpdateFrontdoorSettings are the frontdoor's own."""
    assert monitored.clients is not None
    monitored.clients.create_frontdoor("shop")
    updated = update_windows(monitored.clients, [60, 3])
    assert list(updated.settings.alerts.window_days) == [60, 3]
    assert list(updated.effective_settings.alerts.window_days) == [60, 3]


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ([0], "alerts.window_days 0 is out of range"),
        ([3651], "alerts.window_days 3651 is out of range"),
        (list(range(1, 12)), "at most 10 are allowed"),
        ([7, 7], "names the same window twice"),
    ],
)
def test_rejects_windows_tessera_cannot_act_on(
    monitored: Monitored, windows: list[int], message: str
) -> None:
    """Bad windows get INVALID_ARGUMENT with the reason and change nothing."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    update_windows(clients, [14])
    before = clients.registry.GetFrontdoor(
        registry_pb2.GetFrontdoorRequest(name="shop")
    )

    error = rpc_error(lambda: update_windows(clients, windows))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.details() or "")
    after = clients.registry.GetFrontdoor(registry_pb2.GetFrontdoorRequest(name="shop"))
    assert after == before


def test_rejects_a_list_limit_above_the_maximum(monitored: Monitored) -> None:
    """Operator views page at most 1000 rows at a time."""
    assert monitored.clients is not None
    registry = monitored.clients.registry
    for call in (
        lambda: registry.ListDeadLetters(
            registry_pb2.ListDeadLettersRequest(limit=1001)
        ),
        lambda: registry.ListExpiryNotifications(
            registry_pb2.ListExpiryNotificationsRequest(limit=1001)
        ),
    ):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 1000" in (error.details() or "")


# The webhook secret ---------------------------------------------------------------


def test_secret_is_read_from_a_file_or_the_environment(tmp_path: Path) -> None:
    """Both sources give the same key; neither appears in its repr."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n# comment lines after the first are ignored\n")
    from_file = load_webhook_secret(
        RegistryConfig(
            expiry_webhook_url="http://127.0.0.1:1/",
            expiry_webhook_secret_file=secret_file,
        ),
        {},
    )
    from_env = load_webhook_secret(
        RegistryConfig(
            expiry_webhook_url="http://127.0.0.1:1/",
            expiry_webhook_secret_env="HOOK_KEY",
        ),
        {"HOOK_KEY": SECRET},
    )
    assert from_file.sign(1, b"{}") == from_env.sign(1, b"{}")
    assert SECRET not in repr(from_file)


def test_rejects_missing_or_short_secret_without_showing_it(tmp_path: Path) -> None:
    """A key that is too short or absent stops start-up with a sentence that
    names where it was looked for, never its value."""
    short = tmp_path / "short"
    short.write_text("tiny-key\n")
    for config, environ, where in (
        (
            RegistryConfig(
                expiry_webhook_url="http://127.0.0.1:1/",
                expiry_webhook_secret_file=short,
            ),
            {},
            str(short),
        ),
        (
            RegistryConfig(
                expiry_webhook_url="http://127.0.0.1:1/",
                expiry_webhook_secret_env="HOOK_KEY",
            ),
            {},
            "HOOK_KEY",
        ),
        (
            RegistryConfig(
                expiry_webhook_url="http://127.0.0.1:1/",
                expiry_webhook_secret_file=tmp_path / "absent",
            ),
            {},
            "absent",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            load_webhook_secret(config, environ)
        assert where in str(caught.value)
        assert "tiny-key" not in str(caught.value)


def test_webhook_without_a_secret_is_refused() -> None:
    """A webhook URL needs exactly one source for its signing key."""
    with pytest.raises(ValueError, match="expiry_webhook_secret_file"):
        RegistryConfig(expiry_webhook_url="https://hooks.example/expiry")


def test_a_registry_with_an_unreadable_secret_does_not_start(tmp_path: Path) -> None:
    """Fail closed: no registry runs with a webhook it cannot sign for."""
    settings = suite_settings(
        tmp_path / "data",
        registry={
            "expiry_webhook_url": "http://127.0.0.1:1/",
            "expiry_webhook_secret_file": str(tmp_path / "absent"),
        },
    )
    with pytest.raises(ConfigError, match="expiry_webhook_secret_file"):
        start_suite(settings)


# Helpers ---------------------------------------------------------------------------


def update_windows(clients: Clients, windows: list[int]) -> Any:
    return clients.registry.UpdateFrontdoorSettings(
        registry_pb2.UpdateFrontdoorSettingsRequest(
            name="shop",
            settings=common_pb2.FrontdoorSettings(
                alerts=common_pb2.ExpiryAlertSettings(window_days=windows)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["alerts.window_days"]),
        )
    )


def make_ca(
    issuer: Ca | None, name: str, now: dt.datetime, days: int, path_length: int
) -> Ca:
    """A CA certificate valid for ``days``; self-signed without ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(
        name,
        issuer.certificate.subject if issuer else common_name(name),
        key.public_key(),
        now - dt.timedelta(hours=1),
        now + days * DAY,
        None,
    ).add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    )
    builder = builder.add_extension(ca_key_usage(), critical=True)
    if issuer is not None:
        builder = builder.add_extension(_aki(issuer), critical=False)
    return Ca(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def der_of(certificate: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.DER)


def test_deleted_certificates_do_not_warn(
    monitored: Monitored, receiver: Receiver
) -> None:
    """A deleted certificate never warns, even when the registry's clock is
    set back into one of its windows after the deletion."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    kept = clients.issue("shop", validity_days=10).record
    deleted = clients.issue("shop", validity_days=10).record
    expires = not_valid_after(deleted)
    monitored.move_to(expires + DAY)
    clients.registry.DeleteCertificate(
        registry_pb2.DeleteCertificateRequest(
            fingerprint_sha256=deleted.fingerprint_sha256
        )
    )

    monitored.move_to(expires - 5 * DAY)
    monitored.scan()

    assert receiver.windows() == {(kept.fingerprint_sha256, 7): 1}
    listed = clients.registry.ListExpiryNotifications(
        registry_pb2.ListExpiryNotificationsRequest(frontdoor="shop")
    ).notifications
    assert {n.fingerprint_sha256 for n in listed} == {kept.fingerprint_sha256}


def test_an_uploaded_root_warns_as_a_root(
    monitored: Monitored, receiver: Receiver, log_text: io.StringIO
) -> None:
    """An uploaded self-signed CA inside a window is listed, posted and
    logged as a ROOT, like the platform root."""
    clients = monitored.clients
    assert clients is not None
    clients.create_frontdoor("shop")
    ca = make_ca(None, "Uploaded Org Root", monitored.clock.now(), 20, 0)
    uploaded = clients.registry.UploadCertificates(
        registry_pb2.UploadCertificatesRequest(
            frontdoor="shop", data=der_of(ca.certificate)
        )
    )
    assert uploaded.stored
    fingerprint = identifiers.fingerprint(ca.certificate)

    monitored.scan()

    (notification,) = [
        n
        for n in clients.registry.ListExpiryNotifications(
            registry_pb2.ListExpiryNotificationsRequest(frontdoor="shop")
        ).notifications
        if n.fingerprint_sha256 == fingerprint
    ]
    assert notification.kind == common_pb2.CERTIFICATE_KIND_ROOT
    assert notification.window_days == 30
    (body,) = [b for b in receiver.bodies() if b["fingerprint_sha256"] == fingerprint]
    assert body["kind"] == "root"
    logged = [
        json.loads(line)
        for line in log_text.getvalue().splitlines()
        if fingerprint in line and "warning window" in line
    ]
    assert [entry["kind"] for entry in logged] == ["root"]


# A receiver that hangs ---------------------------------------------------------


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A port that completes TCP handshakes and never answers a request."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/expiry"
    listener.close()


def hanging_suite(
    tmp_path: Path, database_url: str, url: str, **settings: Any
) -> Monitored:
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")
    setup = Monitored(
        data_dir=tmp_path / "data",
        database_url=database_url,
        registry_settings={
            "database_url": database_url,
            "expiry_scan_seconds": 3600,
            "expiry_webhook_url": url,
            "expiry_webhook_secret_file": str(secret_file),
            "expiry_webhook_backoff_seconds": 0.01,
            **settings,
        },
        clock=ManualClock(),
    )
    setup.start()
    return setup


def notification_states(database_url: str) -> Counter[str]:
    database = Database(database_url)
    try:
        with database.reading() as session:
            return Counter(session.scalars(sa.select(ExpiryNotificationRow.state)))
    finally:
        database.dispose()


def test_a_hanging_receiver_delays_only_the_deliveries_past_the_budget(
    tmp_path: Path, database_url: str, hanging_url: str, log_text: io.StringIO
) -> None:
    """Against a receiver that never answers, a pass records and logs every
    new notification, delivers four at a time, starts no delivery once its
    budget is spent and leaves the rest pending for the next pass."""
    monitored = hanging_suite(
        tmp_path,
        database_url,
        hanging_url,
        expiry_webhook_attempts=2,
        expiry_webhook_timeout_seconds=1.5,
        expiry_webhook_budget_seconds=1.0,
    )
    try:
        clients = monitored.clients
        assert clients is not None
        clients.create_frontdoor("shop")
        records = [clients.issue("shop").record for _ in range(10)]
        monitored.move_to(max(not_valid_after(r) for r in records) - 20 * DAY)
        monitor = monitored.suite.expiry_monitor if monitored.suite else None
        assert monitor is not None

        began = time.monotonic()
        first = monitor.run_once()
        took = time.monotonic() - began

        assert first is not None
        assert len(first.claimed) == 10
        logged = [
            line
            for line in log_text.getvalue().splitlines()
            if "warning window" in line
        ]
        assert len(logged) == 10
        assert (first.delivered, first.dead_lettered) == (0, 4)
        # Four deliveries side by side (two attempts of 1.5 s each), not ten
        # one after another.
        assert took < 8, took
        assert notification_states(database_url) == {
            "dead_lettered": 4,
            "pending": 6,
        }
        listed = clients.registry.ListExpiryNotifications(
            registry_pb2.ListExpiryNotificationsRequest(frontdoor="shop")
        ).notifications
        assert Counter(n.state for n in listed) == {"dead_lettered": 4, "pending": 6}

        second = monitor.run_once()
        assert second is not None
        assert (second.claimed, second.dead_lettered) == ((), 4)
        assert notification_states(database_url) == {
            "dead_lettered": 8,
            "pending": 2,
        }
    finally:
        monitored.stop()


def test_stopping_abandons_deliveries_to_a_hanging_receiver(
    tmp_path: Path, database_url: str, hanging_url: str
) -> None:
    """stop() returns within seconds while a pass delivers a backlog to a
    receiver that never answers; the notifications stay pending (none is
    dead-lettered) and the next process delivers them."""
    monitored = hanging_suite(
        tmp_path,
        database_url,
        hanging_url,
        expiry_webhook_attempts=3,
        expiry_webhook_timeout_seconds=5,
    )
    try:
        clients = monitored.clients
        assert clients is not None
        clients.create_frontdoor("shop")
        records = [clients.issue("shop").record for _ in range(6)]
        monitored.move_to(max(not_valid_after(r) for r in records) - 20 * DAY)
        monitor = monitored.suite.expiry_monitor if monitored.suite else None
        assert monitor is not None
        reports: list[Any] = []
        scanning = threading.Thread(target=lambda: reports.append(monitor.run_once()))
        scanning.start()
        assert eventually(lambda: notification_states(database_url)["pending"] == 6)
        time.sleep(0.5)  # the first deliveries are in flight

        began = time.monotonic()
        monitored.stop()
        took = time.monotonic() - began
        scanning.join(10)

        assert not scanning.is_alive()
        assert took < 3, took
        assert notification_states(database_url) == {"pending": 6}
        assert len(reports) == 1
        assert reports[0] is not None
        assert reports[0].dead_lettered == 0
    finally:
        monitored.stop()
