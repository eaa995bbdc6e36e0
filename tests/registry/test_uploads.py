"""UploadCertificates and RemoveTrustAnchor: certificates from the user's own
PKI, linted before anything is stored, joining a frontdoor's trust store, and
followed by the validator. Through gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.audit import verify_chain
from services.common.config import Settings
from services.common.database import Database, migrate
from services.common.revocation_cache import RedisRevocationCache
from services.common.rpc import ACTOR_HEADER
from services.common.schema import AuditEventRow
from services.registry import uploads
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.issuer.ocsp_requests import cert_id, post, request_der
from tests.registry.pki import make_ca, make_client, now
from tests.support import Clients, eventually, rpc_error, suite_settings

ERROR = registry_pb2.UploadFinding.SEVERITY_ERROR
WARNING = registry_pb2.UploadFinding.SEVERITY_WARNING
UPLOADED_CA = registry_pb2.TrustAnchor.KIND_UPLOADED_CA
PINNED = registry_pb2.TrustAnchor.KIND_PINNED_CERTIFICATE
OK = common_pb2.VALIDATION_REASON_OK
ACTOR = "alice@security"
_TABLES = [
    sa.table(name) for name in ("certificates", "trust_anchors", "revocation_log")
]

# Fixtures ------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    suite: Suite
    clients: Clients
    registry: Any
    data_dir: Path
    registry_url: str
    settings: Settings
    cache: RedisRevocationCache

    def upload(
        self, data: bytes, frontdoor: str = "payments", **fields: Any
    ) -> registry_pb2.UploadCertificatesResponse:
        response: registry_pb2.UploadCertificatesResponse = (
            self.registry.UploadCertificates(
                registry_pb2.UploadCertificatesRequest(
                    frontdoor=frontdoor, data=data, **fields
                ),
                timeout=30,
            )
        )
        return response

    def trust_store(self, frontdoor: str = "payments") -> registry_pb2.TrustStore:
        store: registry_pb2.TrustStore = self.registry.GetTrustStore(
            registry_pb2.GetTrustStoreRequest(frontdoor=frontdoor)
        )
        return store

    def row_counts(self) -> tuple[int, ...]:
        database = Database(self.registry_url)
        try:
            with database.reading() as session:
                return tuple(
                    int(
                        session.scalar(sa.select(sa.func.count()).select_from(table))
                        or 0
                    )
                    for table in _TABLES
                )
        finally:
            database.dispose()

    def audit_events(self, action: str) -> list[AuditEventRow]:
        database = Database(self.settings.audit_url)
        try:
            with database.reading() as session:
                return list(
                    session.scalars(
                        sa.select(AuditEventRow)
                        .where(AuditEventRow.action == action)
                        .order_by(AuditEventRow.sequence)
                    )
                )
        finally:
            database.dispose()


@pytest.fixture
def running(tmp_path: Path, database_url: str, clean_redis: str) -> Iterator[Running]:
    """A suite whose registry uses each supported database, with frontdoors
    "payments" and "billing" and a registry stub that names its caller."""
    data_dir = tmp_path / "data"
    settings = suite_settings(
        data_dir, redis_url=clean_redis, registry={"database_url": database_url}
    )
    suite = start_suite(settings)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    channel = grpc.intercept_channel(
        grpc.insecure_channel(
            suite.address("registry"),
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
        ),
        _Actor(),
    )
    clients.create_frontdoor("payments")
    clients.create_frontdoor("billing")
    try:
        yield Running(
            suite,
            clients,
            registry_pb2_grpc.RegistryServiceStub(channel),
            data_dir,
            database_url,
            settings,
            RedisRevocationCache(clean_redis),
        )
    finally:
        channel.close()
        clients.close()
        suite.stop()


class _Actor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Names the caller, as the CLI does."""

    def intercept_unary_unary(
        self, continuation: Any, details: Any, request: Any
    ) -> Any:
        metadata = [*(details.metadata or ()), (ACTOR_HEADER, ACTOR)]
        return continuation(
            _Details(details.method, details.timeout, metadata), request
        )


@dataclasses.dataclass
class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any = None
    wait_for_ready: Any = None
    compression: Any = None


def _codes(
    response: registry_pb2.UploadCertificatesResponse, severity: int
) -> set[str]:
    return {f.code for f in response.findings if f.severity == severity}


def _revoke(running: Running, fingerprint: str, reason: int = 1) -> None:
    running.clients.revoke(fingerprint, reason)


def _valid_at(running: Running, chain: Sequence[bytes], frontdoor: str) -> Any:
    return running.clients.validate(chain, frontdoor)


# Uploads that are stored ----------------------------------------------------


def test_uploaded_ca_is_trusted_at_its_frontdoor_only(running: Running) -> None:
    """An organisation CA uploaded for payments lets the clients it signs in
    at payments, never at billing; the upload is audited with the caller."""
    ca = make_ca()
    client = make_client(ca)

    response = running.upload(ca.pem, name="Org root")

    assert response.stored
    assert _codes(response, ERROR) == set()
    assert [c.role for c in response.certificates] == [
        registry_pb2.UploadedCertificate.ROLE_CA
    ]
    record = response.certificates[0].record
    assert record.origin == common_pb2.CERTIFICATE_ORIGIN_UPLOADED
    assert record.kind == common_pb2.CERTIFICATE_KIND_ROOT
    assert record.name == "Org root"
    anchors = {a.certificate: a.kind for a in running.trust_store().anchors}
    assert anchors[ca.der] == UPLOADED_CA
    assert ca.der not in {a.certificate for a in running.trust_store("billing").anchors}

    accepted = _valid_at(running, [client.der], "payments")
    refused = _valid_at(running, [client.der], "billing")
    assert accepted.valid, accepted.message
    assert not refused.valid
    assert list(refused.reasons) == [common_pb2.VALIDATION_REASON_UNTRUSTED_ISSUER]

    events = running.audit_events("trust_store.upload")
    assert len(events) == 1
    assert ACTOR in events[0].actor
    assert events[0].outcome == "success"
    assert ca.fingerprint in events[0].details
    assert verify_chain(Database(running.settings.audit_url)).intact


