"""The revocation cache: entries and completeness marker of an issuer live
together, only the marker proves "not revoked", and every marker write is a
compare-and-set that a flush defeats. Each rule runs against the in-process
cache and against a real Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from services.common.revocation_cache import (
    KEY_PREFIX,
    MARKER_FIELD,
    CachedRevocation,
    CacheUnavailable,
    MemoryRevocationCache,
    RedisRevocationCache,
    RevocationCache,
    open_cache,
)
from tests.support import free_port

ISSUER = "a1b2c3d4"
OTHER_ISSUER = "e5f60718"
REVOKED_AT = dt.datetime(2026, 3, 1, 12, 30, 15, tzinfo=dt.UTC)


@dataclasses.dataclass
class CacheUnderTest:
    """A cache and a way to lose everything in it, as a Redis FLUSHALL would."""

    cache: RevocationCache
    flush: Callable[[], object]


@pytest.fixture(params=["memory", "redis"])
def subject(request: pytest.FixtureRequest) -> Iterator[CacheUnderTest]:
    """Each cache implementation, empty."""
    if request.param == "memory":
        memory = MemoryRevocationCache()
        yield CacheUnderTest(memory, memory.flush)
        return
    url = str(request.getfixturevalue("clean_redis"))
    cache = RedisRevocationCache(url)
    admin = redis.Redis.from_url(url)
    yield CacheUnderTest(cache, lambda: admin.flushdb())
    admin.close()
    cache.close()


def revocation(sequence: int, reason: int = 1) -> CachedRevocation:
    return CachedRevocation(
        sequence=sequence, reason=reason, revocation_date=REVOKED_AT
    )


def with_marker(cache: RevocationCache, issuer_key_id: str, marker: int) -> None:
    """Give an issuer's hash a marker the way the cache sync does: a rebuild."""
    token = cache.begin_rebuild(issuer_key_id)
    assert token is not None
    assert cache.finish_rebuild(issuer_key_id, token, marker)


# Reading --------------------------------------------------------------------


def test_lookup_without_marker_does_not_prove_not_revoked(
    subject: CacheUnderTest,
) -> None:
    """An empty cache answers "no entry" but not "not revoked"."""
    answer = subject.cache.lookup(ISSUER, "1f")

    assert answer.revocation is None
    assert answer.complete_to is None
    assert not answer.proves_not_revoked


def test_lookup_under_marker_proves_not_revoked(subject: CacheUnderTest) -> None:
    with_marker(subject.cache, ISSUER, 7)

    answer = subject.cache.lookup(ISSUER, "1f")

    assert answer.revocation is None
    assert answer.complete_to == 7
    assert answer.proves_not_revoked


def test_marker_of_one_issuer_proves_nothing_for_another(
    subject: CacheUnderTest,
) -> None:
    with_marker(subject.cache, ISSUER, 3)

    answer = subject.cache.lookup(OTHER_ISSUER, "1f")

    assert answer.complete_to is None
    assert not answer.proves_not_revoked


def test_revoked_entry_is_never_read_as_not_revoked(subject: CacheUnderTest) -> None:
    with_marker(subject.cache, ISSUER, 0)
    assert subject.cache.advance(ISSUER, 0, {"1f": revocation(1)}, 1)

    answer = subject.cache.lookup(ISSUER, "1f")

    assert answer.revocation == revocation(1)
    assert answer.complete_to == 1
    assert not answer.proves_not_revoked


def test_markers_reports_each_issuer_and_none_for_unknown(
    subject: CacheUnderTest,
) -> None:
    with_marker(subject.cache, ISSUER, 4)

    markers = subject.cache.markers([ISSUER, OTHER_ISSUER])

    assert markers == {ISSUER: 4, OTHER_ISSUER: None}


def test_markers_of_no_issuers_is_empty(subject: CacheUnderTest) -> None:
    assert subject.cache.markers([]) == {}


# Fast path ------------------------------------------------------------------


