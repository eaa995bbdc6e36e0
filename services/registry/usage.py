"""Certificate usage: when, and at which frontdoor, validators last accepted
each certificate.

Validators report in batches (``ReportUsage``); the registry keeps one row
per certificate and frontdoor with the latest time, shows the newest one on
certificate records, and lists certificates by whether they were ever used.

Rules of a report:

- It holds at most ``MAX_USAGE_BATCH`` entries; a larger one, or one with a
  malformed entry, is refused whole and changes nothing.
- An entry naming a certificate or a frontdoor the registry does not know is
  counted and ignored, not an error: validators also accept certificates
  from uploaded CAs that are not recorded one by one. A deleted certificate
  counts as unknown.
- Last-seen times only move forward: an entry older than what is recorded
  changes nothing.
- A time ahead of the registry's clock is stored as the registry's current
  time, so that one validator with a fast clock cannot pin a certificate's
  last use in the future (where later, true reports could never move it).
  Times more than ``CLOCK_SKEW`` ahead are counted as ``clamped_to_now``;
  less is ordinary clock skew. Clamping rather than refusing keeps the other
  entries of the batch, and the validator would only send the same batch
  again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.common import identifiers
from services.common.certificate_facts import request_timestamp, timestamp
from services.common.clock import Clock
from services.common.database import Database
from services.common.errors import InvalidArgument
from services.common.frontdoors import check_frontdoor_name
from services.registry.models import CertificateRow, CertificateUsageRow, FrontdoorRow
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

MAX_USAGE_BATCH = 1000
CLOCK_SKEW = dt.timedelta(minutes=5)

_USAGE = CertificateUsageRow.metadata.tables[CertificateUsageRow.__tablename__]


@dataclasses.dataclass(frozen=True)
class UsageEntry:
    """One certificate accepted at one frontdoor, last at ``last_seen_at``."""

    fingerprint: str
    frontdoor: str
    last_seen_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class UsageOutcome:
    """What became of a report's entries."""

    recorded: int = 0
    unknown_certificates: int = 0
    unknown_frontdoors: int = 0
    clamped_to_now: int = 0

    def message(self) -> registry_pb2.ReportUsageResponse:
        return registry_pb2.ReportUsageResponse(
            recorded=self.recorded,
            unknown_certificates=self.unknown_certificates,
            unknown_frontdoors=self.unknown_frontdoors,
            clamped_to_now=self.clamped_to_now,
        )


def check_report(
    usage: Sequence[registry_pb2.CertificateUsage],
) -> list[UsageEntry]:
    """The entries of a report; InvalidArgument naming the first bad one."""
    if len(usage) > MAX_USAGE_BATCH:
        raise InvalidArgument(
            f"a usage report may hold at most {MAX_USAGE_BATCH} entries; this one "
            f"has {len(usage)}: send the rest in further reports"
        )

    entries = []
    for position, entry in enumerate(usage):
        where = f"usage entry {position}"
        try:
            fingerprint = identifiers.parse_fingerprint(entry.fingerprint_sha256)
        except ValueError as error:
            raise InvalidArgument(f"{where}: {error}") from None
        if not entry.frontdoor:
            raise InvalidArgument(
                f"{where}: frontdoor is empty; name the frontdoor that accepted "
                "the certificate"
            )
        try:
            check_frontdoor_name(entry.frontdoor)
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {error.message}") from None
        if not entry.HasField("last_seen_at"):
            raise InvalidArgument(
                f"{where}: last_seen_at is missing; send when the certificate was "
                "last accepted"
            )
        last_seen_at = request_timestamp(entry.last_seen_at, f"{where}: last_seen_at")
        entries.append(UsageEntry(fingerprint, entry.frontdoor, last_seen_at))
    return entries


