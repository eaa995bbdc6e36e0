"""The audit log: an append-only, hash-chained table every service writes.

Each entry's hash covers its fields and the previous entry's hash, so
editing or deleting a row breaks the chain at that row. ``audit_head`` holds
the newest link; writers lock it first, which serialises them, and the
verifier compares it with the last row so that cutting rows off the end is
noticed too. The chain is tamper-evident, not tamper-proof: someone who can
rewrite every row and the head can forge it, which is why the head hash is
also printed for operators to keep elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import sqlalchemy as sa

from services.common.clock import Clock
from services.common.database import Database
from services.common.logging import redact_value
from services.common.schema import AuditEventRow, AuditHeadRow

GENESIS_HASH = "0" * 64
HEAD_ROW_ID = 1


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the bytes the hash covers."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def entry_hash(previous_hash: str, row: AuditEventRow) -> str:
    """The hash of one audit entry, chained to the previous entry's hash."""
    content = canonical_json(
        {
            "sequence": row.sequence,
            "recorded_at": row.recorded_at.isoformat(),
            "service": row.service,
            "actor": row.actor,
            "action": row.action,
            "outcome": row.outcome,
            "details": row.details,
        }
    )
    return hashlib.sha256(f"{previous_hash}\n{content}".encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class AuditVerification:
    """What verifying the chain found."""

    entries_checked: int
    head_hash: str
    # None when the chain is intact.
    first_broken_sequence: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.first_broken_sequence is None


class AuditLog:
    """Appends audit events for one service and verifies the chain."""

    def __init__(self, database: Database, service: str, clock: Clock) -> None:
        self._database = database
        self._service = service
        self._clock = clock

    def record(
        self, action: str, *, actor: str, outcome: str = "success", **details: Any
    ) -> int:
        """Append one event and return its sequence number."""
        with self._database.writing() as session:
            head = session.get(AuditHeadRow, HEAD_ROW_ID, with_for_update=True)
            if head is None:
                raise RuntimeError("audit_head row is missing; run the migrations")
            row = AuditEventRow(
                sequence=head.sequence + 1,
                recorded_at=self._clock.now(),
                service=self._service,
                actor=actor,
                action=action,
                outcome=outcome,
                details=canonical_json(redact_value(details)),
                previous_hash=head.entry_hash,
            )
            row.entry_hash = entry_hash(head.entry_hash, row)
            session.add(row)
            head.sequence = row.sequence
            head.entry_hash = row.entry_hash
            return row.sequence


def verify_chain(database: Database, batch_size: int = 5000) -> AuditVerification:
    """Walk the chain from the first entry and report the first broken link."""
    expected_sequence = 1
    previous_hash = GENESIS_HASH
    checked = 0
    with database.reading() as session:
        head = session.get(AuditHeadRow, HEAD_ROW_ID)
        head_sequence = head.sequence if head else 0
        head_hash = head.entry_hash if head else GENESIS_HASH
        last_sequence = 0
        while True:
            rows = session.scalars(
                sa.select(AuditEventRow)
                .where(AuditEventRow.sequence > last_sequence)
                .order_by(AuditEventRow.sequence)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            for row in rows:
                problem = _link_problem(row, expected_sequence, previous_hash)
                if problem:
                    return AuditVerification(
                        checked, head_hash, expected_sequence, problem
                    )
                checked += 1
                previous_hash = row.entry_hash
                expected_sequence += 1
                last_sequence = row.sequence

    if last_sequence > head_sequence:
        # Only the audit writer moves the head, in the transaction that adds
        # the row; a well-linked row beyond it was written some other way.
        return AuditVerification(
            head_sequence,
            head_hash,
            head_sequence + 1,
            f"the chain's head records entry {head_sequence} but entries up to "
            f"{last_sequence} are present; entry {head_sequence + 1} and those "
            "after it were added outside the audit log, or the head was edited",
        )
    if head_sequence != last_sequence or head_hash != previous_hash:
        return AuditVerification(
            checked,
            head_hash,
            last_sequence + 1,
            f"the chain ends at entry {last_sequence} but its head records entry "
            f"{head_sequence}; entries after {last_sequence} were removed or the "
            "head was edited",
        )
    return AuditVerification(checked, head_hash)


def _link_problem(
    row: AuditEventRow, expected_sequence: int, previous_hash: str
) -> str:
    if row.sequence != expected_sequence:
        return (
            f"entry {expected_sequence} is missing; the next entry present is "
            f"{row.sequence}"
        )
    if row.previous_hash != previous_hash:
        return (
            f"entry {row.sequence} does not point at the hash of entry "
            f"{row.sequence - 1}"
        )
    if row.entry_hash != entry_hash(previous_hash, row):
        return f"entry {row.sequence} was changed after it was written"
    return ""
