"""The public HTTP listener in processes of its own (`tessera serve
publication`) sharing one port: every process answers, and each says what
the issuer decided (revocations, renewed responders, rebuilt CRLs) at once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from services.common.config import ConfigError
from services.issuer.publication import PublicationServer
from services.suite import PUBLICATION, start_suite
from tests.issuer.ocsp_requests import cert_id, openssl_ocsp, post, request_der
from tests.issuer.test_ocsp import FRONTDOOR, Issued, issue, publishing_settings
from tests.support import (
    TESSERA,
    Clients,
    ManualClock,
    eventually,
    free_port,
    require_tool,
    run,
    suite_settings,
    tessera_env,
    wait_serving,
)
from tests.test_multiprocess_revocation import Processes


def test_publication_process_without_redis_is_refused(tmp_path: Path) -> None:
    """Without Redis the services share an in-process cache, so a
    publication process beside the issuer is a configuration error."""
    settings = suite_settings(tmp_path / "data")

    with pytest.raises(ConfigError, match="TESSERA_REDIS_URL"):
        start_suite(settings, services=[PUBLICATION])


def test_shared_publication_port_without_redis_is_refused(tmp_path: Path) -> None:
    """A port shared by several processes needs Redis: start-up says so."""
    settings = suite_settings(
        tmp_path / "data", issuer={"publication_shared_port": True}
    )

    with pytest.raises(ConfigError, match="publication_shared_port"):
        start_suite(settings)


def test_serve_publication_without_redis_exits_with_the_reason(
    tmp_path: Path,
) -> None:
    """`tessera serve publication` without Redis stops at once and says why."""
    result = run(
        [TESSERA, "serve", "publication"],
        env=tessera_env(
            TESSERA_DATA_DIR=str(tmp_path / "data"), TESSERA_METRICS_LISTEN=""
        ),
    )

    assert result.returncode != 0
    assert "TESSERA_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_listeners_share_a_port_only_when_each_asks_for_it() -> None:
    """Two listeners bound with reuse_port share a port; a third without it
    cannot bind there, and the error names the setting to change."""
    port = free_port()
    first = PublicationServer(f"127.0.0.1:{port}", [], reuse_port=True)
    second = PublicationServer(f"127.0.0.1:{port}", [], reuse_port=True)
    try:
        assert first.start() == second.start() == f"127.0.0.1:{port}"
        with pytest.raises(ConfigError, match="publication_shared_port"):
            PublicationServer(f"127.0.0.1:{port}", []).start()
    finally:
        first.stop()
        second.stop()


def test_publication_process_uses_the_responder_the_issuer_renewed(
    clean_redis: str, tmp_path: Path
) -> None:
    """A publication process never renews a responder itself; once the
    issuer renewed it at half-life, the publication process signs with the
    new one."""
    clock = ManualClock()
    issuer = start_suite(
        publishing_settings(tmp_path / "data", redis_url=clean_redis),  # type: ignore[arg-type]
        services=["registry", "issuer"],
        clock=clock,
    )
    publication = None
    clients = Clients.connect(
        issuer.address("issuer"), issuer.address("registry"), issuer.address("registry")
    )
    try:
        publication = start_suite(
            publishing_settings(  # type: ignore[arg-type]
                tmp_path / "data",
                redis_url=clean_redis,
                issuer={"registry_address": issuer.address("registry")},
            ),
            services=[PUBLICATION],
            clock=clock,
        )
        assert publication.publication is not None
        assert not publication.servers
        clients.create_frontdoor(FRONTDOOR)
        issued = issue(clients, tmp_path)
        nonce = request_der(
            [cert_id(issued.intermediate, issued.certificate.serial_number)], b"n" * 16
        )
        (before,) = post(publication.publication, nonce).ocsp().certificates

        clock.advance(dt.timedelta(days=3, hours=13))
        assert publication.ocsp_delegated is not None
        assert publication.ocsp_delegated.renew_due() == 0
        assert issuer.ocsp_delegated is not None
        assert issuer.ocsp_delegated.renew_due() == 1
        answer = post(publication.publication, nonce).ocsp()

        (after,) = answer.certificates
        assert after.serial_number != before.serial_number
        after.verify_directly_issued_by(issued.intermediate)
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    finally:
        clients.close()
        if publication is not None:
            publication.stop()
        issuer.stop()


# Separate processes ---------------------------------------------------------


@dataclasses.dataclass
class SharedPort:
    clients: Clients
    # The port both publication processes serve, as host:port.
    publication: str
    # Each publication process's metrics endpoint, by name.
    metrics: dict[str, str]
    directory: Path


@pytest.fixture
def shared_port(clean_redis: str, tmp_path: Path) -> Iterator[SharedPort]:
    """A registry, an issuer without a listener of its own, and two
    publication processes on one port, each its own `tessera serve`."""
    names = ("registry", "issuer", "metrics-a", "metrics-b", "publication")
    address = {name: f"127.0.0.1:{free_port()}" for name in names}
    base = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_REDIS_URL": clean_redis,
        "TESSERA_METRICS_LISTEN": "",
        "TESSERA_LOG_LEVEL": "warning",
        "TESSERA_REGISTRY__LISTEN": address["registry"],
        "TESSERA_ISSUER__LISTEN": address["issuer"],
        "TESSERA_ISSUER__REGISTRY_ADDRESS": address["registry"],
        "TESSERA_ISSUER__PUBLIC_BASE_URL": f"http://{address['publication']}",
        "TESSERA_ISSUER__PUBLICATION_SHARED_PORT": "true",
        # A CRL is rebuilt as soon as the job sees a revocation.
        "TESSERA_ISSUER__CRL_COALESCE_SECONDS": "0",
        "TESSERA_ISSUER__CRL_POLL_SECONDS": "0.5",
    }
    processes = Processes(tmp_path)
    try:
        processes.start("registry", "registry", tessera_env(**base))
        wait_serving(address["registry"])
        processes.start(
            "issuer",
            "issuer",
            tessera_env(**base, TESSERA_ISSUER__PUBLICATION_LISTEN=""),
        )
        wait_serving(address["issuer"])
        for name in ("a", "b"):
            processes.start(
                PUBLICATION,
                f"publication-{name}",
                tessera_env(
                    **{
                        **base,
                        "TESSERA_ISSUER__PUBLICATION_LISTEN": address["publication"],
                        "TESSERA_METRICS_LISTEN": address[f"metrics-{name}"],
                    }
                ),
            )
        for name in ("a", "b"):
            log = tmp_path / f"publication-{name}.log"
            if not eventually(lambda log=log: "Press Ctrl-C" in log.read_text(), 30):
                raise TimeoutError(f"publication-{name} did not start")
    except Exception as error:
        processes.stop()
        pytest.fail(f"the services did not start ({error!r}):\n{processes.logs()}")

    clients = Clients.connect(
        address["issuer"], address["registry"], address["registry"]
    )
    yield SharedPort(
        clients,
        address["publication"],
        {name: address[f"metrics-{name}"] for name in ("a", "b")},
        tmp_path,
    )
    clients.close()
    processes.stop()


def _counter(metrics_address: str, name: str, labels: str = "") -> float:
    """The sum of a counter's samples (whose labels include ``labels``)."""
    with urllib.request.urlopen(
        f"http://{metrics_address}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", re.MULTILINE)
    return sum(
        float(value) for found, value in pattern.findall(text) if labels in found
    )


