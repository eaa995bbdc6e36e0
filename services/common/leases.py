"""Database leases: exactly one replica runs each periodic job.

A lease is a row (job name, holder, expiry). A holder renews it before it
runs the job each time; another replica takes it over only after it expired,
so a crashed holder delays the job by at most one lease period.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.database import Database
from services.common.schema import LeaseRow


def holder_name() -> str:
    """A name for this process that is unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A named lease this process may hold."""

    def __init__(
        self,
        database: Database,
        name: str,
        clock: Clock,
        duration: dt.timedelta,
        holder: str | None = None,
    ) -> None:
        self.name = name
        self.holder = holder or holder_name()
        self._database = database
        self._clock = clock
        self._duration = duration

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live holder has it."""
        now = self._clock.now()
        expires_at = now + self._duration
        with self._database.writing() as session:
            taken = session.execute(
                sa.update(LeaseRow)
                .where(LeaseRow.name == self.name)
                .where(
                    sa.or_(LeaseRow.holder == self.holder, LeaseRow.expires_at < now)
                )
                .values(holder=self.holder, expires_at=expires_at)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return True
            exists = session.get(LeaseRow, self.name)
            if exists is not None:
                return False
        try:
            with self._database.writing() as session:
                session.add(
                    LeaseRow(name=self.name, holder=self.holder, expires_at=expires_at)
                )
        except IntegrityError:
            # Another replica created the row between our two transactions.
            return False
        return True

    def release(self) -> None:
        """Give the lease up so another replica can take it at once."""
        with self._database.writing() as session:
            session.execute(
                sa.delete(LeaseRow)
                .where(LeaseRow.name == self.name)
                .where(LeaseRow.holder == self.holder)
            )
