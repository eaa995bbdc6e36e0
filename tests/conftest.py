"""Fixtures for real dependencies: Redis, PostgreSQL and a running suite.

With TESSERA_TEST_STRICT=1 (set by .ci/run) a skipped test counts as a
failure, so CI never passes because something it needs was missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from services.common.logging import configure_logging
from services.suite import Suite, start_suite
from tests.support import (
    Clients,
    SoftHsmToken,
    create_softhsm_token,
    free_port,
    suite_settings,
)

STRICT = os.environ.get("TESSERA_TEST_STRICT") == "1"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("console", "warning")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = (
            report.longrepr[2]
            if isinstance(report.longrepr, tuple)
            else report.longrepr
        )
        report.longrepr = f"skipped in strict mode (TESSERA_TEST_STRICT=1): {reason}"


# Redis ------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of the tests' own on a free port, or TESSERA_TEST_REDIS_URL."""
    if os.environ.get("TESSERA_TEST_REDIS_URL"):
        yield os.environ["TESSERA_TEST_REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; scripts/test.sh installs it")
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """The tests' Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


# PostgreSQL -------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """The PostgreSQL server the tests may use, or a skip saying why not."""
    url = os.environ.get("TESSERA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as error:  # any failure means "not reachable"
        pytest.skip(f"PostgreSQL at {url} is not reachable ({type(error).__name__})")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A fresh schema of its own for one test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_base_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_base_url else "?"
    yield f"{postgres_base_url}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database Tessera supports: SQLite in a file, PostgreSQL in a schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tessera.db'}"
    return str(request.getfixturevalue("postgres_url"))


# SoftHSM2 ----------------------------------------------------------------


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmToken:
    """A SoftHSM2 token of this test's own, in a temporary directory.

    SOFTHSM2_CONF points at the token's configuration for this test (and
    the processes it starts); the module, loaded once per process, is
    initialised again so it reads that configuration.
    """
    token = create_softhsm_token(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.directory / "softhsm2.conf"))
    monkeypatch.delenv("TESSERA_PKCS11_PIN", raising=False)
    from signers.pkcs11.module import Module

    Module.load(token.module_path).reinitialize()
    return token


# A running suite ----------------------------------------------------------


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    """All three services in this process, on embedded defaults."""
    running = start_suite(suite_settings(tmp_path / "data"))
    yield running
    running.stop()


@pytest.fixture
def clients(suite: Suite) -> Iterator[Clients]:
    """Stubs for the suite's services."""
    connected = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    yield connected
    connected.close()