def test_fast_path_adds_entry_but_never_a_marker(subject: CacheUnderTest) -> None:
    subject.cache.put_fast_path(ISSUER, "1f", revocation(5, reason=4))

    answer = subject.cache.lookup(ISSUER, "1f")
    assert answer.revocation == revocation(5, reason=4)
    assert answer.complete_to is None
    assert subject.cache.markers([ISSUER]) == {ISSUER: None}
    assert not subject.cache.lookup(ISSUER, "20").proves_not_revoked


def test_fast_path_leaves_an_existing_marker_as_it_was(
    subject: CacheUnderTest,
) -> None:
    """The fast path may run ahead of the marker but never moves it."""
    with_marker(subject.cache, ISSUER, 2)

    subject.cache.put_fast_path(ISSUER, "1f", revocation(9))

    assert subject.cache.markers([ISSUER]) == {ISSUER: 2}
    assert subject.cache.lookup(ISSUER, "1f").revocation == revocation(9)


def test_fast_path_entry_does_not_satisfy_begin_rebuild(
    subject: CacheUnderTest,
) -> None:
    """A hash holding only fast-path entries still needs a rebuild."""
    subject.cache.put_fast_path(ISSUER, "1f", revocation(1))

    assert subject.cache.begin_rebuild(ISSUER) is not None


# Advance: compare-and-set ---------------------------------------------------


def test_advance_adds_entries_and_moves_marker(subject: CacheUnderTest) -> None:
    with_marker(subject.cache, ISSUER, 3)

    advanced = subject.cache.advance(
        ISSUER, 3, {"1f": revocation(4), "2a": revocation(5)}, 5
    )

    assert advanced
    assert subject.cache.markers([ISSUER]) == {ISSUER: 5}
    assert subject.cache.lookup(ISSUER, "1f").revocation == revocation(4)
    assert subject.cache.lookup(ISSUER, "2a").revocation == revocation(5)


def test_advance_with_wrong_expected_marker_writes_nothing(
    subject: CacheUnderTest,
) -> None:
    with_marker(subject.cache, ISSUER, 3)

    advanced = subject.cache.advance(ISSUER, 2, {"1f": revocation(4)}, 4)

    assert not advanced
    assert subject.cache.markers([ISSUER]) == {ISSUER: 3}
    assert subject.cache.lookup(ISSUER, "1f").revocation is None


def test_advance_without_marker_writes_nothing(subject: CacheUnderTest) -> None:
    """A flushed hash is never refilled by an advance: that needs a rebuild."""
    advanced = subject.cache.advance(ISSUER, 0, {"1f": revocation(1)}, 1)

    assert not advanced
    assert subject.cache.markers([ISSUER]) == {ISSUER: None}
    assert subject.cache.lookup(ISSUER, "1f").revocation is None


def test_advance_after_flush_fails(subject: CacheUnderTest) -> None:
    with_marker(subject.cache, ISSUER, 3)
    subject.flush()

    assert not subject.cache.advance(ISSUER, 3, {"1f": revocation(4)}, 4)
    assert subject.cache.markers([ISSUER]) == {ISSUER: None}


def test_advance_with_no_entries_moves_only_the_marker(
    subject: CacheUnderTest,
) -> None:
    """Issuers without revocations in a run still get their marker moved."""
    with_marker(subject.cache, ISSUER, 3)

    assert subject.cache.advance(ISSUER, 3, {}, 8)
    assert subject.cache.markers([ISSUER]) == {ISSUER: 8}


def test_second_advance_from_same_marker_loses(subject: CacheUnderTest) -> None:
    """Two writers that read the same marker: only the first one wins."""
    with_marker(subject.cache, ISSUER, 3)

    first = subject.cache.advance(ISSUER, 3, {"1f": revocation(4)}, 4)
    second = subject.cache.advance(ISSUER, 3, {"2a": revocation(4)}, 4)

    assert (first, second) == (True, False)
    assert subject.cache.lookup(ISSUER, "2a").revocation is None


# Rebuild --------------------------------------------------------------------


