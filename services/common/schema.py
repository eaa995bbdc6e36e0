"""Tables shared by every service: the audit chain and job leases.

They have their own Alembic history (``services/common/migrations``, version
table ``alembic_version_common``).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored without zone and always read back as UTC.

    SQLite has no time zones, so every service stores naive UTC and gets
    aware datetimes back; mixing the two is a bug this type rules out.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class CommonBase(DeclarativeBase):
    """Declarative base of the tables every service shares."""


class AuditEventRow(CommonBase):
    """One link of the hash-chained audit log."""

    __tablename__ = "audit_events"

    sequence: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    service: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(256))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    # Canonical JSON (sorted keys, no spaces) so the hash is reproducible.
    details: Mapped[str] = mapped_column(sa.Text)
    previous_hash: Mapped[str] = mapped_column(sa.String(64))
    entry_hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHeadRow(CommonBase):
    """The newest link of the audit chain; one row, updated under lock.

    Writers update it first, which serialises them, and it lets the verifier
    notice when rows were cut off the end of the chain.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    entry_hash: Mapped[str] = mapped_column(sa.String(64))


class LeaseRow(CommonBase):
    """Who runs a periodic job until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
