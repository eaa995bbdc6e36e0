"""The hash-chained audit log: an intact chain verifies, and editing or
removing any row, or editing the head, is reported at the first entry it
breaks; secrets never reach the details."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common.audit import (
    GENESIS_HASH,
    AuditLog,
    canonical_json,
    entry_hash,
    verify_chain,
)
from services.common.database import Database, migrate
from services.common.logging import REDACTED
from services.common.schema import AuditEventRow, AuditHeadRow
from services.suite import Suite
from tests.support import TESSERA, Clients, ManualClock, run, tessera_env

PIN = "483920"
TOKEN = "tok8f3a9c2e71d0"
PASSPHRASE = "correct-horse-battery"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    migrate(database_url, "common")
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 5, 4, 10, 0, 0, 123456, tzinfo=dt.UTC))


@pytest.fixture
def audit(database: Database, clock: ManualClock) -> AuditLog:
    return AuditLog(database, "issuer", clock)


def record_entries(audit: AuditLog, clock: ManualClock, count: int) -> list[int]:
    """Append ``count`` events, a second apart; return their sequence numbers."""
    sequences = []
    for index in range(count):
        sequences.append(
            audit.record(
                "certificate.sign",
                actor="alice@example (cli)",
                serial_number=f"{index + 1:x}",
                frontdoor="payments",
            )
        )
        clock.advance(dt.timedelta(seconds=1))
    return sequences


def execute(database: Database, statement: sa.Executable) -> None:
    with database.writing() as session:
        session.execute(statement)


def rows(database: Database) -> list[AuditEventRow]:
    with database.reading() as session:
        return list(
            session.scalars(sa.select(AuditEventRow).order_by(AuditEventRow.sequence))
        )


# An intact chain ------------------------------------------------------------


def test_empty_log_verifies(database: Database) -> None:
    result = verify_chain(database)

    assert result.intact
    assert result.entries_checked == 0
    assert result.head_hash == GENESIS_HASH


def test_sequences_start_at_one_without_gaps(
    audit: AuditLog, clock: ManualClock
) -> None:
    assert record_entries(audit, clock, 4) == [1, 2, 3, 4]


def test_chain_verifies_and_head_is_the_last_entry(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 5)

    result = verify_chain(database)

    stored = rows(database)
    assert result.intact
    assert result.problem == ""
    assert result.entries_checked == 5
    assert result.head_hash == stored[-1].entry_hash
    assert stored[0].previous_hash == GENESIS_HASH
    for earlier, later in itertools.pairwise(stored):
        assert later.previous_hash == earlier.entry_hash


def test_chain_verifies_across_batches(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 7)

    result = verify_chain(database, batch_size=2)

    assert result.intact
    assert result.entries_checked == 7


def test_entry_records_its_fields(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    audit.record(
        "certificate.revoke",
        actor="bob@example (cli)",
        outcome="refused",
        serial_number="1f",
        reason="keyCompromise",
    )

    (row,) = rows(database)
    assert row.service == "issuer"
    assert row.actor == "bob@example (cli)"
    assert row.action == "certificate.revoke"
    assert row.outcome == "refused"
    assert row.recorded_at == clock.now()
    assert json.loads(row.details) == {"reason": "keyCompromise", "serial_number": "1f"}
    assert row.details == canonical_json(json.loads(row.details))


def test_details_of_other_types_are_recorded_as_text(
    audit: AuditLog, database: Database
) -> None:
    """Datetimes and the like become text, and the chain still verifies."""
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    audit.record("certificate.sign", actor="issuer", not_valid_after=moment)

    (row,) = rows(database)
    assert json.loads(row.details) == {"not_valid_after": str(moment)}
    assert verify_chain(database).intact


def test_concurrent_writers_keep_one_chain(
    database_url: str, database: Database, clock: ManualClock
) -> None:
    """Writers in several replicas serialise on the head: no gaps, no forks."""
    databases = [Database(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def write(index: int) -> None:
        log = AuditLog(databases[index], f"replica-{index}", clock)
        barrier.wait()
        try:
            for _ in range(5):
                log.record("certificate.sign", actor=f"replica-{index}")
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for each in databases:
        each.dispose()

    assert errors == []
    assert [row.sequence for row in rows(database)] == list(range(1, 21))
    result = verify_chain(database)
    assert result.intact
    assert result.entries_checked == 20


# Tampering ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "mallory@example (cli)"),
        ("action", "frontdoor.update"),
        ("outcome", "failure"),
        ("service", "registry"),
        ("details", '{"frontdoor":"payments","serial_number":"ff"}'),
    ],
)
def test_edited_field_breaks_the_chain_at_that_entry(
    audit: AuditLog, database: Database, clock: ManualClock, column: str, value: str
) -> None:
    record_entries(audit, clock, 4)

    execute(
        database,
        sa.update(AuditEventRow)
        .where(AuditEventRow.sequence == 2)
        .values({column: value}),
    )
    result = verify_chain(database)

    assert not result.intact
    assert result.first_broken_sequence == 2
    assert result.entries_checked == 1
    assert result.problem == "entry 2 was changed after it was written"


def test_edited_timestamp_breaks_the_chain_at_that_entry(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 3)

    execute(
        database,
        sa.update(AuditEventRow)
        .where(AuditEventRow.sequence == 3)
        .values(recorded_at=clock.now() - dt.timedelta(days=30)),
    )

    assert verify_chain(database).first_broken_sequence == 3


def test_edited_row_with_recomputed_hash_breaks_the_next_link(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    """A forger who fixes the edited row's own hash is caught by its successor."""
    record_entries(audit, clock, 4)
    second = rows(database)[1]
    second.actor = "mallory@example (cli)"
    forged = entry_hash(second.previous_hash, second)

    execute(
        database,
        sa.update(AuditEventRow)
        .where(AuditEventRow.sequence == 2)
        .values(actor="mallory@example (cli)", entry_hash=forged),
    )
    result = verify_chain(database)

    assert result.first_broken_sequence == 3
    assert result.entries_checked == 2
    assert result.problem == "entry 3 does not point at the hash of entry 2"