def _gauge(metrics_address: str, name: str) -> float:
    with urllib.request.urlopen(
        f"http://{metrics_address}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _crl(address: str, issued: Issued) -> x509.CertificateRevocationList:
    with urllib.request.urlopen(
        f"http://{address}/crl/{issued.key_id}.crl", timeout=10
    ) as response:
        return x509.load_der_x509_crl(response.read())


def _crl_built(address: str, issued: Issued) -> bool:
    try:
        _crl(address, issued)
    except urllib.error.HTTPError as error:
        # 503 (with Retry-After) until the CRL is built; anything else fails.
        if error.code != 503:
            raise
        return False
    return True


# Each try opens a new connection; the kernel spreads them over both
# processes, so one process misses all of them with odds of 2 ** -TRIES.
TRIES = 24


@pytest.mark.slow
def test_publication_processes_on_one_port_agree_after_a_revocation(
    shared_port: SharedPort,
) -> None:
    """Both processes answer on the shared port; after a revocation through
    the issuer has reached them on the stream, openssl hears "revoked" on
    every try, with and without a nonce, from both processes (which held
    "good" in memory); the rebuilt CRL is then served by both."""
    require_tool("openssl")
    clients = shared_port.clients
    clients.create_frontdoor(FRONTDOOR)
    issued = issue(clients, shared_port.directory)
    serial = issued.certificate.serial_number
    plain = request_der([cert_id(issued.intermediate, serial)])
    # The issuer builds the intermediate's first CRL within a poll.
    assert eventually(lambda: _crl_built(shared_port.publication, issued), timeout=30)
    # Both processes hold "good" in memory before the revocation, for
    # requests without and with nonce, and the current CRL.
    for _ in range(TRIES):
        answer = post(shared_port.publication, plain).ocsp()
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
        with_nonce = request_der([cert_id(issued.intermediate, serial)], os.urandom(8))
        answer = post(shared_port.publication, with_nonce).ocsp()
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
        crl = _crl(shared_port.publication, issued)
        assert crl.get_revoked_certificate_by_serial_number(serial) is None
    for metrics in shared_port.metrics.values():
        assert _counter(metrics, "tessera_ocsp_responses_total") > 0

    revocation = clients.revoke(issued.fingerprint, reason=1)
    # Each process drops what it holds once the registry's stream brings the
    # revocation (milliseconds; a generous bound here). The revoking issuer
    # has already replaced the pre-signed responses in Redis.
    for metrics in shared_port.metrics.values():
        assert eventually(
            lambda metrics=metrics: (
                _gauge(metrics, "tessera_ocsp_revocation_stream_sequence")
                >= revocation.sequence
            ),
            timeout=5,
        )

    for attempt in range(TRIES):
        extra = ("-no_nonce",) if attempt % 2 else ()
        result = openssl_ocsp(
            issued.files["intermediate"],
            issued.files["certificate"],
            issued.ocsp_url,
            issued.files["root"],
            *extra,
        )
        assert result.returncode == 0, result.stderr
        assert "Response verify OK" in result.stderr, result.stderr
        assert ": revoked" in result.stdout, (attempt, result.stdout)
        assert "keyCompromise" in result.stdout, result.stdout
    for metrics in shared_port.metrics.values():
        revoked = _counter(
            metrics, "tessera_ocsp_certificate_statuses_total", 'status="revoked"'
        )
        assert revoked > 0

    assert eventually(
        lambda: (
            _crl(
                shared_port.publication, issued
            ).get_revoked_certificate_by_serial_number(serial)
            is not None
        ),
        timeout=30,
    )
    for _ in range(TRIES):
        crl = _crl(shared_port.publication, issued)
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None
        assert crl.is_signature_valid(issued.intermediate.public_key())  # type: ignore[arg-type]