def test_rebuild_fills_entries_and_sets_marker(subject: CacheUnderTest) -> None:
    token = subject.cache.begin_rebuild(ISSUER)
    assert token is not None

    assert subject.cache.rebuild_chunk(ISSUER, token, {"1f": revocation(1)})
    assert subject.cache.rebuild_chunk(ISSUER, token, {"2a": revocation(2)})
    assert subject.cache.finish_rebuild(ISSUER, token, 2)

    assert subject.cache.markers([ISSUER]) == {ISSUER: 2}
    assert subject.cache.lookup(ISSUER, "1f").revocation == revocation(1)
    assert subject.cache.lookup(ISSUER, "2a").revocation == revocation(2)
    assert subject.cache.lookup(ISSUER, "3b").proves_not_revoked


def test_marker_is_absent_until_rebuild_finishes(subject: CacheUnderTest) -> None:
    token = subject.cache.begin_rebuild(ISSUER)
    assert token is not None
    assert subject.cache.rebuild_chunk(ISSUER, token, {"1f": revocation(1)})

    assert subject.cache.markers([ISSUER]) == {ISSUER: None}
    assert not subject.cache.lookup(ISSUER, "2a").proves_not_revoked


def test_begin_rebuild_refuses_a_hash_with_marker(subject: CacheUnderTest) -> None:
    with_marker(subject.cache, ISSUER, 1)

    assert subject.cache.begin_rebuild(ISSUER) is None


def test_rebuild_chunk_after_flush_returns_false_and_sets_no_marker(
    subject: CacheUnderTest,
) -> None:
    """A flush between begin_rebuild and rebuild_chunk takes the token away."""
    token = subject.cache.begin_rebuild(ISSUER)
    assert token is not None

    subject.flush()

    assert not subject.cache.rebuild_chunk(ISSUER, token, {"1f": revocation(1)})
    assert not subject.cache.finish_rebuild(ISSUER, token, 1)
    assert subject.cache.markers([ISSUER]) == {ISSUER: None}
    assert subject.cache.lookup(ISSUER, "1f").revocation is None


def test_finish_rebuild_after_flush_returns_false_and_sets_no_marker(
    subject: CacheUnderTest,
) -> None:
    """A flush after the last chunk: the half-built hash never gets a marker."""
    token = subject.cache.begin_rebuild(ISSUER)
    assert token is not None
    assert subject.cache.rebuild_chunk(ISSUER, token, {"1f": revocation(1)})

    subject.flush()

    assert not subject.cache.finish_rebuild(ISSUER, token, 1)
    answer = subject.cache.lookup(ISSUER, "2a")
    assert answer.complete_to is None
    assert not answer.proves_not_revoked


def test_token_of_an_abandoned_rebuild_is_refused(subject: CacheUnderTest) -> None:
    """After a flush and a new rebuild, the first rebuild's token is dead."""
    stale = subject.cache.begin_rebuild(ISSUER)
    assert stale is not None
    subject.flush()
    fresh = subject.cache.begin_rebuild(ISSUER)
    assert fresh is not None
    assert fresh != stale

    assert not subject.cache.rebuild_chunk(ISSUER, stale, {"1f": revocation(1)})
    assert not subject.cache.finish_rebuild(ISSUER, stale, 1)
    assert subject.cache.finish_rebuild(ISSUER, fresh, 0)
    assert subject.cache.markers([ISSUER]) == {ISSUER: 0}


def test_finish_rebuild_with_a_made_up_token_fails(subject: CacheUnderTest) -> None:
    assert subject.cache.begin_rebuild(ISSUER) is not None

    assert not subject.cache.finish_rebuild(ISSUER, "not-the-token", 1)
    assert subject.cache.markers([ISSUER]) == {ISSUER: None}


# Discard --------------------------------------------------------------------


def test_discard_removes_entries_and_marker_together(
    subject: CacheUnderTest,
) -> None:
    with_marker(subject.cache, ISSUER, 0)
    assert subject.cache.advance(ISSUER, 0, {"1f": revocation(1)}, 1)
    with_marker(subject.cache, OTHER_ISSUER, 1)

    subject.cache.discard(ISSUER)

    answer = subject.cache.lookup(ISSUER, "1f")
    assert answer.revocation is None
    assert answer.complete_to is None
    assert subject.cache.markers([ISSUER, OTHER_ISSUER]) == {
        ISSUER: None,
        OTHER_ISSUER: 1,
    }
    assert subject.cache.begin_rebuild(ISSUER) is not None