def test_uploaded_intermediate_anchors_a_path_without_its_root(
    running: Running,
) -> None:
    """An intermediate of the user's PKI uploaded alone is an anchor of its
    own, with a warning that its issuer is unknown."""
    root = make_ca()
    intermediate = make_ca("Example Org Issuing CA", issuer=root)
    client = make_client(intermediate)

    response = running.upload(intermediate.der)

    assert response.stored
    assert "anchor-without-issuer" in _codes(response, WARNING)
    assert _valid_at(running, [client.der], "payments").valid
    assert not _valid_at(running, [client.der], "billing").valid


def test_chain_as_pem_and_pkcs7_is_stored_with_each_role(running: Running) -> None:
    """A chain (root, intermediate, client) in one file: the CAs join the
    trust store, the client certificate becomes a record of origin UPLOADED."""
    root = make_ca()
    intermediate = make_ca("Example Org Issuing CA", issuer=root)
    client = make_client(intermediate)
    bundle = pkcs7.serialize_certificates(
        [client.certificate, intermediate.certificate, root.certificate],
        serialization.Encoding.DER,
    )

    response = running.upload(bundle, name="payments-api")

    assert response.stored, [f.message for f in response.findings]
    roles = {c.fingerprint_sha256: c.role for c in response.certificates}
    assert roles == {
        client.fingerprint: registry_pb2.UploadedCertificate.ROLE_CLIENT,
        intermediate.fingerprint: registry_pb2.UploadedCertificate.ROLE_CA,
        root.fingerprint: registry_pb2.UploadedCertificate.ROLE_CA,
    }
    record = running.clients.registry.GetCertificate(
        registry_pb2.GetCertificateRequest(fingerprint_sha256=client.fingerprint)
    )
    assert record.origin == common_pb2.CERTIFICATE_ORIGIN_UPLOADED
    assert record.kind == common_pb2.CERTIFICATE_KIND_CLIENT
    assert record.name == "payments-api"
    assert record.frontdoor == "payments"
    assert record.issuer_key_id == identifiers.subject_key_id(intermediate.certificate)
    kinds = [a.kind for a in running.trust_store().anchors]
    assert kinds.count(UPLOADED_CA) == 2
    assert _valid_at(running, [client.der], "payments").valid

    # The same chain as PEM, for another frontdoor: the CAs are added to its
    # trust store; the client certificate is recorded once only.
    other = make_client(intermediate, "other.example.org")
    pem = other.pem + intermediate.pem + root.pem
    again = running.upload(pem, frontdoor="billing")
    assert again.stored, [f.message for f in again.findings]
    assert "already-uploaded" in _codes(again, WARNING)
    assert _valid_at(running, [other.der], "billing").valid


def test_kind_filter_finds_uploaded_cas_as_they_are_shown(running: Running) -> None:
    """An uploaded root is listed as a root: filtering on kind ROOT at its
    frontdoor finds it, and kind INTERMEDIATE finds an uploaded intermediate."""
    root = make_ca()
    intermediate = make_ca("Example Org Issuing CA", issuer=root)
    assert running.upload(intermediate.pem + root.pem).stored

    def listed(kind: int) -> list[str]:
        response = running.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(frontdoor="payments", kind=kind)
        )
        return [r.fingerprint_sha256 for r in response.certificates]

    assert listed(common_pb2.CERTIFICATE_KIND_ROOT) == [root.fingerprint]
    intermediates = listed(common_pb2.CERTIFICATE_KIND_INTERMEDIATE)
    assert intermediate.fingerprint in intermediates
    assert root.fingerprint not in intermediates


