"""CRL rebuilds with two issuer processes (and a registry, with Redis):
the leased job runs in one of them, so there is one sequence of CRL
numbers and each rebuild happens once, while both serve the same CRL."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from tests.support import (
    Clients,
    eventually,
    free_port,
    tessera_env,
    wait_serving,
)
from tests.test_multiprocess_revocation import Processes

pytestmark = pytest.mark.slow
FRONTDOOR = "payments"


class IssuerProcesses(Processes):
    """The test's processes, of which one can be stopped alone."""

    def pid(self, name: str) -> int:
        return next(process.pid for each, process in self._running if each == name)

    def terminate(self, name: str) -> None:
        """Stop one process as an operator would (SIGTERM) and wait for it."""
        for each, process in self._running:
            if each == name:
                process.terminate()
                process.wait(timeout=30)


@dataclasses.dataclass
class TwoIssuers:
    clients: dict[str, Clients]
    publications: dict[str, str]
    database: Path
    processes: IssuerProcesses


@pytest.fixture
def two_issuers(clean_redis: str, tmp_path: Path) -> Iterator[TwoIssuers]:
    """A registry and two issuers ("a" and "b") on one database."""
    ports = {name: free_port() for name in ("registry", "a", "b", "pub-a", "pub-b")}
    address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    base = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_REDIS_URL": clean_redis,
        "TESSERA_METRICS_LISTEN": "",
        "TESSERA_LOG_LEVEL": "warning",
        "TESSERA_REGISTRY__LISTEN": address["registry"],
        "TESSERA_ISSUER__REGISTRY_ADDRESS": address["registry"],
        "TESSERA_ISSUER__PUBLIC_BASE_URL": f"http://{address['pub-a']}",
        "TESSERA_ISSUER__CRL_POLL_SECONDS": "0.5",
        "TESSERA_ISSUER__CRL_COALESCE_SECONDS": "1",
    }
    processes = IssuerProcesses(tmp_path)
    try:
        processes.start("registry", "registry", tessera_env(**base))
        wait_serving(address["registry"])
        for name in ("a", "b"):
            environment = tessera_env(
                **base,
                TESSERA_ISSUER__LISTEN=address[name],
                TESSERA_ISSUER__PUBLICATION_LISTEN=address[f"pub-{name}"],
            )
            processes.start("issuer", f"issuer-{name}", environment)
            # One after the other: both would create the root otherwise.
            wait_serving(address[name])
    except Exception:
        processes.stop()
        pytest.fail(f"the services did not start:\n{processes.logs()}")

    clients = {
        name: Clients.connect(address[name], address["registry"], address["registry"])
        for name in ("a", "b")
    }
    yield TwoIssuers(
        clients=clients,
        publications={name: address[f"pub-{name}"] for name in ("a", "b")},
        database=tmp_path / "data" / "tessera.db",
        processes=processes,
    )
    for each in clients.values():
        each.close()
    processes.stop()


def _fetch(publication: str, key_id: str) -> x509.CertificateRevocationList | None:
    try:
        with urllib.request.urlopen(
            f"http://{publication}/crl/{key_id}.crl", timeout=5
        ) as response:
            return x509.load_der_x509_crl(response.read())
    except OSError:
        return None


def _crl_signatures(database: Path) -> list[tuple[str, dict[str, object]]]:
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT actor, details FROM audit_events WHERE action = 'crl.sign' "
                "AND outcome = 'success' ORDER BY sequence"
            )
        ).all()
    engine.dispose()
    return [(actor, json.loads(details)) for actor, details in rows]


def _listed(publications: list[str], key_id: str, serials: set[int]) -> bool:
    crls = [_fetch(publication, key_id) for publication in publications]
    return all(
        crl is not None and {entry.serial_number for entry in crl} == serials
        for crl in crls
    )


def test_two_issuer_processes_rebuild_each_crl_once(two_issuers: TwoIssuers) -> None:
    """Two revocations reach the CRL both processes serve within seconds;
    the audit log shows one signing process, CRL numbers that only grow,
    and no log position signed twice for one CA."""
    clients = two_issuers.clients["a"]
    publications = list(two_issuers.publications.values())
    database = two_issuers.database
    frontdoor = clients.create_frontdoor(FRONTDOOR)
    key_id = frontdoor.intermediates[0].key_id
    first = clients.issue(FRONTDOOR).record
    second = clients.issue(FRONTDOOR).record
    clients.issue(FRONTDOOR)

    def listed(serials: set[int]) -> bool:
        return _listed(publications, key_id, serials)

    assert eventually(lambda: listed(set()), timeout=30)
    started = time.monotonic()
    clients.revoke(first.fingerprint_sha256)
    assert eventually(lambda: listed({int(first.serial_number, 16)}), timeout=30)
    clients.revoke(second.fingerprint_sha256)
    expected = {int(first.serial_number, 16), int(second.serial_number, 16)}
    assert eventually(lambda: listed(expected), timeout=30)
    assert time.monotonic() - started < 30

    signatures = _crl_signatures(database)
    assert len({actor for actor, _ in signatures}) == 1, signatures
    mine = [details for _, details in signatures if details["issuer_key_id"] == key_id]
    numbers = [int(str(details["crl_number"])) for details in mine]
    assert numbers == sorted(set(numbers))
    positions = [details["revocation_sequence"] for details in mine]
    assert len(positions) == len(set(positions)), mine
    assert 2 <= len(mine) <= 4, mine


def test_other_issuer_process_takes_over_when_the_rebuilder_stops(
    two_issuers: TwoIssuers,
) -> None:
    """When the process that rebuilds CRLs stops, it gives up the lease and
    the other one publishes the next revocation, continuing the numbers."""
    first = two_issuers.clients["a"]
    frontdoor = first.create_frontdoor(FRONTDOOR)
    key_id = frontdoor.intermediates[0].key_id
    record = first.issue(FRONTDOOR).record
    publications = list(two_issuers.publications.values())
    assert eventually(lambda: _listed(publications, key_id, set()), timeout=30)
    (holder,) = {actor for actor, _ in _crl_signatures(two_issuers.database)}
    rebuilder = next(
        name
        for name in ("a", "b")
        if f":{two_issuers.processes.pid(f'issuer-{name}')}:" in holder
    )
    survivor = "b" if rebuilder == "a" else "a"

    two_issuers.processes.terminate(f"issuer-{rebuilder}")
    started = time.monotonic()
    two_issuers.clients[survivor].revoke(record.fingerprint_sha256)

    serials = {int(record.serial_number, 16)}
    survivor_publication = [two_issuers.publications[survivor]]
    assert eventually(
        lambda: _listed(survivor_publication, key_id, serials), timeout=30
    )
    assert time.monotonic() - started < 30
    signatures = [
        (actor, details)
        for actor, details in _crl_signatures(two_issuers.database)
        if details["issuer_key_id"] == key_id
    ]
    assert signatures[-1][0] != holder
    numbers = [int(str(details["crl_number"])) for _, details in signatures]
    assert numbers == sorted(set(numbers))
