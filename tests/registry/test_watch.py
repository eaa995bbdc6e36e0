"""WatchRevocations through real gRPC, over the in-process bus and over a
real Redis: the backlog, then live entries, in order, without gaps or
repeats, whatever the bus loses or reorders; bad positions refused; too slow
and too many subscribers cut off with a status that says how to resume."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common import identifiers
from services.common.clock import SystemClock
from services.common.config import KeyPolicyConfig, Settings
from services.common.database import Database
from services.registry.store import CertificateSelector, RegistryStore
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.registry.test_store import Ca, make_client, make_intermediate, make_root
from tests.support import eventually, rpc_error, suite_settings

KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE
FRONTDOOR = "payments"


class Stream:
    """One WatchRevocations call, read by a thread of its own."""

    def __init__(
        self, stub: Any, from_sequence: int, wait: float = 60.0, read: bool = True
    ) -> None:
        self.call = stub.WatchRevocations(
            registry_pb2.WatchRevocationsRequest(from_sequence=from_sequence),
            timeout=wait,
        )
        self.events: queue.Queue[registry_pb2.RevocationEvent | None] = queue.Queue()
        self.error: grpc.RpcError | None = None
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put(event)
        except grpc.RpcError as error:
            self.error = error
        self.events.put(None)

    def next_event(self, timeout: float = 10.0) -> registry_pb2.RevocationEvent:
        event = self.events.get(timeout=timeout)
        assert event is not None, f"the stream ended: {self.error}"
        return event

    def sequences(self, count: int, timeout: float = 10.0) -> list[int]:
        """The sequences of the next ``count`` entries, heartbeats skipped."""
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while len(seen) < count:
            event = self.next_event(max(deadline - time.monotonic(), 0.01))
            if event.HasField("revocation"):
                seen.append(event.revocation.sequence)
        return seen

    def heartbeat(self, timeout: float = 10.0) -> registry_pb2.WatchHeartbeat:
        """The next heartbeat; fails on an entry before it."""
        event = self.next_event(timeout)
        assert event.HasField("heartbeat"), f"expected a heartbeat, got {event}"
        return event.heartbeat

    def ended(self, timeout: float = 10.0) -> grpc.RpcError | None:
        """The error the stream ended with, after any events still queued."""
        deadline = time.monotonic() + timeout
        while self.events.get(timeout=max(deadline - time.monotonic(), 0.01)):
            pass
        return self.error

    def cancel(self) -> None:
        self.call.cancel()


@dataclasses.dataclass
class Registry:
    """A running registry with a frontdoor, and ways to grow its log."""

    suite: Suite
    settings: Settings
    stub: Any
    channel: grpc.Channel
    root: Ca
    intermediate: Ca
    store: RegistryStore

    def watch(self, from_sequence: int = 0, **options: Any) -> Stream:
        return Stream(self.stub, from_sequence, **options)

    def revoke(self, count: int = 1) -> list[common_pb2.Revocation]:
        """Revoke new certificates through RecordRevocation, which announces
        each entry on the bus."""
        revocations = []
        for _ in range(count):
            record = self.stub.RecordCertificate(
                registry_pb2.RecordCertificateRequest(
                    certificate=self._client_der(),
                    frontdoor=FRONTDOOR,
                    name="watched",
                    kind=common_pb2.CERTIFICATE_KIND_CLIENT,
                ),
                timeout=10,
            )
            revocations.append(
                self.stub.RecordRevocation(
                    registry_pb2.RecordRevocationRequest(
                        fingerprint_sha256=record.fingerprint_sha256,
                        reason=KEY_COMPROMISE,
                    ),
                    timeout=10,
                )
            )
        return revocations

    def revoke_unannounced(self) -> common_pb2.Revocation:
        """Revoke a new certificate straight into the log, as a registry that
        crashed between commit and publish (or lost Redis) leaves it."""
        der = self._client_der()
        self.store.record_certificate(
            der, FRONTDOOR, "unannounced", common_pb2.CERTIFICATE_KIND_CLIENT
        )
        fingerprint = identifiers.fingerprint(_load(der))
        return self.store.record_revocation(
            CertificateSelector(fingerprint=fingerprint), KEY_COMPROMISE, None
        )

    def _client_der(self) -> bytes:
        now = dt.datetime.now(dt.UTC)
        return make_client(self.intermediate, now).public_bytes(Encoding.DER)


def _load(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


@contextlib.contextmanager
def running_registry(
    data_dir: Path, redis_url: str | None, **registry: Any
) -> Iterator[Registry]:
    """A registry (with an issuer and a validator that do not watch when
    there is no Redis) whose log holds nothing yet."""
    settings = suite_settings(
        data_dir,
        redis_url=redis_url,
        registry=registry,
        issuer={"revocation_stream": False},
        validator={"revocation_stream": False},
    )
    services = ["registry"] if redis_url else ["registry", "issuer", "validator"]
    suite = start_suite(settings, services)
    channel = grpc.insecure_channel(suite.address("registry"))
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    database = Database(settings.registry_database_url)
    store = RegistryStore(database, SystemClock(), KeyPolicyConfig())
    now = dt.datetime.now(dt.UTC)
    root = make_root(now)
    intermediate = make_intermediate(root, now, FRONTDOOR)
    # The frontdoor's intermediate comes from the test's own small PKI,
    # whose root the registry must know first.
    stub.RecordCertificate(
        registry_pb2.RecordCertificateRequest(
            certificate=root.der, kind=common_pb2.CERTIFICATE_KIND_ROOT
        ),
        timeout=10,
    )
    stub.RegisterFrontdoor(
        registry_pb2.RegisterFrontdoorRequest(
            name=FRONTDOOR, intermediate=intermediate.der
        ),
        timeout=10,
    )
    try:
        yield Registry(suite, settings, stub, channel, root, intermediate, store)
    finally:
        channel.close()
        suite.stop()
        database.dispose()


@pytest.fixture(params=["in-process", "redis"])
def bus(request: pytest.FixtureRequest) -> str | None:
    """Which bus carries entries between commit and streams."""
    if request.param == "redis":
        return str(request.getfixturevalue("clean_redis"))
    return None


@pytest.fixture
def registry(bus: str | None, tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path / "data", bus, watch_heartbeat_seconds=30) as r:
        yield r


# The stream -----------------------------------------------------------------


def test_stream_replays_the_log_then_delivers_new_entries(registry: Registry) -> None:
    """From 0 a subscriber gets the whole log, a heartbeat saying it caught
    up, then each new entry as it commits."""
    registry.revoke(3)

    stream = registry.watch(0)
    assert stream.sequences(3) == [1, 2, 3]
    heartbeat = stream.heartbeat()
    assert heartbeat.last_sequence == 3
    assert heartbeat.interval.ToTimedelta() == dt.timedelta(seconds=30)

    started = time.monotonic()
    revoked = registry.revoke(1)[0]
    event = stream.next_event()
    assert event.revocation == revoked
    assert time.monotonic() - started < 2
    assert event.revocation.frontdoor == FRONTDOOR
    assert event.revocation.issuer_key_id == registry.intermediate.key_id
    assert event.revocation.reason == KEY_COMPROMISE
    assert event.revocation.HasField("revocation_date")
    stream.cancel()


def test_stream_resumes_after_the_given_sequence(registry: Registry) -> None:
    """A subscriber that applied entry 2 resumes with 3, never 2 again."""
    registry.revoke(4)

    stream = registry.watch(2)

    assert stream.sequences(2) == [3, 4]
    assert stream.heartbeat().last_sequence == 4
    stream.cancel()


def test_entries_committed_during_the_replay_arrive_once_in_order(
    registry: Registry,
) -> None:
    """Streams opened while revocations keep committing get every entry
    exactly once, in order: the seam between backlog and live entries has
    neither a gap nor a repeat."""
    total = 60
    registry.revoke(10)
    writer = threading.Thread(target=registry.revoke, args=(total - 10,))
    streams = []

    writer.start()
    while writer.is_alive() and len(streams) < 6:
        streams.append(registry.watch(0))
        time.sleep(0.05)
    writer.join()

    for stream in streams:
        assert stream.sequences(total, timeout=20) == list(range(1, total + 1))
        stream.cancel()


def test_entry_overtaking_a_missing_one_brings_it_from_the_log(
    registry: Registry,
) -> None:
    """An entry the bus never carried is sent, from the database, before the
    next entry the bus does carry, long before any heartbeat."""
    registry.revoke(1)
    stream = registry.watch(0)
    assert stream.sequences(1) == [1]
    stream.heartbeat()

    unannounced = registry.revoke_unannounced()
    announced = registry.revoke(1)[0]

    assert stream.sequences(2, timeout=5) == [
        unannounced.sequence,
        announced.sequence,
    ]
    stream.cancel()


def test_entry_the_bus_never_carried_arrives_by_the_next_heartbeat(
    bus: str | None, tmp_path: Path
) -> None:
    """With nothing after it on the bus, an unannounced entry is found when
    the stream looks at the log's end before its next heartbeat."""
    with running_registry(
        tmp_path / "data", bus, watch_heartbeat_seconds=0.3
    ) as registry:
        stream = registry.watch(0)
        assert stream.heartbeat().last_sequence == 0

        unannounced = registry.revoke_unannounced()

        assert stream.sequences(1, timeout=3) == [unannounced.sequence]
        assert stream.heartbeat().last_sequence == unannounced.sequence
        stream.cancel()


