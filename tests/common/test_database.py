"""Tests for the shared database helpers."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import sqlalchemy as sa

from services.common.database import Database, migrate


def test_migrate_leaves_sqlite_in_wal_mode(tmp_path: Path) -> None:
    """WAL is set once on the file, so opening connections never changes it."""
    url = f"sqlite:///{tmp_path / 'tessera.db'}"
    migrate(url, "common")

    with contextlib.closing(sqlite3.connect(tmp_path / "tessera.db")) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()

    assert mode == "wal"


def test_many_engines_open_one_file_at_once(tmp_path: Path) -> None:
    """Fresh connections opened together wait for each other, never fail."""
    url = f"sqlite:///{tmp_path / 'tessera.db'}"
    migrate(url, "common")
    errors: list[BaseException] = []

    def open_and_write(barrier: threading.Barrier) -> None:
        database = Database(url)
        barrier.wait()
        try:
            with database.writing() as session:
                session.execute(sa.text("UPDATE audit_head SET sequence = sequence"))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            database.dispose()

    for _ in range(20):
        barrier = threading.Barrier(6)
        threads = [
            threading.Thread(target=open_and_write, args=(barrier,)) for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == []
