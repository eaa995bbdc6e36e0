"""Expiry alerts from two registry processes sharing one database: the lease
lets one of them send, so every notification arrives once, and the other
takes over when the first stops."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import identifiers
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.registry.test_expiry import SECRET, Receiver, verifies
from tests.registry.test_store import make_client, make_intermediate, make_root
from tests.support import (
    REPOSITORY,
    Clients,
    eventually,
    free_port,
    tessera_env,
    wait_serving,
)
from tests.test_multiprocess_revocation import Processes

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


def test_two_registry_processes_send_each_notification_once(
    clean_redis: str, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Five certificates ten days from expiry: each warns once, for the
    14-day window, though two registries scan five times a second; after
    the first registry stops, the second warns for a new certificate."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    base = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_REDIS_URL": clean_redis,
        "TESSERA_METRICS_LISTEN": "",
        "TESSERA_LOG_LEVEL": "warning",
        "TESSERA_LOG_FORMAT": "json",
        "TESSERA_REGISTRY__DATABASE_URL": database_url,
        "TESSERA_REGISTRY__EXPIRY_SCAN_SECONDS": "0.2",
        "TESSERA_REGISTRY__EXPIRY_WEBHOOK_URL": receiver.url,
        "TESSERA_REGISTRY__EXPIRY_WEBHOOK_SECRET_ENV": "EXPIRY_HOOK_KEY",
        "EXPIRY_HOOK_KEY": SECRET,
        # The processes run this tree's code, like the test itself.
        "PYTHONPATH": str(REPOSITORY),
    }
    processes = Processes(tmp_path)
    first = processes.start(
        "registry",
        "registry-a",
        tessera_env(**base, TESSERA_REGISTRY__LISTEN=addresses[0]),
    )
    processes.start(
        "registry",
        "registry-b",
        tessera_env(**base, TESSERA_REGISTRY__LISTEN=addresses[1]),
    )
    try:
        for address in addresses:
            wait_serving(address)
        clients = [Clients.connect(address, address, address) for address in addresses]
        now = dt.datetime.now(dt.UTC)
        root = make_root(now)
        intermediate = make_intermediate(root, now, "shop")
        registry = clients[0].registry
        registry.RecordCertificate(
            registry_pb2.RecordCertificateRequest(
                certificate=root.der, kind=common_pb2.CERTIFICATE_KIND_ROOT
            )
        )
        registry.RegisterFrontdoor(
            registry_pb2.RegisterFrontdoorRequest(
                name="shop", intermediate=intermediate.der
            )
        )
        fingerprints = [
            record_client(registry, make_client(intermediate, now, f"c{n}", days=10))
            for n in range(5)
        ]

        assert eventually(lambda: len(receiver.requests) >= 5, timeout=30)
        time.sleep(2)  # ten more passes of each registry, in real time
        assert receiver.windows() == {(f, 14): 1 for f in fingerprints}
        assert all(verifies(headers, body) for headers, body in receiver.requests)

        first.terminate()
        first.wait(timeout=15)
        late = record_client(
            clients[1].registry, make_client(intermediate, now, "late", days=10)
        )
        assert eventually(lambda: len(receiver.requests) >= 6, timeout=30)
        time.sleep(1)
        assert receiver.windows()[(late, 14)] == 1
        assert len(receiver.requests) == 6
        for connected in clients:
            connected.close()
    finally:
        processes.stop()

    logs = processes.logs()
    assert logs.count("certificate chain expires within its warning window") == 6
    assert SECRET not in logs


def record_client(registry: object, certificate: object) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    assert isinstance(certificate, x509.Certificate)
    registry.RecordCertificate(  # type: ignore[attr-defined]
        registry_pb2.RecordCertificateRequest(
            certificate=certificate.public_bytes(Encoding.DER),
            frontdoor="shop",
            kind=common_pb2.CERTIFICATE_KIND_CLIENT,
        )
    )
    return identifiers.fingerprint(certificate)