def test_position_beyond_the_log_end_waits_for_the_log_to_reach_it(
    registry: Registry,
) -> None:
    """from_sequence 3 on a log of 2 entries: a heartbeat that shows the
    log's end, nothing for entry 3, then entry 4 as it commits."""
    registry.revoke(2)

    stream = registry.watch(3)

    assert stream.heartbeat().last_sequence == 2
    registry.revoke(2)
    assert stream.sequences(1) == [4]
    stream.cancel()


@pytest.mark.parametrize(
    "from_sequence",
    [
        2**63,
        # What a client that sent -1 as a signed 64-bit integer puts on the
        # wire: the same varint as this.
        2**64 - 1,
    ],
)
def test_position_no_log_can_reach_is_invalid_argument(
    registry: Registry, from_sequence: int
) -> None:
    """A position past what any log can reach is refused with a sentence
    that says what to send; the registry keeps serving."""
    stream = registry.watch(from_sequence)

    error = stream.ended()

    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send 0 for the whole log or the last sequence you applied" in (
        error.details() or ""
    )
    registry.revoke(1)
    healthy = registry.watch(0)
    assert healthy.sequences(1) == [1]
    healthy.cancel()


def test_subscriber_that_stops_reading_is_cut_off_and_resumes(
    bus: str | None, tmp_path: Path
) -> None:
    """A subscriber that reads nothing while more revocations arrive than
    the registry buffers for it gets RESOURCE_EXHAUSTED naming the sequence
    to resume from, and a new call from there gets the rest."""
    with running_registry(
        tmp_path / "data", bus, watch_max_pending=5, watch_heartbeat_seconds=30
    ) as registry:
        # A small flow-control window, so the registry's sends block soon.
        slow_channel = grpc.insecure_channel(
            registry.suite.address("registry"),
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        )
        slow = Stream(
            registry_pb2_grpc.RegistryServiceStub(slow_channel), 0, read=False
        )
        assert next(slow.call).HasField("heartbeat")

        registry.revoke(40)
        time.sleep(0.5)
        received: list[int] = []
        cut_off = rpc_error(
            lambda: received.extend(event.revocation.sequence for event in slow.call)
        )

        assert cut_off.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = cut_off.details() or ""
        assert "fell more than 5 revocations behind" in details
        resume_from = int(details.rsplit("from_sequence=", 1)[1].split()[0])
        assert received == list(range(1, resume_from + 1))
        slow_channel.close()

        resumed = registry.watch(resume_from)
        assert resumed.sequences(40 - resume_from) == list(range(resume_from + 1, 41))
        resumed.cancel()