def test_ber_pkcs7_from_openssl_is_read_without_a_warning(
    running: Running, tmp_path: Path
) -> None:
    """A DER bundle written by `openssl crl2pkcs7 -outform DER` (BER inside)
    is stored, and the library's BER warning does not reach the log."""
    ca = make_ca()
    client = make_client(ca)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(client.pem + ca.pem)
    bundle = subprocess.run(
        ["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(chain), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout

    with warnings.catch_warnings(record=True) as caught:
        response = running.upload(bundle)

    assert response.stored, [f.message for f in response.findings]
    assert {c.fingerprint_sha256 for c in response.certificates} == {
        client.fingerprint,
        ca.fingerprint,
    }
    assert [str(w.message) for w in caught if "PKCS#7" in str(w.message)] == []


def test_origin_filter_tells_issued_from_uploaded(running: Running) -> None:
    """ListCertificates filters on origin; an origin that is none is refused."""
    issued = running.clients.issue("payments").record.fingerprint_sha256
    pinned = make_client(None)
    assert running.upload(pinned.pem).stored

    def listed(origin: int) -> set[str]:
        response = running.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(
                kind=common_pb2.CERTIFICATE_KIND_CLIENT, origin=origin
            )
        )
        return {r.fingerprint_sha256 for r in response.certificates}

    assert listed(common_pb2.CERTIFICATE_ORIGIN_UPLOADED) == {pinned.fingerprint}
    assert listed(common_pb2.CERTIFICATE_ORIGIN_ISSUED) == {issued}
    assert listed(common_pb2.CERTIFICATE_ORIGIN_UNSPECIFIED) == {
        issued,
        pinned.fingerprint,
    }
    refusal = rpc_error(
        lambda: running.registry.ListCertificates(
            registry_pb2.ListCertificatesRequest(origin=9)  # type: ignore[arg-type]
        )
    )
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "origin 9 is not a certificate origin" in (refusal.details() or "")


def test_issued_certificates_say_they_were_issued(running: Running) -> None:
    record = running.clients.issue("payments").record
    assert record.origin == common_pb2.CERTIFICATE_ORIGIN_ISSUED


def test_dry_run_reports_and_stores_nothing(running: Running) -> None:
    ca = make_ca()
    before = running.clients.snapshot()
    counts = running.row_counts()

    response = running.upload(ca.pem, dry_run=True)

    assert not response.stored
    assert _codes(response, ERROR) == set()
    assert not response.certificates[0].HasField("record")
    assert running.clients.snapshot() == before
    assert running.row_counts() == counts
    assert running.audit_events("trust_store.upload") == []


def test_uploaded_client_certificate_needs_a_known_ca(running: Running) -> None:
    """A client certificate alone chains to a CA uploaded before; one whose
    CA is unknown is refused as an incomplete chain."""
    ca = make_ca()
    client = make_client(ca)
    stranger = make_client(make_ca("Unknown CA"))
    counts = running.row_counts()

    refused = running.upload(client.der)
    assert not refused.stored
    assert "incomplete-chain" in _codes(refused, ERROR)
    assert running.row_counts() == counts

    assert running.upload(ca.der).stored
    stored = running.upload(client.der)
    assert stored.stored
    assert stored.certificates[0].record.origin == (
        common_pb2.CERTIFICATE_ORIGIN_UPLOADED
    )
    assert "incomplete-chain" in _codes(running.upload(stranger.der), ERROR)


@pytest.mark.parametrize(
    "key_cert_sign", [None, False], ids=["no-key-usage", "no-key-cert-sign"]
)
def test_a_ca_that_cannot_sign_certificates_is_refused(
    running: Running, key_cert_sign: bool | None
) -> None:
    """A CA certificate without keyUsage keyCertSign (openssl's default
    for a plain ``req -x509``) would make the validator refuse everything
    under it: the lint refuses it, naming the CA, and stores nothing."""
    ca = make_ca(key_cert_sign=key_cert_sign)
    client = make_client(ca)
    counts = running.row_counts()

    for data in (ca.der, ca.pem + client.pem):
        refused = running.upload(data)
        assert not refused.stored
        findings = [
            f for f in refused.findings if f.code == "ca-cannot-sign-certificates"
        ]
        assert len(findings) == 1
        assert findings[0].severity == ERROR
        assert findings[0].fingerprint_sha256 == ca.fingerprint
        assert "keyCertSign" in findings[0].message
        assert running.row_counts() == counts


# Pins ------------------------------------------------------------------------


def test_pinned_self_signed_certificate_is_trusted_by_fingerprint_only(
    running: Running,
) -> None:
    """A self-signed client certificate is accepted with a warning and
    trusted by its exact fingerprint; another self-signed certificate with
    the same subject is not, nor is the pin at another frontdoor."""
    pinned = make_client(None, "test-client")
    lookalike = make_client(None, "test-client")

    response = running.upload(pinned.pem)

    assert response.stored
    assert "self-signed" in _codes(response, WARNING)
    assert response.certificates[0].role == registry_pb2.UploadedCertificate.ROLE_PINNED
    anchors = running.trust_store().anchors
    assert [(a.certificate, a.kind) for a in anchors if a.kind == PINNED] == [
        (pinned.der, PINNED)
    ]
    assert _valid_at(running, [pinned.der], "payments").valid
    refused = _valid_at(running, [lookalike.der], "payments")
    assert not refused.valid
    assert list(refused.reasons) == [common_pb2.VALIDATION_REASON_UNTRUSTED_ISSUER]
    assert not _valid_at(running, [pinned.der], "billing").valid


def test_remove_trust_anchor_unpins_and_removes_uploaded_cas(
    running: Running,
) -> None:
    """RemoveTrustAnchor takes a pin or an uploaded CA out of the trust
    store (audited); the validator follows; issued intermediates stay."""
    pinned = make_client(None, "test-client")
    ca = make_ca()
    client = make_client(ca)
    running.upload(pinned.pem)
    running.upload(ca.pem)
    assert _valid_at(running, [pinned.der], "payments").valid

    for removed in (pinned, ca):
        store = running.registry.RemoveTrustAnchor(
            registry_pb2.RemoveTrustAnchorRequest(
                frontdoor="payments", fingerprint_sha256=removed.fingerprint
            )
        )
        assert removed.der not in {a.certificate for a in store.anchors}

    # A removal reaches validators when their trust store and verdict
    # caches expire (README, Limitations); this suite fetches trust stores
    # on every call and keeps verdicts for one second.
    assert eventually(lambda: not _valid_at(running, [pinned.der], "payments").valid)
    assert not _valid_at(running, [client.der], "payments").valid
    events = running.audit_events("trust_store.remove")
    assert [e.outcome for e in events] == ["success", "success"]
    assert all(ACTOR in e.actor for e in events)
    assert json.loads(events[0].details)["kind"] == "pinned_certificate"

    intermediate = running.trust_store().anchors[0].certificate
    refusal = rpc_error(
        lambda: running.registry.RemoveTrustAnchor(
            registry_pb2.RemoveTrustAnchorRequest(
                frontdoor="payments",
                fingerprint_sha256=identifiers.fingerprint(
                    x509.load_der_x509_certificate(intermediate)
                ),
            )
        )
    )
    assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION
    missing = rpc_error(
        lambda: running.registry.RemoveTrustAnchor(
            registry_pb2.RemoveTrustAnchorRequest(
                frontdoor="payments", fingerprint_sha256=ca.fingerprint
            )
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert [e.outcome for e in running.audit_events("trust_store.remove")][2:] == [
        "refused",
        "refused",
    ]


# Revocation ------------------------------------------------------------------


def test_revoked_uploaded_client_certificate_is_refused(running: Running) -> None:
    """The issuer's RevokeCertificate puts an uploaded certificate on the
    local deny-list; the validator refuses it, and the issuer's own CRLs do
    not list it."""
    ca = make_ca()
    client = make_client(ca)
    by_serial = make_client(ca, "second.example.org")
    running.upload(ca.pem)
    running.upload(client.pem)
    running.upload(by_serial.pem)
    assert _valid_at(running, [client.der], "payments").valid

    _revoke(running, client.fingerprint, reason=common_pb2.REVOCATION_REASON_SUPERSEDED)
    running.clients.issuer.RevokeCertificate(
        issuer_pb2.RevokeCertificateRequest(
            serial=common_pb2.SerialInFrontdoor(
                frontdoor="payments",
                serial_number=format(by_serial.certificate.serial_number, "x"),
            ),
            reason=common_pb2.REVOCATION_REASON_CESSATION_OF_OPERATION,
        )
    )

    for revoked in (client, by_serial):
        verdict = _valid_at(running, [revoked.der], "payments")
        assert not verdict.valid
        assert list(verdict.reasons) == [common_pb2.VALIDATION_REASON_REVOKED]
    ca_key_id = identifiers.subject_key_id(ca.certificate)
    logged = running.clients.registry.ListIssuerRevocations(
        registry_pb2.ListIssuerRevocationsRequest(issuer_key_id=ca_key_id)
    )
    assert {r.revocation.fingerprint_sha256 for r in logged.revoked} == {
        client.fingerprint,
        by_serial.fingerprint,
    }

    # Not the issuer's certificates: its frontdoor CRL stays empty of them.
    intermediate_key_id = (
        running.clients.registry.GetFrontdoor(
            registry_pb2.GetFrontdoorRequest(name="payments")
        )
        .intermediates[0]
        .key_id
    )
    assert running.suite.crl_publisher is not None
    running.suite.crl_publisher.run_once()
    crl = running.clients.issuer.GetCrl(
        issuer_pb2.GetCrlRequest(key_id=intermediate_key_id)
    )
    listed = {entry.serial_number for entry in x509.load_der_x509_crl(crl.crl)}
    assert client.certificate.serial_number not in listed
    assert by_serial.certificate.serial_number not in listed
    # Nor does its OCSP responder answer for them: the CA is not its own.
    assert running.suite.publication is not None
    answer = post(
        running.suite.publication,
        request_der([cert_id(ca.certificate, client.certificate.serial_number)]),
    ).ocsp()
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_revocation_of_uploaded_certificates_rests_on_the_cache_marker(
    running: Running,
) -> None:
    """After the cache sync ran, the uploaded CA's key id has a completeness
    marker, so "not revoked" comes from the cache like for issued ones."""
    ca = make_ca()
    client = make_client(ca)
    running.upload(ca.pem)
    running.upload(client.pem)
    key_id = identifiers.subject_key_id(ca.certificate)
    cache = running.cache

    assert eventually(lambda: cache.markers([key_id]).get(key_id) is not None)
    answer = cache.lookup(key_id, format(client.certificate.serial_number, "x"))
    assert answer is not None
    assert answer.proves_not_revoked
    _revoke(running, client.fingerprint)
    assert eventually(
        lambda: (
            (
                found := cache.lookup(
                    key_id, format(client.certificate.serial_number, "x")
                )
            )
            is not None
            and found.revocation is not None
        )
    )


def test_revoked_pin_and_uploaded_ca_are_refused(running: Running) -> None:
    pinned = make_client(None, "test-client")
    ca = make_ca()
    client = make_client(ca)
    running.upload(pinned.pem)
    running.upload(ca.pem)

    _revoke(running, pinned.fingerprint)
    _revoke(running, ca.fingerprint, reason=common_pb2.REVOCATION_REASON_CA_COMPROMISE)

    assert list(_valid_at(running, [pinned.der], "payments").reasons) == [
        common_pb2.VALIDATION_REASON_REVOKED
    ]
    refused = _valid_at(running, [client.der], "payments")
    assert not refused.valid
    assert common_pb2.VALIDATION_REASON_REVOKED in refused.reasons


# Lint findings ---------------------------------------------------------------


def _refused(running: Running, data: bytes, code: str, **fields: Any) -> None:
    """The upload gets an error finding ``code`` and stores nothing."""
    before = running.clients.snapshot()
    counts = running.row_counts()
    response = running.upload(data, **fields)
    assert not response.stored
    assert code in _codes(response, ERROR), [f.message for f in response.findings]
    finding = next(f for f in response.findings if f.code == code)
    assert finding.message
    assert running.clients.snapshot() == before
    assert running.row_counts() == counts


def test_refuses_several_unrelated_certificates(running: Running) -> None:
    pem = make_ca("One CA").pem + make_ca("Another CA").pem
    _refused(running, pem, "unrelated-certificates")


def test_refuses_several_client_certificates_in_one_file(running: Running) -> None:
    ca = make_ca()
    pem = make_client(ca).pem + make_client(ca, "b.example.org").pem + ca.pem
    _refused(running, pem, "not-a-chain")


def test_refuses_expired_and_not_yet_valid_certificates(running: Running) -> None:
    ca = make_ca()
    running.upload(ca.pem)
    expired = make_client(
        ca,
        not_before=now() - dt.timedelta(days=30),
        not_after=now() - dt.timedelta(days=1),
    )
    future = make_client(ca, not_before=now() + dt.timedelta(days=2))
    _refused(running, expired.pem, "expired")
    _refused(running, future.pem, "not-yet-valid")


def test_refuses_a_1024_bit_rsa_key(running: Running) -> None:
    weak = make_client(None, key=rsa.generate_private_key(65537, 1024))  # noqa: S505
    _refused(running, weak.pem, "weak-key")


def _errors(response: registry_pb2.UploadCertificatesResponse) -> list[str]:
    return [f.code for f in response.findings if f.severity == ERROR]


def test_one_error_per_problem_with_its_own_code(running: Running) -> None:
    """A weak key or a missing clientAuth is one error each, with its own
    code, not repeated by the path check under another code."""
    ca = make_ca()
    assert running.upload(ca.pem).stored
    weak = make_client(ca, key=rsa.generate_private_key(65537, 1024))  # noqa: S505
    server_only = make_client(ca, usages=(ExtendedKeyUsageOID.SERVER_AUTH,))

    assert _errors(running.upload(weak.pem)) == ["weak-key"]
    assert _errors(running.upload(server_only.pem)) == ["wrong-usage"]
    assert _errors(running.upload(weak.pem + ca.pem)) == ["weak-key"]


def test_refuses_key_types_the_frontdoor_does_not_allow(running: Running) -> None:
    p521 = make_client(None, key=ec.generate_private_key(ec.SECP521R1()))
    _refused(running, p521.pem, "key-type-not-allowed")


def test_refuses_a_client_certificate_without_client_auth(running: Running) -> None:
    server_only = make_client(None, usages=(ExtendedKeyUsageOID.SERVER_AUTH,))
    _refused(running, server_only.pem, "wrong-usage")


def test_warns_of_missing_eku_and_revocation_information(running: Running) -> None:
    ca = make_ca()
    running.upload(ca.pem)
    bare = make_client(ca, usages=None, revocation_information=False)
    response = running.upload(bare.pem)
    assert response.stored
    assert {"missing-client-auth", "no-revocation-information"} <= _codes(
        response, WARNING
    )


def test_duplicate_key_warns_and_compromised_key_is_refused(running: Running) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = make_client(None, "first", key=key)
    second = make_client(None, "second", key=key)
    assert running.upload(first.pem).stored

    duplicate = running.upload(second.pem, dry_run=True)
    assert "duplicate-key" in _codes(duplicate, WARNING)
    assert not _codes(duplicate, ERROR)

    _revoke(running, first.fingerprint, common_pb2.REVOCATION_REASON_KEY_COMPROMISE)
    _refused(running, second.pem, "compromised-key")


def test_refuses_certificates_tessera_issued(running: Running) -> None:
    issued = running.clients.issue("payments").record.certificate
    pem = x509.load_der_x509_certificate(issued).public_bytes(
        serialization.Encoding.PEM
    )
    _refused(running, pem, "issued-by-tessera")


def test_refuses_a_second_upload_of_the_same_certificate(running: Running) -> None:
    pinned = make_client(None)
    assert running.upload(pinned.pem).stored
    _refused(running, pinned.pem, "already-uploaded")


def test_full_chain_with_a_ca_trusted_already_is_stored(running: Running) -> None:
    """A client certificate uploaded with its CA (a full-chain file, PEM or
    PKCS#7) after the CA was uploaded for the frontdoor is stored; the CA gets
    a warning and no second anchor. The CA alone again is still refused."""
    ca = make_ca()
    assert running.upload(ca.pem).stored
    anchors = len(running.trust_store().anchors)
    first = make_client(ca, "first.example.org")
    second = make_client(ca, "second.example.org")
    bundle = pkcs7.serialize_certificates(
        [second.certificate, ca.certificate], serialization.Encoding.DER
    )

    for data, client in ((first.pem + ca.pem, first), (bundle, second)):
        response = running.upload(data, name=client.fingerprint[:8])
        assert response.stored, [f.message for f in response.findings]
        assert _codes(response, ERROR) == set()
        warned = [f for f in response.findings if f.code == "already-uploaded"]
        assert [f.fingerprint_sha256 for f in warned] == [ca.fingerprint]
        assert warned[0].severity == WARNING
        record = running.clients.registry.GetCertificate(
            registry_pb2.GetCertificateRequest(fingerprint_sha256=client.fingerprint)
        )
        assert record.name == client.fingerprint[:8]
        assert _valid_at(running, [client.der], "payments").valid
    assert len(running.trust_store().anchors) == anchors
    audited = json.loads(running.audit_events("trust_store.upload")[-1].details)
    assert {
        c["fingerprint"]: c["already_trusted"] for c in audited["certificates"]
    } == {second.fingerprint: False, ca.fingerprint: True}
    _refused(running, ca.pem, "already-uploaded")


# Bad input -------------------------------------------------------------------


def _invalid(running: Running, data: bytes, words: str, **fields: Any) -> str:
    """The upload is INVALID_ARGUMENT with a message containing ``words``;
    nothing is stored."""
    before = running.clients.snapshot()
    counts = running.row_counts()
    error = rpc_error(lambda: running.upload(data, **fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert words in (error.details() or ""), error.details()
    assert running.clients.snapshot() == before
    assert running.row_counts() == counts
    return error.details() or ""


def test_refuses_garbage(running: Running) -> None:
    _invalid(running, b"\x00\x01garbage" * 50, "not a certificate")
    _invalid(running, b"", "empty")
    _invalid(
        running,
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "readable X.509",
    )
    _invalid(
        running,
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
        b"-----END CERTIFICATE REQUEST-----\n",
        "not a certificate",
    )


def test_refuses_a_10_mb_file_with_a_clear_error(running: Running) -> None:
    """gRPC's own limit lies above the upload limit, so the caller reads
    Tessera's sentence, not the transport's."""
    message = _invalid(running, b"\x30" * (10 * 1024 * 1024), "1 MiB")
    assert "10485760 bytes" in message


def test_refuses_names_with_control_characters(running: Running) -> None:
    _invalid(running, make_ca().pem, "control", name="evil\x1b[31mname")
    _invalid(running, make_ca().pem, "control", name="two\nlines")


def test_unknown_frontdoor_is_not_found(running: Running) -> None:
    error = rpc_error(lambda: running.upload(make_ca().pem, frontdoor="nowhere"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def _private_key_uploads() -> dict[str, tuple[bytes, bytes]]:
    """Uploads holding a private key, each with the key's PKCS#8 DER to
    search for afterwards."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(65537, 2048)
    certificate = make_client(None, key=ec_key)
    uploads = {}
    for name, key in (("ec", ec_key), ("rsa", rsa_key)):
        pkcs8 = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        uploads[f"pem-pkcs8-{name}"] = (
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            pkcs8,
        )
        uploads[f"pem-traditional-{name}"] = (
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            pkcs8,
        )
        uploads[f"pem-encrypted-{name}"] = (
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret passphrase"),
            ),
            pkcs8,
        )
        uploads[f"der-pkcs8-{name}"] = (pkcs8, pkcs8)
        uploads[f"der-encrypted-{name}"] = (
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret passphrase"),
            ),
            pkcs8,
        )
    ec_pkcs8 = uploads["der-pkcs8-ec"][1]
    uploads["pem-certificate-and-key"] = (
        certificate.pem + uploads["pem-pkcs8-ec"][0],
        ec_pkcs8,
    )
    uploads["pkcs12-no-password"] = (
        pkcs12.serialize_key_and_certificates(
            b"client", ec_key, certificate.certificate, None,
            serialization.NoEncryption(),
        ),
        ec_pkcs8,
    )  # fmt: skip
    uploads["pkcs12-password"] = (
        pkcs12.serialize_key_and_certificates(
            b"client", ec_key, certificate.certificate, None,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        ),
        ec_pkcs8,
    )  # fmt: skip
    return uploads


def test_refuses_private_keys_and_keeps_them_nowhere(
    running: Running,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every form of private key is refused with the same sentence; neither
    the key nor the file reaches a log, the database, the audit table or a
    temporary file."""
    caplog.set_level(logging.DEBUG)
    # Temporary files of this process (the servers run in it) land here.
    private_temp = running.data_dir.parent / "temp"
    private_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_temp))
    monkeypatch.setenv("TMPDIR", str(private_temp))
    data_before = set(running.data_dir.rglob("*"))
    uploads = _private_key_uploads()

    for name, (data, _) in uploads.items():
        message = _invalid(running, data, "private keys", name=name)
        assert "never accepts private keys" in message, name

    # Only refusals were audited, each without the file.
    events = running.audit_events("trust_store.upload")
    assert len(events) == len(uploads)
    assert {e.outcome for e in events} == {"refused"}

    output = capfd.readouterr()
    logged = caplog.text + output.out + output.err
    stored = _database_bytes(running)
    for name, (data, pkcs8) in uploads.items():
        for secret in _secret_forms(data, pkcs8):
            assert secret not in logged.encode(), name
            assert secret not in stored, name
    assert list(private_temp.iterdir()) == []
    new_files = set(running.data_dir.rglob("*")) - data_before
    assert not [p for p in new_files if p.suffix not in (".db-wal", ".db-shm")]


def _secret_forms(data: bytes, pkcs8: bytes) -> list[bytes]:
    """Pieces of the upload and the key as they could be written down: raw,
    as hex, and a stretch of the base64 body of a PEM."""
    import base64

    forms = [pkcs8[-40:], pkcs8[-40:].hex().encode(), data[-64:]]
    forms.append(base64.b64encode(pkcs8)[-40:])
    if data.startswith(b"-----"):
        forms.append(data.splitlines()[2])
    return forms


def _database_bytes(running: Running) -> bytes:
    """Everything the registry and audit databases hold, as bytes: the
    SQLite files (and their WAL) or a dump of every PostgreSQL row."""
    if running.registry_url.startswith("sqlite"):
        files = [p for p in running.data_dir.rglob("*") if ".db" in p.name]
        files += list(Path(running.registry_url[10:]).parent.glob("*.db*"))
        return b"".join(p.read_bytes() for p in files)
    database = Database(running.registry_url)
    try:
        with database.reading() as session:
            parts = []
            for table in _TABLES:
                for row in session.execute(sa.select(sa.text("*")).select_from(table)):
                    parts.append(repr(tuple(row)).encode())
            return b"".join(parts) + b"".join(
                p.read_bytes() for p in running.data_dir.rglob("*.db*")
            )
    finally:
        database.dispose()


def test_upload_limits_are_stated_in_bytes() -> None:
    """The client side refuses an oversized file before sending it."""
    from services.cli.uploads import read_upload_file

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "big.pem"
        path.write_bytes(b"x" * (2 * 1024 * 1024))
        with pytest.raises(ValueError, match="1 MiB"):
            read_upload_file(path)


def test_migration_marks_older_records_issued_with_their_key_hash(
    database_url: str,
) -> None:
    """r0004 gives every record made before it origin "issued" and the hash
    of its public key, so the duplicate-key lint sees older records too."""
    from tests.registry.test_store import _migrate_registry_to

    existing = make_client(None, "older")
    # Alembic's configuration interpolates "%", as migrate() knows.
    _migrate_registry_to(database_url.replace("%", "%%"), "r0002")
    engine = sa.create_engine(database_url)
    moment = now().replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO certificates (id, fingerprint, serial_number, "
                "issuer_key_id, subject_key_id, kind, name, subject, "
                "subject_alt_names, not_valid_before, not_valid_after, key_type, "
                "status, created_at, der) VALUES (1, 'f', '1', 'k', '', 'client', "
                "'', '', '[]', :now, :now, 'ec', 'active', :now, :der)"
            ),
            {"now": moment, "der": existing.der},
        )
    engine.dispose()

    migrate(database_url, "registry")

    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT origin, spki_sha256 FROM certificates")
        ).all()
    engine.dispose()
    assert rows == [("issued", facts.spki_sha256(existing.certificate.public_key()))]


def test_refuses_to_record_a_deleted_certificate_again(running: Running) -> None:
    """A deleted certificate, uploaded or issued, is not recorded again: the
    report says it was deleted (dry run or not), and nothing is stored."""
    ca = make_ca()
    client = make_client(ca)
    running.upload(ca.pem)
    assert running.upload(client.pem).stored
    issued = running.clients.issue("payments").record
    issued_pem = x509.load_der_x509_certificate(issued.certificate).public_bytes(
        serialization.Encoding.PEM
    )
    for fingerprint in (client.fingerprint, issued.fingerprint_sha256):
        _revoke(running, fingerprint)
        running.registry.DeleteCertificate(
            registry_pb2.DeleteCertificateRequest(fingerprint_sha256=fingerprint)
        )

    for pem in (client.pem, issued_pem):
        _refused(running, pem, "deleted", dry_run=True)
        _refused(running, pem, "deleted")
        finding = next(f for f in running.upload(pem).findings if f.code == "deleted")
        assert "a deleted certificate is not recorded again" in finding.message
    missing = rpc_error(
        lambda: running.registry.GetCertificate(
            registry_pb2.GetCertificateRequest(fingerprint_sha256=client.fingerprint)
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


# Uploaded roots in the inventory ------------------------------------------------


def test_an_uploaded_root_is_a_ca_and_a_root_in_the_inventory(
    running: Running,
) -> None:
    """An uploaded self-signed CA counts as a CA: its revocation impact names
    the certificates below it, it cannot be deleted (nothing is removed), and
    ListCertificates(kind=ROOT) lists it with the platform root."""
    ca = make_ca("Uploaded Org Root")
    running.upload(ca.pem, name="Org root")
    clients = [make_client(ca, f"leaf-{i}.example.org") for i in range(3)]
    for client in clients:
        assert running.upload(client.pem).stored

    impact = running.registry.GetRevocationImpact(
        registry_pb2.GetRevocationImpactRequest(fingerprint_sha256=ca.fingerprint)
    )
    assert impact.affected_certificates == 3
    assert {c.fingerprint_sha256 for c in impact.certificates} == {
        c.fingerprint for c in clients
    }

    roots = running.registry.ListCertificates(
        registry_pb2.ListCertificatesRequest(
            kind=common_pb2.CERTIFICATE_KIND_ROOT, page_size=100
        )
    ).certificates
    listed = {c.fingerprint_sha256: c.kind for c in roots}
    assert listed[ca.fingerprint] == common_pb2.CERTIFICATE_KIND_ROOT
    assert set(listed.values()) == {common_pb2.CERTIFICATE_KIND_ROOT}
    assert len(listed) == 2  # the platform root and the uploaded one

    _revoke(running, ca.fingerprint)
    before = running.row_counts()
    refusal = rpc_error(
        lambda: running.registry.DeleteCertificate(
            registry_pb2.DeleteCertificateRequest(fingerprint_sha256=ca.fingerprint)
        )
    )
    assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CA certificate" in (refusal.details() or "")
    assert running.row_counts() == before
    record = running.registry.GetCertificate(
        registry_pb2.GetCertificateRequest(fingerprint_sha256=ca.fingerprint)
    )
    assert record.kind == common_pb2.CERTIFICATE_KIND_ROOT


# Hostile files ---------------------------------------------------------------


def _quickly(seconds: float, call: Any) -> Any:
    """``call()``'s result, asserting it took at most ``seconds``."""
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return result


@pytest.mark.parametrize(
    "unit",
    [
        b"-----BEGIN CERTIFICATE-----\nAAAA\n",
        b"-----BEGIN CERTIFICATE-----\n-----END PKCS7-----\n",
    ],
    ids=["no-end-lines", "end-lines-of-another-label"],
)
def test_a_megabyte_of_unmatched_begin_lines_is_refused_at_once(
    running: Running, unit: bytes
) -> None:
    """PEM blocks are found line by line, so a file of BEGIN lines without
    their END lines costs time in proportion to its size."""
    data = unit * (uploads.MAX_UPLOAD_BYTES // len(unit))
    _quickly(3, lambda: _invalid(running, data, "without its matching END line"))


def test_refuses_a_client_certificate_with_too_many_names(running: Running) -> None:
    """45,000 names fit in less than 1 MiB; the lint refuses them before
    anything is written, so the upload holds no lock for long."""
    ca = make_ca()
    assert running.upload(ca.pem).stored
    hosts = [f"h{i}.example.com" for i in range(45_000)]
    crowded = make_client(ca, more_names=hosts)
    assert len(crowded.der) < uploads.MAX_UPLOAD_BYTES
    _quickly(5, lambda: _refused(running, crowded.der, "too-many-names"))

    limit = uploads.MAX_SUBJECT_ALT_NAMES
    most = make_client(ca, more_names=hosts[: limit - 1])
    response = _quickly(5, lambda: running.upload(most.der))
    assert response.stored, [f.message for f in response.findings]
    record = response.certificates[0].record
    assert len(record.subject_alt_names) == limit


def test_record_certificate_refuses_too_many_names(running: Running) -> None:
    ca = make_ca()
    crowded = make_client(ca, more_names=[f"h{i}.example.com" for i in range(2_000)])
    counts = running.row_counts()
    error = rpc_error(
        lambda: running.registry.RecordCertificate(
            registry_pb2.RecordCertificateRequest(
                certificate=crowded.der,
                frontdoor="payments",
                kind=common_pb2.CERTIFICATE_KIND_CLIENT,
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2001 subject alternative names" in (error.details() or "")
    assert running.row_counts() == counts


def _pkcs8_body(key: Any) -> bytes:
    """A PKCS#8 PEM key without its BEGIN and END lines."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return b"".join(pem.splitlines(keepends=True)[1:-1])


def test_refuses_base64_text_outside_pem_blocks(running: Running) -> None:
    """A key pasted without its BEGIN and END lines, after or between
    certificates, is refused."""
    ca = make_ca()
    client = make_client(ca)
    body = _pkcs8_body(client.key)
    for data in (
        ca.pem + body,
        ca.pem + body + client.pem,
        body.replace(b"\n", b"\r\n") + ca.pem,
        ca.pem
        + b"\n".join(body.replace(b"\n", b"")[i : i + 8] for i in range(0, 64, 8)),
    ):
        _invalid(running, data, "text outside PEM blocks")


def test_accepts_openssl_text_and_bag_attributes_around_blocks(
    running: Running,
) -> None:
    """What openssl prints around certificates (x509 -text, pkcs12 bag
    attributes, s_client -showcerts) is ignored."""
    ca = make_ca()
    client = make_client(ca)
    text = (
        b"Bag Attributes\n"
        b"    localKeyID: 5A 3F 01 22 9B\n"
        b"    friendlyName: client\n"
        b"subject=CN = client.example.org\n"
        b"issuer=CN = Example Org Root\n"
        b"Certificate:\n"
        b"    Data:\n"
        b"        Version: 3 (0x2)\n"
        b"        Serial Number:\n"
        b"            04:3a:9f:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd\n"
        b"    Signature Algorithm: ecdsa-with-SHA256\n"
        b"# a comment\n"
        b"---\n"
        b"Certificate chain\n"
        b" 0 s:CN = client.example.org\n"
        b"   i:CN = Example Org Root\n"
    )
    response = running.upload(text + client.pem + b"\n" + text + ca.pem + text)
    assert response.stored, [f.message for f in response.findings]
    assert len(response.certificates) == 2


def test_lowercase_private_key_labels_are_refused_as_keys(running: Running) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).replace(b"PRIVATE KEY", b"private key")
    _invalid(running, make_ca().pem + pem, "never accepts private keys")
    unmatched = pem.replace(b"END private key", b"END PRIVATE KEY")
    _invalid(running, make_ca().pem + unmatched, "never accepts private keys")


def test_pkcs12_with_certificates_only_is_refused_without_speaking_of_keys(
    running: Running,
) -> None:
    ca = make_ca()
    client = make_client(ca)
    data = pkcs12.serialize_key_and_certificates(
        b"client", None, client.certificate, [ca.certificate],
        serialization.NoEncryption(),
    )  # fmt: skip
    message = _invalid(running, data, "PKCS#12 (PFX) files are not accepted")
    assert "private key" not in message
    assert "openssl pkcs12 -nokeys" in message


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_refuses_names_with_line_separators(running: Running, separator: str) -> None:
    _invalid(running, make_ca().pem, "line separators", name=f"one{separator}two")
