"""The validator's side of the revocation stream: a revocation heard on it is
refused even while the issuer's Redis hash is behind (its fast-path write
failed and the cache sync has not run), the latency is measured, and the
entries it remembers stay bounded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import redis
from prometheus_client import REGISTRY

from services.common.clock import SystemClock
from services.common.database import Database, migrate
from services.common.leases import Lease
from services.common.revocation_cache import KEY_PREFIX, MARKER_FIELD
from services.registry.cache_sync import LEASE_NAME
from services.suite import start_suite
from services.validator.revocation import StreamedRevocations
from tessera.common.v1 import common_pb2
from tests.support import Clients, eventually, suite_settings

FRONTDOOR = "payments"
REVOKED = common_pb2.VALIDATION_REASON_REVOKED
KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE


def _enforcement_count() -> float:
    return (
        REGISTRY.get_sample_value("tessera_revocation_enforcement_seconds_count") or 0.0
    )


def test_revocation_heard_on_the_stream_is_refused_while_the_cache_is_behind(
    clean_redis: str, tmp_path: Path
) -> None:
    """The issuer's Redis hash has a marker from before the revocation and
    lacks its entry, as after a failed fast-path write before the cache
    sync's next pass: a validator that follows the stream refuses the
    certificate, one that does not accepts it (the gap the stream closes)."""
    settings = suite_settings(tmp_path / "data", redis_url=clean_redis)
    # Someone else holds the cache sync's lease, so no pass fixes the hash.
    migrate(settings.registry_database_url, "common")
    database = Database(settings.registry_database_url)
    assert Lease(
        database, LEASE_NAME, SystemClock(), dt.timedelta(hours=1), holder="drill"
    ).acquire()
    suite = start_suite(settings)
    blind = start_suite(
        suite_settings(
            tmp_path / "blind",
            redis_url=clean_redis,
            validator={
                "revocation_stream": False,
                "registry_address": suite.address("registry"),
            },
        ),
        ["validator"],
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    blind_clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), blind.address("validator")
    )
    cache = redis.Redis.from_url(clean_redis)
    try:
        clients.create_frontdoor(FRONTDOOR)
        issued = clients.issue(FRONTDOOR)
        issuer_hash = KEY_PREFIX + issued.record.issuer_key_id
        cache.hset(issuer_hash, MARKER_FIELD, "0")
        counted = _enforcement_count()

        revocation = clients.revoke(issued.record.fingerprint_sha256, KEY_COMPROMISE)
        subscriber = suite.revocation_subscriber
        assert subscriber is not None
        assert eventually(lambda: subscriber.position >= revocation.sequence)
        cache.hdel(issuer_hash, issued.record.serial_number)

        verdict = clients.validate([issued.certificate], FRONTDOOR)
        assert list(verdict.reasons) == [REVOKED]
        assert verdict.revocation == revocation
        assert blind_clients.validate([issued.certificate], FRONTDOOR).valid
        assert _enforcement_count() == counted + 1
    finally:
        cache.close()
        clients.close()
        blind_clients.close()
        blind.stop()
        suite.stop()
        database.dispose()


def test_streamed_revocations_leave_once_the_marker_covers_them() -> None:
    """Entries the cache holds by now (marker at or past their sequence)
    are forgotten; those past the marker, or of issuers without one, stay."""
    streamed = StreamedRevocations()
    for sequence, issuer, serial in ((1, "aa", "1"), (2, "bb", "2"), (3, "aa", "3")):
        streamed.add(
            common_pb2.Revocation(
                sequence=sequence, issuer_key_id=issuer, serial_number=serial
            )
        )

    dropped = streamed.forget_covered({"aa": 2, "bb": None})

    assert dropped == 1
    assert streamed.get("aa", "1") is None
    assert streamed.get("bb", "2") is not None
    assert streamed.get("aa", "3") is not None


def test_streamed_revocations_keep_the_newest_within_their_capacity() -> None:
    """Beyond its capacity the set forgets its oldest entries first; the
    cache and the registry still answer for them."""
    streamed = StreamedRevocations(capacity=2)
    for sequence in (1, 2, 3):
        streamed.add(
            common_pb2.Revocation(
                sequence=sequence, issuer_key_id="aa", serial_number=str(sequence)
            )
        )

    assert len(streamed) == 2
    assert streamed.get("aa", "1") is None
    assert streamed.get("aa", "3") is not None