def test_subscriber_that_never_reads_again_is_cancelled(
    bus: str | None, tmp_path: Path
) -> None:
    """A subscriber stuck for good does not keep the registry's thread: once
    it overflowed, the stream is cancelled after two heartbeat intervals, and
    its place goes to a new watcher."""
    with running_registry(
        tmp_path / "data",
        bus,
        watch_max_pending=5,
        watch_heartbeat_seconds=0.5,
        watch_max_subscribers=1,
    ) as registry:
        stuck_channel = grpc.insecure_channel(
            registry.suite.address("registry"),
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        )
        stuck = Stream(
            registry_pb2_grpc.RegistryServiceStub(stuck_channel), 0, read=False
        )
        assert next(stuck.call).HasField("heartbeat")
        registry.revoke(40)

        deadline = time.monotonic() + 10
        while True:
            replacement = registry.watch(0)
            error = None
            try:
                assert replacement.sequences(40, timeout=5)[-1] == 40
                break
            except AssertionError:
                error = replacement.error
                assert error is not None
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the stuck stream was kept"
                time.sleep(0.2)
        replacement.cancel()
        stuck_channel.close()


def test_watchers_beyond_the_limit_are_resource_exhausted(
    bus: str | None, tmp_path: Path
) -> None:
    """One watcher too many is refused with a sentence saying what to do;
    when a watcher leaves, a new one is served."""
    with running_registry(tmp_path / "data", bus, watch_max_subscribers=2) as registry:
        first, second = registry.watch(0), registry.watch(0)
        for stream in (first, second):
            stream.heartbeat()

        third = registry.watch(0)
        error = third.ended()

        assert error is not None
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already serves 2 revocation watchers" in (error.details() or "")
        first.cancel()
        assert first.ended() is not None

        def served() -> bool:
            fourth = registry.watch(0)
            try:
                fourth.heartbeat(timeout=2)
            except AssertionError:
                return False
            fourth.cancel()
            return True

        assert eventually(served)
        second.cancel()


def test_stopping_the_registry_ends_streams_with_unavailable(
    bus: str | None, tmp_path: Path
) -> None:
    """A registry that stops tells its watchers to reconnect and from where,
    and does not wait for them to leave."""
    with running_registry(tmp_path / "data", bus) as registry:
        registry.revoke(2)
        stream = registry.watch(0)
        assert stream.sequences(2) == [1, 2]

        started = time.monotonic()
        registry.suite.stop()
        error = stream.ended()

        assert time.monotonic() - started < 2
        assert error is not None
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "reconnect with from_sequence=2" in (error.details() or "")