def test_deleted_middle_row_is_reported_missing(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 5)

    execute(database, sa.delete(AuditEventRow).where(AuditEventRow.sequence == 3))
    result = verify_chain(database)

    assert result.first_broken_sequence == 3
    assert result.entries_checked == 2
    assert result.problem == "entry 3 is missing; the next entry present is 4"


def test_deleted_first_row_is_reported_missing(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 3)

    execute(database, sa.delete(AuditEventRow).where(AuditEventRow.sequence == 1))

    assert verify_chain(database).first_broken_sequence == 1


def test_deleted_last_row_is_noticed_through_the_head(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 4)

    execute(database, sa.delete(AuditEventRow).where(AuditEventRow.sequence == 4))
    result = verify_chain(database)

    assert result.first_broken_sequence == 4
    assert result.entries_checked == 3
    assert "head records entry 4" in result.problem


def test_every_row_deleted_is_noticed_through_the_head(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 2)

    execute(database, sa.delete(AuditEventRow))
    result = verify_chain(database)

    assert result.first_broken_sequence == 1
    assert result.entries_checked == 0


@pytest.mark.parametrize(
    "values",
    [{"entry_hash": "f" * 64}, {"sequence": 9}],
    ids=["hash", "sequence-ahead"],
)
def test_edited_head_is_reported_after_the_last_entry(
    audit: AuditLog,
    database: Database,
    clock: ManualClock,
    values: dict[str, object],
) -> None:
    """Every row is intact, so the break is where the head points."""
    record_entries(audit, clock, 4)

    execute(database, sa.update(AuditHeadRow).values(values))
    result = verify_chain(database)

    assert not result.intact
    assert result.first_broken_sequence == 5
    assert result.entries_checked == 4
    assert "head" in result.problem


