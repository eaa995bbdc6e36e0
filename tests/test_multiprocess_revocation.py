"""Revocation across separate processes sharing a real Redis: the issuer,
the registry and two validators, each its own `tessera serve` process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.common.revocation_cache import KEY_PREFIX, MARKER_FIELD
from tests.support import (
    TESSERA,
    Clients,
    eventually,
    free_port,
    tessera_env,
    wait_serving,
)

pytestmark = pytest.mark.slow


class Processes:
    """`tessera serve` processes started by one test."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, service: str, name: str, environment: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = open(self._logs / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the process)
        process = subprocess.Popen(
            [TESSERA, "serve", service], env=environment, stdout=log, stderr=log
        )
        self._running.append((name, process))
        return process

    def stop(self) -> None:
        for _, process in self._running:
            process.terminate()
        for _, process in self._running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self._logs / f'{name}.log').read_text(errors='replace')}"
            for name, _ in self._running
        )


@pytest.fixture
def separate_services(
    clean_redis: str, tmp_path: Path
) -> Iterator[tuple[Clients, Clients]]:
    """Registry, issuer and two validators as separate processes; two sets of
    clients that share the issuer and registry but use different validators."""
    ports = {
        name: free_port()
        for name in ("registry", "issuer", "validator-a", "validator-b")
    }
    address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    base = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_REDIS_URL": clean_redis,
        "TESSERA_METRICS_LISTEN": "",
        "TESSERA_LOG_LEVEL": "warning",
        "TESSERA_REGISTRY__LISTEN": address["registry"],
        "TESSERA_REGISTRY__CACHE_SYNC_INTERVAL_SECONDS": "0.2",
        "TESSERA_ISSUER__LISTEN": address["issuer"],
        "TESSERA_VALIDATOR__REGISTRY_ADDRESS": address["registry"],
        "TESSERA_VALIDATOR__TRUST_STORE_TTL_SECONDS": "0",
    }
    processes = Processes(tmp_path)
    try:
        processes.start("registry", "registry", tessera_env(**base))
        wait_serving(address["registry"])
        processes.start("issuer", "issuer", tessera_env(**base))
        for validator in ("validator-a", "validator-b"):
            environment = tessera_env(
                **base, TESSERA_VALIDATOR__LISTEN=address[validator]
            )
            processes.start("validator", validator, environment)
        for name in ("issuer", "validator-a", "validator-b"):
            wait_serving(address[name])
    except Exception:
        processes.stop()
        pytest.fail(f"the services did not start:\n{processes.logs()}")

    first = Clients.connect(
        address["issuer"], address["registry"], address["validator-a"]
    )
    second = Clients.connect(
        address["issuer"], address["registry"], address["validator-b"]
    )
    yield first, second
    first.close()
    second.close()
    processes.stop()


def test_two_validator_processes_refuse_a_revoked_certificate_even_after_flush(
    separate_services: tuple[Clients, Clients], clean_redis: str
) -> None:
    """Both validators refuse a certificate revoked through the issuer; after
    FLUSHALL they still refuse it, while a good certificate stays valid."""
    first, second = separate_services
    first.create_frontdoor("payments")
    revoked = first.issue("payments")
    kept = first.issue("payments")
    for clients in (first, second):
        assert clients.validate([revoked.certificate], "payments").valid

    first.revoke(revoked.record.fingerprint_sha256, reason=1)

    for clients in (first, second):
        verdict = clients.validate([revoked.certificate], "payments")
        assert not verdict.valid
        assert list(verdict.reasons) == [7]  # VALIDATION_REASON_REVOKED
        assert verdict.revocation.reason == 1

    cache = redis.Redis.from_url(clean_redis)
    cache.flushall()
    issuer_hash = KEY_PREFIX + revoked.record.issuer_key_id
    assert cache.hget(issuer_hash, MARKER_FIELD) is None

    for clients in (first, second):
        refused = clients.validate([revoked.certificate], "payments")
        assert not refused.valid
        assert list(refused.reasons) == [7]
        assert clients.validate([kept.certificate], "payments").valid

    # The registry's cache sync rebuilds the hash, entries and marker together.
    assert eventually(lambda: cache.hget(issuer_hash, MARKER_FIELD) is not None)
    serial = revoked.record.serial_number
    assert cache.hget(issuer_hash, serial) is not None
    cache.close()