class UsageRecords:
    """Writes usage reports and reads a certificate's last use."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def record(self, entries: Sequence[UsageEntry]) -> UsageOutcome:
        """Apply checked entries in one transaction, one upsert per entry."""
        if not entries:
            return UsageOutcome()
        now = self._clock.now()
        clamped = sum(1 for entry in entries if entry.last_seen_at > now + CLOCK_SKEW)
        # Entries repeating a certificate and frontdoor fold into the latest,
        # so each row is written once per report.
        latest: dict[tuple[str, str], dt.datetime] = {}
        for entry in entries:
            key = (entry.fingerprint, entry.frontdoor)
            seen = min(entry.last_seen_at, now)
            if key not in latest or seen > latest[key]:
                latest[key] = seen

        with self._database.writing() as session:
            # A deleted certificate is out of the inventory: its use is counted
            # as unknown, like that of a certificate never recorded.
            certificates = _ids(
                session,
                CertificateRow.fingerprint,
                CertificateRow.id,
                {fingerprint for fingerprint, _ in latest},
                CertificateRow.deleted_at.is_(None),
            )
            frontdoors = _ids(
                session,
                FrontdoorRow.name,
                FrontdoorRow.id,
                {frontdoor for _, frontdoor in latest},
            )
            rows = []
            unknown_certificates = unknown_frontdoors = 0
            for entry in entries:
                if entry.fingerprint not in certificates:
                    unknown_certificates += 1
                elif entry.frontdoor not in frontdoors:
                    unknown_frontdoors += 1
            for (fingerprint, frontdoor), seen in latest.items():
                if fingerprint in certificates and frontdoor in frontdoors:
                    rows.append(
                        {
                            "certificate_id": certificates[fingerprint],
                            "frontdoor_id": frontdoors[frontdoor],
                            "last_seen_at": seen,
                        }
                    )
            # Rows are locked in key order, so concurrent reports touching the
            # same rows wait for each other instead of deadlocking.
            rows.sort(key=lambda row: (row["certificate_id"], row["frontdoor_id"]))
            if rows:
                session.execute(_upsert(session), rows)
        return UsageOutcome(
            recorded=len(entries) - unknown_certificates - unknown_frontdoors,
            unknown_certificates=unknown_certificates,
            unknown_frontdoors=unknown_frontdoors,
            clamped_to_now=clamped,
        )


def fill_last_uses(
    session: Session,
    certificate_ids: Sequence[int],
    records: Sequence[common_pb2.CertificateRecord],
) -> None:
    """Set each record's last_used_at and last_used_frontdoor, when it was
    used: one query for a whole page, not one a record."""
    if not certificate_ids:
        return
    last: dict[int, tuple[dt.datetime, str]] = {}
    for certificate_id, seen_at, frontdoor in session.execute(
        sa.select(
            CertificateUsageRow.certificate_id,
            CertificateUsageRow.last_seen_at,
            FrontdoorRow.name,
        )
        .join(FrontdoorRow, FrontdoorRow.id == CertificateUsageRow.frontdoor_id)
        .where(CertificateUsageRow.certificate_id.in_(certificate_ids))
        .order_by(CertificateUsageRow.last_seen_at.desc(), FrontdoorRow.name)
    ):
        # The latest sighting comes first; on a tie, the first frontdoor by name.
        last.setdefault(certificate_id, (seen_at, frontdoor))
    for certificate_id, record in zip(certificate_ids, records, strict=True):
        if certificate_id in last:
            seen_at, frontdoor = last[certificate_id]
            record.last_used_at.CopyFrom(timestamp(seen_at))
            record.last_used_frontdoor = frontdoor


def check_usage_filter(usage: int) -> None:
    """InvalidArgument for a UsageFilter value this registry does not know."""
    if usage not in registry_pb2.UsageFilter.values():
        raise InvalidArgument(
            f"usage {usage} is not a usage filter; send ANY, NEVER_USED or USED"
        )


def filter_usage(statement: sa.Select[Any], usage: int) -> sa.Select[Any]:
    """The listing's clause for a UsageFilter (checked by check_usage_filter)."""
    if usage == registry_pb2.USAGE_FILTER_ANY:
        return statement
    used = (
        sa.select(CertificateUsageRow.certificate_id)
        .where(CertificateUsageRow.certificate_id == CertificateRow.id)
        .exists()
    )
    if usage == registry_pb2.USAGE_FILTER_NEVER_USED:
        return statement.where(~used)
    return statement.where(used)


def _ids(
    session: Session, key: Any, identifier: Any, wanted: set[str], *where: Any
) -> dict[str, int]:
    rows = session.execute(
        sa.select(key, identifier).where(key.in_(sorted(wanted)), *where)
    )
    return {str(name): int(row_id) for name, row_id in rows}


def _upsert(session: Session) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE that only moves last_seen_at forward."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(
            f"usage reports are written with SQLite or PostgreSQL upserts; the "
            f"{dialect} database is not supported"
        )
    statement = insert(_USAGE)
    return statement.on_conflict_do_update(
        index_elements=[_USAGE.c.certificate_id, _USAGE.c.frontdoor_id],
        set_={"last_seen_at": statement.excluded.last_seen_at},
        where=statement.excluded.last_seen_at > _USAGE.c.last_seen_at,
    )
