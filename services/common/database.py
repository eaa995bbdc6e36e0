"""Database engines, transactions and migrations shared by the services.

Each service keeps its own tables and its own Alembic history (with its own
version table), so services can live in one SQLite file or in separate
databases. SQLite runs in WAL mode; its write transactions start with
``BEGIN IMMEDIATE`` so that a transaction which reads and then writes (the
revocation counter, the audit chain) never fails half way on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

_SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite(url: str) -> bool:
    """Whether a database URL names SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def create_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    With ``immediate`` a SQLite transaction takes the write lock when it
    begins, which write paths need; reads use an engine without it so they
    never wait for writers.
    """
    if not is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True, future=True)

    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        future=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL is a property of the file, set once by migrate(). Setting it
        # here again would race other connections opening the same file:
        # SQLite answers that pragma "database is locked" at once, without
        # waiting out the busy timeout.
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One database: a reading engine, a writing engine and their sessions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.read_engine = create_engine(url)
        self.write_engine = (
            create_engine(url, immediate=True) if is_sqlite(url) else self.read_engine
        )
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; whatever it began is rolled back at the end."""
        with self._read_sessions() as session:
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends cleanly."""
        with self._write_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()


def migrate(url: str, component: str, revision: str = "head") -> None:
    """Bring one component's tables (common, issuer, registry) to the newest
    revision (or ``revision``, for restoring an older backup), serialised
    against other processes doing the same."""
    package = "common" if component == "common" else component
    script_location = Path(__file__).resolve().parent.parent / package / "migrations"
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = f"alembic_version_{component}"

    with _migration_lock(url):
        if is_sqlite(url):
            _use_wal(url)
        command.upgrade(config, revision)


def _use_wal(url: str) -> None:
    """Put a SQLite file into WAL mode; the mode stays with the file."""
    engine = sa.create_engine(url, future=True)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """An inter-process lock around migrations: a file lock next to a SQLite
    database, an advisory lock on PostgreSQL."""
    if is_sqlite(url):
        path = _sqlite_path(url)
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.migrate.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return

    engine = sa.create_engine(url, future=True)
    try:
        with engine.connect() as connection:
            # Any constant works; this one spells "tessera" in ASCII.
            connection.exec_driver_sql("SELECT pg_advisory_lock(116101115115)")
            try:
                yield
            finally:
                connection.exec_driver_sql("SELECT pg_advisory_unlock(116101115115)")
    finally:
        engine.dispose()


def run_migrations_online(context: Any, metadata: sa.MetaData) -> None:
    """The body of every component's Alembic ``env.py``."""
    config = context.config
    version_table = config.attributes["version_table"]
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), future=True)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
