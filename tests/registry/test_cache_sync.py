"""The cache sync, with a real store and each cache: markers for every CA,
advanced over contiguous runs of the log, rebuilt after a flush, discarded
when they are ahead of the log, and only while the sync holds its lease."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping

import pytest
import redis
import sqlalchemy as sa
from cryptography import x509

from services.common import identifiers
from services.common.config import KeyPolicyConfig
from services.common.database import Database, migrate
from services.common.leases import Lease
from services.common.revocation_cache import (
    CacheAnswer,
    CachedRevocation,
    MemoryRevocationCache,
    RedisRevocationCache,
    RevocationCache,
)
from services.registry.cache_sync import LEASE_NAME, CacheSync, SyncReport
from services.registry.models import RevocationRow
from services.registry.store import RegistryStore
from tessera.common.v1 import common_pb2
from tests.registry.test_store import (
    Ca,
    by_fingerprint,
    der,
    make_client,
    make_intermediate,
    make_root,
)
from tests.support import ManualClock

LEASE_DURATION = dt.timedelta(seconds=30)
KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE


@dataclasses.dataclass
class Cache:
    """A cache and a way to lose everything in it."""

    cache: RevocationCache
    flush: Callable[[], object]


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Cache]:
    if request.param == "memory":
        memory = MemoryRevocationCache()
        yield Cache(memory, memory.flush)
        return
    url = str(request.getfixturevalue("clean_redis"))
    shared = RedisRevocationCache(url)
    admin = redis.Redis.from_url(url)
    yield Cache(shared, lambda: admin.flushdb())
    admin.close()
    shared.close()


@dataclasses.dataclass
class Registry:
    """A registry with a root and two frontdoors, and helpers to act on it."""

    store: RegistryStore
    database: Database
    clock: ManualClock
    root: Ca
    payments: Ca
    billing: Ca

    @property
    def key_ids(self) -> list[str]:
        return [self.root.key_id, self.payments.key_id, self.billing.key_id]

    def client(self, issuer: Ca) -> x509.Certificate:
        frontdoor = "payments" if issuer is self.payments else "billing"
        certificate = make_client(issuer, self.clock.now())
        self.store.record_certificate(
            der(certificate), frontdoor, "client", common_pb2.CERTIFICATE_KIND_CLIENT
        )
        return certificate

    def revoke(self, certificate: x509.Certificate) -> common_pb2.Revocation:
        return self.store.record_revocation(
            by_fingerprint(certificate), KEY_COMPROMISE, None
        )

    def lease(self, holder: str = "registry-a") -> Lease:
        return Lease(
            self.database, LEASE_NAME, self.clock, LEASE_DURATION, holder=holder
        )


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    migrate(database_url, "common")
    migrate(database_url, "registry")
    database = Database(database_url)
    clock = ManualClock(dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC))
    store = RegistryStore(database, clock, KeyPolicyConfig())
    root = make_root(clock.now())
    store.record_certificate(
        root.der, "", "platform root", common_pb2.CERTIFICATE_KIND_ROOT
    )
    frontdoors = {}
    for name in ("payments", "billing"):
        frontdoors[name] = make_intermediate(root, clock.now(), name)
        store.register_frontdoor(
            name, common_pb2.FrontdoorSettings(), frontdoors[name].der
        )
    yield Registry(
        store, database, clock, root, frontdoors["payments"], frontdoors["billing"]
    )
    database.dispose()


def make_sync(registry: Registry, cache: Cache, batch_size: int = 5000) -> CacheSync:
    return CacheSync(registry.store, cache.cache, registry.lease(), batch_size)


def run(sync: CacheSync) -> SyncReport:
    report = sync.run_once()
    assert report is not None, "the sync did not get its lease"
    return report


def serial(certificate: x509.Certificate) -> str:
    return identifiers.format_serial(certificate.serial_number)


def cached(revocation: common_pb2.Revocation) -> CachedRevocation:
    return CachedRevocation(
        sequence=revocation.sequence,
        reason=revocation.reason,
        revocation_date=revocation.revocation_date.ToDatetime(dt.UTC),
    )


# The first pass -------------------------------------------------------------


def test_first_pass_gives_every_ca_a_marker(registry: Registry, cache: Cache) -> None:
    """Even issuers without any revocation get "complete up to 0"."""
    unrevoked = registry.client(registry.payments)

    report = run(make_sync(registry, cache))

    assert set(report.rebuilt) == set(registry.key_ids)
    assert report.complete_to == 0
    assert report.advanced == ()
    assert report.discarded == ()
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 0)
    answer = cache.cache.lookup(registry.payments.key_id, serial(unrevoked))
    assert answer.proves_not_revoked


def test_first_pass_copies_revocations_already_in_the_log(
    registry: Registry, cache: Cache
) -> None:
    revoked = registry.client(registry.billing)
    revocation = registry.revoke(revoked)

    report = run(make_sync(registry, cache))

    assert report.complete_to == 1
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 1)
    answer = cache.cache.lookup(registry.billing.key_id, serial(revoked))
    assert answer.revocation == cached(revocation)


# Advancing ------------------------------------------------------------------


def test_revocations_advance_every_marker_to_the_last_sequence(
    registry: Registry, cache: Cache
) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    first, second = (
        registry.client(registry.payments),
        registry.client(registry.payments),
    )
    theirs = registry.client(registry.billing)
    unrevoked = registry.client(registry.payments)
    revocations = [registry.revoke(each) for each in (first, theirs, second)]

    report = run(sync)

    assert report.complete_to == 3
    assert set(report.advanced) == set(registry.key_ids)
    assert report.rebuilt == ()
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 3)
    assert cache.cache.lookup(
        registry.payments.key_id, serial(first)
    ).revocation == cached(revocations[0])
    assert cache.cache.lookup(
        registry.billing.key_id, serial(theirs)
    ).revocation == cached(revocations[1])
    assert cache.cache.lookup(
        registry.payments.key_id, serial(second)
    ).revocation == cached(revocations[2])
    assert cache.cache.lookup(
        registry.payments.key_id, serial(unrevoked)
    ).proves_not_revoked
    assert cache.cache.lookup(registry.billing.key_id, serial(first)).revocation is None


def test_entries_land_only_in_their_issuers_hash(
    registry: Registry, cache: Cache
) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    ours = registry.client(registry.payments)
    registry.revoke(ours)

    run(sync)

    billing = cache.cache.lookup(registry.billing.key_id, serial(ours))
    assert billing.revocation is None
    assert billing.complete_to == 1


def test_pass_without_news_changes_nothing(registry: Registry, cache: Cache) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    registry.revoke(registry.client(registry.payments))
    run(sync)

    report = run(sync)

    assert report == SyncReport(complete_to=1)
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 1)


def test_revoked_intermediate_lands_in_the_roots_hash(
    registry: Registry, cache: Cache
) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    revocation = registry.revoke(registry.payments.certificate)

    run(sync)

    answer = cache.cache.lookup(
        registry.root.key_id, serial(registry.payments.certificate)
    )
    assert answer.revocation == cached(revocation)


def test_new_intermediate_gets_its_marker_on_the_next_pass(
    registry: Registry, cache: Cache
) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    orders = make_intermediate(registry.root, registry.clock.now(), "orders")
    registry.store.register_frontdoor(
        "orders", common_pb2.FrontdoorSettings(), orders.der
    )

    report = run(sync)

    assert report.rebuilt == (orders.key_id,)
    assert cache.cache.markers([orders.key_id]) == {orders.key_id: 0}


# Losing the cache -----------------------------------------------------------


def test_pass_after_flush_rebuilds_and_lookups_prove_again(
    registry: Registry, cache: Cache
) -> None:
    sync = make_sync(registry, cache)
    run(sync)
    revoked = registry.client(registry.payments)
    unrevoked = registry.client(registry.payments)
    revocation = registry.revoke(revoked)
    run(sync)

    cache.flush()
    lost = cache.cache.lookup(registry.payments.key_id, serial(unrevoked))
    report = run(sync)

    assert not lost.proves_not_revoked
    assert set(report.rebuilt) == set(registry.key_ids)
    assert report.complete_to == 1
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 1)
    assert cache.cache.lookup(
        registry.payments.key_id, serial(unrevoked)
    ).proves_not_revoked
    assert cache.cache.lookup(
        registry.payments.key_id, serial(revoked)
    ).revocation == cached(revocation)


def test_marker_ahead_of_the_log_is_discarded_and_rebuilt(
    registry: Registry, cache: Cache
) -> None:
    """A database restored from an older backup: the cache describes a
    history the log no longer has, so its hash goes, stale entries with it."""
    sync = make_sync(registry, cache)
    revoked = registry.client(registry.payments)
    revocation = registry.revoke(revoked)
    run(sync)
    ghost = CachedRevocation(
        sequence=7,
        reason=1,
        revocation_date=registry.clock.now(),
    )
    assert cache.cache.advance(registry.payments.key_id, 1, {"dead": ghost}, 9)

    report = run(sync)

    assert report.discarded == (registry.payments.key_id,)
    assert report.rebuilt == (registry.payments.key_id,)
    assert cache.cache.markers([registry.payments.key_id]) == {
        registry.payments.key_id: 1
    }
    assert cache.cache.lookup(registry.payments.key_id, "dead").revocation is None
    assert cache.cache.lookup(
        registry.payments.key_id, serial(revoked)
    ).revocation == cached(revocation)


def test_flush_during_rebuild_leaves_no_marker(
    registry: Registry, cache: Cache
) -> None:
    """The hash is lost between the rebuild's start and its first chunk: the
    pass must not crown the half-built hash with a marker."""
    registry.revoke(registry.client(registry.payments))
    flushing = _FlushBeforeFirstChunk(cache)
    sync = CacheSync(registry.store, flushing, registry.lease())

    report = run(sync)

    assert registry.payments.key_id not in report.rebuilt
    assert cache.cache.markers([registry.payments.key_id]) == {
        registry.payments.key_id: None
    }
    assert registry.payments.key_id in run(sync).rebuilt
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 1)


class _FlushBeforeFirstChunk(RevocationCache):
    """A real cache that is flushed once, right before the first rebuild chunk."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._flushed = False

    def lookup(self, issuer_key_id: str, serial_number: str) -> CacheAnswer:
        return self._cache.cache.lookup(issuer_key_id, serial_number)

    def put_fast_path(
        self, issuer_key_id: str, serial_number: str, revocation: CachedRevocation
    ) -> None:
        self._cache.cache.put_fast_path(issuer_key_id, serial_number, revocation)

    def markers(self, issuer_key_ids: Iterable[str]) -> dict[str, int | None]:
        return self._cache.cache.markers(issuer_key_ids)

    def advance(
        self,
        issuer_key_id: str,
        expected_marker: int,
        entries: Mapping[str, CachedRevocation],
        new_marker: int,
    ) -> bool:
        return self._cache.cache.advance(
            issuer_key_id, expected_marker, entries, new_marker
        )

    def discard(self, issuer_key_id: str) -> None:
        self._cache.cache.discard(issuer_key_id)

    def begin_rebuild(self, issuer_key_id: str) -> str | None:
        return self._cache.cache.begin_rebuild(issuer_key_id)

    def rebuild_chunk(
        self, issuer_key_id: str, token: str, entries: Mapping[str, CachedRevocation]
    ) -> bool:
        if not self._flushed:
            self._flushed = True
            self._cache.flush()
        return self._cache.cache.rebuild_chunk(issuer_key_id, token, entries)

    def finish_rebuild(self, issuer_key_id: str, token: str, marker: int) -> bool:
        return self._cache.cache.finish_rebuild(issuer_key_id, token, marker)


# The lease ------------------------------------------------------------------


def test_pass_without_the_lease_does_nothing(registry: Registry, cache: Cache) -> None:
    assert registry.lease("registry-b").acquire()
    registry.revoke(registry.client(registry.payments))

    report = make_sync(registry, cache).run_once()

    assert report is None
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(
        registry.key_ids, None
    )


def test_pass_runs_once_the_other_holders_lease_expired(
    registry: Registry, cache: Cache
) -> None:
    assert registry.lease("registry-b").acquire()
    sync = make_sync(registry, cache)
    assert sync.run_once() is None

    registry.clock.advance(LEASE_DURATION + dt.timedelta(seconds=1))

    assert run(sync).complete_to == 0
    assert not registry.lease("registry-b").acquire()


# Batches --------------------------------------------------------------------


def test_batches_smaller_than_the_log_converge(
    registry: Registry, cache: Cache
) -> None:
    """With batch_size=2, five new log entries take three passes: 2, 4, 5."""
    sync = make_sync(registry, cache, batch_size=2)
    run(sync)
    issuers = [registry.payments, registry.billing] * 2 + [registry.payments]
    revoked = [registry.client(issuer) for issuer in issuers]
    revocations = [registry.revoke(certificate) for certificate in revoked]

    reached = [run(sync).complete_to for _ in range(4)]

    assert reached == [2, 4, 5, 5]
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 5)
    for issuer, certificate, revocation in zip(
        issuers, revoked, revocations, strict=True
    ):
        answer = cache.cache.lookup(issuer.key_id, serial(certificate))
        assert answer.revocation == cached(revocation)


def test_rebuild_reads_the_log_in_batches(registry: Registry, cache: Cache) -> None:
    revoked = [registry.client(registry.payments) for _ in range(5)]
    revocations = [registry.revoke(certificate) for certificate in revoked]
    sync = make_sync(registry, cache, batch_size=2)

    report = run(sync)

    assert set(report.rebuilt) == set(registry.key_ids)
    assert cache.cache.markers([registry.payments.key_id]) == {
        registry.payments.key_id: 5
    }
    for certificate, revocation in zip(revoked, revocations, strict=True):
        answer = cache.cache.lookup(registry.payments.key_id, serial(certificate))
        assert answer.revocation == cached(revocation)


def test_marker_stops_before_a_gap_in_the_log(registry: Registry, cache: Cache) -> None:
    """A missing entry means a damaged log; the marker never covers it."""
    sync = make_sync(registry, cache)
    run(sync)
    for _ in range(3):
        registry.revoke(registry.client(registry.payments))
    with registry.database.writing() as session:
        session.execute(sa.delete(RevocationRow).where(RevocationRow.sequence == 2))

    report = run(sync)

    assert report.complete_to == 1
    assert cache.cache.markers(registry.key_ids) == dict.fromkeys(registry.key_ids, 1)