def test_discard_of_unknown_issuer_is_harmless(subject: CacheUnderTest) -> None:
    subject.cache.discard(ISSUER)

    assert subject.cache.markers([ISSUER]) == {ISSUER: None}


def test_redis_keeps_entries_and_marker_in_one_hash(clean_redis: str) -> None:
    """One key per issuer: eviction cannot remove the entries but not the marker."""
    cache = RedisRevocationCache(clean_redis)
    admin = redis.Redis.from_url(clean_redis, decode_responses=True)
    try:
        with_marker(cache, ISSUER, 0)
        assert cache.advance(ISSUER, 0, {"1f": revocation(1)}, 1)

        keys = admin.keys("*")
        fields = admin.hgetall(KEY_PREFIX + ISSUER)
    finally:
        admin.close()
        cache.close()

    assert keys == [KEY_PREFIX + ISSUER]
    assert fields == {"1f": revocation(1).encode(), MARKER_FIELD: "1"}


# Encoding -------------------------------------------------------------------


def test_cached_revocation_round_trips_without_invalidity_date() -> None:
    entry = CachedRevocation(sequence=42, reason=6, revocation_date=REVOKED_AT)

    decoded = CachedRevocation.decode(entry.encode())

    assert decoded == entry
    assert decoded.invalidity_date is None
    assert decoded.revocation_date.tzinfo is not None


def test_cached_revocation_round_trips_with_invalidity_date() -> None:
    entry = CachedRevocation(
        sequence=1,
        reason=1,
        revocation_date=REVOKED_AT,
        invalidity_date=REVOKED_AT - dt.timedelta(days=3, seconds=7),
    )

    assert CachedRevocation.decode(entry.encode()) == entry


def test_cached_revocation_keeps_whole_seconds() -> None:
    """The cache stores epoch seconds; fractions of a second are dropped."""
    entry = CachedRevocation(
        sequence=1,
        reason=0,
        revocation_date=REVOKED_AT.replace(microsecond=999_999),
    )

    assert CachedRevocation.decode(entry.encode()).revocation_date == REVOKED_AT


def test_cached_revocation_reads_non_utc_dates_as_the_same_instant() -> None:
    zone = dt.timezone(dt.timedelta(hours=2))
    entry = CachedRevocation(
        sequence=1, reason=1, revocation_date=REVOKED_AT.astimezone(zone)
    )

    assert CachedRevocation.decode(entry.encode()).revocation_date == REVOKED_AT


# Failure --------------------------------------------------------------------

_OPERATIONS: dict[str, Callable[[RevocationCache], object]] = {
    "lookup": lambda cache: cache.lookup(ISSUER, "1f"),
    "put_fast_path": lambda cache: cache.put_fast_path(ISSUER, "1f", revocation(1)),
    "markers": lambda cache: cache.markers([ISSUER]),
    "advance": lambda cache: cache.advance(ISSUER, 0, {"1f": revocation(1)}, 1),
    "discard": lambda cache: cache.discard(ISSUER),
    "begin_rebuild": lambda cache: cache.begin_rebuild(ISSUER),
    "rebuild_chunk": lambda cache: cache.rebuild_chunk(ISSUER, "t", {}),
    "finish_rebuild": lambda cache: cache.finish_rebuild(ISSUER, "t", 1),
}


@pytest.mark.parametrize("operation", sorted(_OPERATIONS))
def test_unreachable_redis_raises_cache_unavailable_quickly(operation: str) -> None:
    """Nobody listens on the port: every operation fails fast and typed."""
    cache = RedisRevocationCache(
        f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2
    )
    started = time.monotonic()
    try:
        with pytest.raises(CacheUnavailable, match="Redis cannot be reached"):
            _OPERATIONS[operation](cache)
    finally:
        cache.close()

    assert time.monotonic() - started < 3


def test_open_cache_picks_redis_only_with_a_url(clean_redis: str) -> None:
    in_process = open_cache(None)
    shared = open_cache(clean_redis)
    try:
        assert isinstance(in_process, MemoryRevocationCache)
        assert isinstance(open_cache(""), MemoryRevocationCache)
        assert isinstance(shared, RedisRevocationCache)
    finally:
        shared.close()
