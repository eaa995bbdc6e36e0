"""Database leases: one live holder per job, taken over only after expiry,
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from services.common.database import Database, migrate
from services.common.leases import Lease, holder_name
from services.common.schema import LeaseRow
from tests.support import ManualClock

DURATION = dt.timedelta(seconds=30)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    migrate(database_url, "common")
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC))


def lease(database: Database, clock: ManualClock, holder: str) -> Lease:
    return Lease(database, "crl.rebuild", clock, DURATION, holder=holder)


def stored(database: Database, name: str = "crl.rebuild") -> LeaseRow | None:
    with database.reading() as session:
        return session.get(LeaseRow, name)


def test_first_holder_takes_a_free_lease(
    database: Database, clock: ManualClock
) -> None:
    assert lease(database, clock, "replica-a").acquire()

    row = stored(database)
    assert row is not None
    assert row.holder == "replica-a"
    assert row.expires_at == clock.now() + DURATION


def test_second_holder_cannot_take_a_live_lease(
    database: Database, clock: ManualClock
) -> None:
    assert lease(database, clock, "replica-a").acquire()
    clock.advance(DURATION - dt.timedelta(seconds=1))

    assert not lease(database, clock, "replica-b").acquire()
    row = stored(database)
    assert row is not None
    assert row.holder == "replica-a"


def test_lease_is_live_up_to_its_expiry(database: Database, clock: ManualClock) -> None:
    """At the very instant of expiry the lease still belongs to its holder."""
    assert lease(database, clock, "replica-a").acquire()
    clock.advance(DURATION)

    assert not lease(database, clock, "replica-b").acquire()


def test_second_holder_takes_the_lease_after_expiry(
    database: Database, clock: ManualClock
) -> None:
    first = lease(database, clock, "replica-a")
    second = lease(database, clock, "replica-b")
    assert first.acquire()
    clock.advance(DURATION + dt.timedelta(seconds=1))

    assert second.acquire()
    assert not first.acquire()
    row = stored(database)
    assert row is not None
    assert row.holder == "replica-b"
    assert row.expires_at == clock.now() + DURATION


def test_holder_renews_its_own_lease(database: Database, clock: ManualClock) -> None:
    """Renewing moves the expiry, so a working holder is never taken over."""
    holder = lease(database, clock, "replica-a")
    other = lease(database, clock, "replica-b")
    assert holder.acquire()
    clock.advance(dt.timedelta(seconds=25))

    assert holder.acquire()
    clock.advance(dt.timedelta(seconds=25))

    assert not other.acquire()


def test_release_lets_another_holder_take_it_at_once(
    database: Database, clock: ManualClock
) -> None:
    first = lease(database, clock, "replica-a")
    assert first.acquire()

    first.release()

    assert stored(database) is None
    assert lease(database, clock, "replica-b").acquire()


def test_release_by_a_non_holder_changes_nothing(
    database: Database, clock: ManualClock
) -> None:
    assert lease(database, clock, "replica-a").acquire()

    lease(database, clock, "replica-b").release()

    row = stored(database)
    assert row is not None
    assert row.holder == "replica-a"
    assert not lease(database, clock, "replica-b").acquire()


def test_leases_of_different_jobs_are_independent(
    database: Database, clock: ManualClock
) -> None:
    crl = Lease(database, "crl.rebuild", clock, DURATION, holder="replica-a")
    sync = Lease(database, "registry.cache_sync", clock, DURATION, holder="replica-b")

    assert crl.acquire()
    assert sync.acquire()
    with database.reading() as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(LeaseRow))
    assert count == 2


def test_default_holder_names_are_unique() -> None:
    assert holder_name() != holder_name()


@pytest.mark.parametrize("expired", [False, True], ids=["free", "expired"])
def test_exactly_one_of_many_racing_holders_wins(
    database_url: str, database: Database, clock: ManualClock, expired: bool
) -> None:
    """Eight replicas start at once: one gets the lease, the others are told no."""
    if expired:
        assert lease(database, clock, "crashed-replica").acquire()
        clock.advance(DURATION * 2)
    databases = [Database(database_url) for _ in range(8)]
    barrier = threading.Barrier(len(databases))
    results: dict[str, bool | BaseException] = {}

    def contend(index: int) -> None:
        contender = lease(databases[index], clock, f"replica-{index}")
        barrier.wait()
        try:
            results[contender.holder] = contender.acquire()
        except BaseException as error:  # reported below, with the holder
            results[contender.holder] = error

    threads = [threading.Thread(target=contend, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for each in databases:
        each.dispose()

    winners = [holder for holder, result in results.items() if result is True]
    assert len(results) == 8
    assert all(isinstance(result, bool) for result in results.values()), results
    assert len(winners) == 1
    row = stored(database)
    assert row is not None
    assert row.holder == winners[0]