def test_head_moved_back_is_reported_at_the_first_entry_beyond_it(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 4)

    execute(database, sa.update(AuditHeadRow).values(sequence=2))
    result = verify_chain(database)

    assert result.first_broken_sequence == 3
    assert result.entries_checked == 2
    assert "head" in result.problem


def test_row_appended_past_the_head_is_reported_at_that_row(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    """Unkeyed hashes let anyone append a well-linked row; the head, which
    only the audit writer moves, does not cover it."""
    record_entries(audit, clock, 4)
    last = rows(database)[-1]
    forged = AuditEventRow(
        sequence=5,
        recorded_at=clock.now(),
        service="issuer",
        actor="mallory",
        action="certificate.revoke",
        outcome="success",
        details="{}",
        previous_hash=last.entry_hash,
    )
    forged.entry_hash = entry_hash(last.entry_hash, forged)
    with database.writing() as session:
        session.add(forged)

    result = verify_chain(database)

    assert result.first_broken_sequence == 5
    assert result.entries_checked == 4
    assert "entry 5" in result.problem
    assert "head" in result.problem


def test_broken_link_in_a_later_batch_is_found(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    record_entries(audit, clock, 7)

    execute(
        database,
        sa.update(AuditEventRow)
        .where(AuditEventRow.sequence == 6)
        .values(actor="mallory"),
    )

    assert verify_chain(database, batch_size=2).first_broken_sequence == 6


def test_record_refuses_to_start_a_second_chain_without_head(
    audit: AuditLog, database: Database
) -> None:
    execute(database, sa.delete(AuditHeadRow))

    with pytest.raises(RuntimeError, match="run the migrations"):
        audit.record("certificate.sign", actor="issuer")
    assert rows(database) == []


# Secrets --------------------------------------------------------------------


def test_secrets_in_details_are_redacted(
    audit: AuditLog, database: Database, clock: ManualClock
) -> None:
    audit.record(
        "token.redeem",
        actor="enrolment",
        token=TOKEN,
        user_pin=PIN,
        signer_uri=f"pkcs11:object=root?pin-value={PIN}",
        redis_url="redis://:hunter2@cache.internal:6379/0",
        signer={"passphrase": PASSPHRASE, "uri": "file:keys/root.pem"},
        pinned_fingerprint="ab" * 32,
    )

    (row,) = rows(database)
    details = json.loads(row.details)
    for secret in (TOKEN, PIN, PASSPHRASE, "hunter2"):
        assert secret not in row.details
    assert details["token"] == REDACTED
    assert details["user_pin"] == REDACTED
    assert details["signer"] == {"passphrase": REDACTED, "uri": "file:keys/root.pem"}
    assert details["redis_url"] == f"redis://:{REDACTED}@cache.internal:6379/0"
    assert details["pinned_fingerprint"] == "ab" * 32
    assert verify_chain(database).intact


# The CLI --------------------------------------------------------------------


def test_cli_reports_the_tampered_entry_of_a_real_suite(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """After a certificate was issued and revoked, `tessera audit verify`
    passes; once one row is edited with sqlite3 it exits 1 naming that row."""
    data_dir = tmp_path / "data"
    clients.create_frontdoor("payments")
    issued = clients.issue("payments")
    clients.revoke(issued.record.fingerprint_sha256)
    suite.stop()
    command = [TESSERA, "--data-dir", str(data_dir), "audit", "verify"]

    intact = run(command, env=tessera_env())
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("audit chain intact: ")

    with sqlite3.connect(data_dir / "tessera.db") as connection:
        (sequence,) = connection.execute(
            "SELECT min(sequence) FROM audit_events WHERE action = ?",
            ("certificate.revoke",),
        ).fetchone()
        assert sequence is not None
        connection.execute(
            "UPDATE audit_events SET actor = 'somebody else' WHERE sequence = ?",
            (sequence,),
        )
    connection.close()

    broken = run(command, env=tessera_env())
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"audit chain BROKEN at entry {sequence}:" in broken.stdout
    assert f"entry {sequence} was changed after it was written" in broken.stdout
    assert f"({sequence - 1} entries before it verified)" in broken.stdout
