"""What Tessera's certificates contain (RFC 5280 section 4): client
certificates issued from CSRs, frontdoor intermediates and the platform
root, the key types the issuer accepts, and the audit entries around every
signature and revocation."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    ObjectIdentifier,
)

from services.common.audit import verify_chain
from services.common.config import Settings
from services.common.database import Database
from services.common.schema import AuditEventRow
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2
from tests.support import (
    Clients,
    make_csr,
    require_tool,
    rpc_error,
    run,
    suite_settings,
)

FRONTDOOR = "payments"
# Given with a trailing slash, which the issuer drops.
PUBLIC_BASE_URL = "https://pki.example.test/tessera"
BACKDATE = dt.timedelta(minutes=1)
# Room for the time an issuance takes and for whole-second encoding.
SLACK = dt.timedelta(seconds=5)
ALL_KEY_TYPES = ["rsa", "ec-p256", "ec-p384", "ed25519"]


@dataclasses.dataclass
class Running:
    """A started suite, its settings and clients."""

    suite: Suite
    settings: Settings
    clients: Clients

    def audit_events(self) -> list[AuditEventRow]:
        database = Database(self.settings.audit_url)
        try:
            with database.reading() as session:
                return list(
                    session.scalars(
                        sa.select(AuditEventRow).order_by(AuditEventRow.sequence)
                    )
                )
        finally:
            database.dispose()

    def audit_chain_is_intact(self) -> bool:
        database = Database(self.settings.audit_url)
        try:
            return verify_chain(database).intact
        finally:
            database.dispose()


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """A suite of its own for a test that needs other settings."""
    suite = start_suite(settings)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        yield Running(suite, settings, clients)
    finally:
        clients.close()
        suite.stop()


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One suite for the module, publishing under PUBLIC_BASE_URL, with the
    frontdoor "payments" on default settings."""
    data_dir = tmp_path_factory.mktemp("issuer-profile") / "data"
    settings = suite_settings(
        data_dir, issuer={"public_base_url": PUBLIC_BASE_URL + "/"}
    )
    with running(settings) as started:
        started.clients.create_frontdoor(FRONTDOOR)
        yield started


@pytest.fixture
def clients(installation: Running) -> Clients:
    """The module's clients, in place of conftest's suite of its own."""
    return installation.clients


def _certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _extension(certificate: x509.Certificate, kind: type[Any]) -> x509.Extension[Any]:
    return certificate.extensions.get_extension_for_class(kind)


def _key_id(certificate: x509.Certificate) -> str:
    return _extension(certificate, x509.SubjectKeyIdentifier).value.digest.hex()


def _issue(clients: Clients, csr: bytes | None = None, **fields: Any) -> Any:
    return clients.issue(FRONTDOOR, csr, **fields)


def _root(clients: Clients) -> x509.Certificate:
    root = clients.issuer.GetPlatformRoot(issuer_pb2.GetPlatformRootRequest())
    return _certificate(root.certificate)


def _intermediate(clients: Clients, frontdoor: str = FRONTDOOR) -> x509.Certificate:
    record = clients.issuer.GetFrontdoor(issuer_pb2.GetFrontdoorRequest(name=frontdoor))
    return _certificate(record.intermediates[0].certificate)


# Validity -----------------------------------------------------------------


def test_default_validity_is_365_days(clients: Clients) -> None:
    before = dt.datetime.now(dt.UTC)
    certificate = _certificate(_issue(clients).certificate)
    after = dt.datetime.now(dt.UTC)

    assert before - BACKDATE - SLACK <= certificate.not_valid_before_utc <= after
    issued_at = certificate.not_valid_before_utc + BACKDATE
    lifetime = certificate.not_valid_after_utc - issued_at
    assert abs(lifetime - dt.timedelta(days=365)) < SLACK


def test_requested_validity_is_used(clients: Clients) -> None:
    certificate = _certificate(_issue(clients, validity_days=30).certificate)

    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=30) - BACKDATE) < SLACK


@pytest.mark.parametrize("validity_days", [0, 30, 365])
def test_validity_never_passes_the_intermediates_not_after(
    tmp_path: Path, validity_days: int
) -> None:
    """With a 10-day intermediate, every client certificate ends with it."""
    settings = suite_settings(
        tmp_path / "data", issuer={"intermediate_validity_days": 10}
    )
    with running(settings) as started:
        started.clients.create_frontdoor(FRONTDOOR)
        intermediate = _intermediate(started.clients)
        issued = _issue(started.clients, validity_days=validity_days)

    certificate = _certificate(issued.certificate)
    assert certificate.not_valid_after_utc == intermediate.not_valid_after_utc
    assert certificate.not_valid_after_utc < certificate.not_valid_before_utc + (
        dt.timedelta(days=11)
    )


# Extensions of client certificates ------------------------------------------


def test_key_usage_is_digital_signature_only_and_critical(clients: Clients) -> None:
    certificate = _certificate(_issue(clients).certificate)

    key_usage = _extension(certificate, x509.KeyUsage)
    assert key_usage.critical
    assert key_usage.value == x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_extended_key_usage_is_client_auth_only(clients: Clients) -> None:
    certificate = _certificate(_issue(clients).certificate)

    usages = _extension(certificate, x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_basic_constraints_say_not_a_ca(clients: Clients) -> None:
    certificate = _certificate(_issue(clients).certificate)

    constraints = _extension(certificate, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=False, path_length=None)


def test_subject_and_subject_alt_names_are_copied_from_the_csr(
    clients: Clients,
) -> None:
    subject = "CN=payments-api,OU=platform,O=Example Corp,L=Berlin,C=DE"
    sans: list[x509.GeneralName] = [
        x509.DNSName("payments.internal"),
        x509.UniformResourceIdentifier("spiffe://example.org/ns/prod/sa/payments"),
        x509.RFC822Name("payments-team@example.org"),
        x509.IPAddress(ipaddress.IPv4Address("10.1.2.3")),
        x509.IPAddress(ipaddress.IPv6Address("2001:db8::7")),
    ]
    csr = x509.load_der_x509_csr(make_csr(subject, sans))

    issued = _issue(clients, csr.public_bytes(serialization.Encoding.DER))

    certificate = _certificate(issued.certificate)
    assert certificate.subject == csr.subject
    assert list(_extension(certificate, x509.SubjectAlternativeName).value) == sans
    assert issued.record.subject == subject
    assert [(name.type, name.value) for name in issued.record.subject_alt_names] == [
        (common_pb2.SubjectAltName.TYPE_DNS, "payments.internal"),
        (
            common_pb2.SubjectAltName.TYPE_URI,
            "spiffe://example.org/ns/prod/sa/payments",
        ),
        (common_pb2.SubjectAltName.TYPE_EMAIL, "payments-team@example.org"),
        (common_pb2.SubjectAltName.TYPE_IP, "10.1.2.3"),
        (common_pb2.SubjectAltName.TYPE_IP, "2001:db8::7"),
    ]


@pytest.mark.parametrize(
    ("subject", "critical_in_csr", "critical"),
    [
        pytest.param("CN=payments-api", False, False, id="subject"),
        pytest.param("CN=payments-api", True, False, id="subject-csr-asks-critical"),
        pytest.param(None, False, True, id="empty-subject"),
    ],
)
def test_subject_alt_name_is_critical_exactly_when_the_subject_is_empty(
    clients: Clients, subject: str | None, critical_in_csr: bool, critical: bool
) -> None:
    """RFC 5280 section 4.2.1.6; what the CSR asks for does not matter."""
    csr = make_csr(
        subject, [x509.DNSName("payments.internal")], critical_san=critical_in_csr
    )

    certificate = _certificate(_issue(clients, csr).certificate)

    assert _extension(certificate, x509.SubjectAlternativeName).critical is critical
    assert len(certificate.subject) == (0 if subject is None else 1)


def test_certificate_without_san_in_the_csr_has_no_san(clients: Clients) -> None:
    certificate = _certificate(
        _issue(clients, make_csr("CN=legacy-client")).certificate
    )

    with pytest.raises(x509.ExtensionNotFound):
        _extension(certificate, x509.SubjectAlternativeName)


def test_extensions_the_csr_asks_for_do_not_appear(clients: Clients) -> None:
    """Only the issuer's profile decides extensions: a CSR asking for
    serverAuth, another keyUsage and a private extension gets none of them."""
    private_oid = ObjectIdentifier("1.3.6.1.4.1.55555.7")
    csr = make_csr(
        extensions=[
            (
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
                ),
                False,
            ),
            (
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.UnrecognizedExtension(private_oid, b"\x05\x00"), False),
            (x509.OCSPNoCheck(), False),
        ]
    )

    certificate = _certificate(_issue(clients, csr).certificate)

    assert {extension.oid for extension in certificate.extensions} == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
    assert list(_extension(certificate, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    key_usage = _extension(certificate, x509.KeyUsage).value
    assert key_usage.digital_signature
    assert not key_usage.key_encipherment
    assert not key_usage.content_commitment


def test_key_identifiers_link_the_certificate_to_its_intermediate(
    clients: Clients,
) -> None:
    """SKI is the RFC 5280 method-1 hash of the client's key; AKI carries the
    intermediate's SKI and nothing else."""
    issued = _issue(clients)
    certificate = _certificate(issued.certificate)
    intermediate = _certificate(issued.chain[0])

    subject_key_id = _extension(certificate, x509.SubjectKeyIdentifier)
    assert not subject_key_id.critical
    assert subject_key_id.value == x509.SubjectKeyIdentifier.from_public_key(
        certificate.public_key()  # type: ignore[arg-type]
    )
    authority_key_id = _extension(certificate, x509.AuthorityKeyIdentifier)
    assert not authority_key_id.critical
    assert authority_key_id.value.key_identifier.hex() == _key_id(intermediate)
    assert authority_key_id.value.authority_cert_issuer is None
    assert authority_key_id.value.authority_cert_serial_number is None
    assert issued.record.issuer_key_id == _key_id(intermediate)
    assert certificate.issuer == intermediate.subject
    certificate.verify_directly_issued_by(intermediate)


def test_publication_urls_use_the_public_base_url_and_the_intermediate_key_id(
    clients: Clients,
) -> None:
    issued = _issue(clients)
    certificate = _certificate(issued.certificate)
    key_id = _key_id(_certificate(issued.chain[0]))

    distribution_points = _extension(certificate, x509.CRLDistributionPoints).value
    assert [point.full_name for point in distribution_points] == [
        [x509.UniformResourceIdentifier(f"{PUBLIC_BASE_URL}/crl/{key_id}.crl")]
    ]
    access = _extension(certificate, x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in access] == [
        (AuthorityInformationAccessOID.OCSP, f"{PUBLIC_BASE_URL}/ocsp/{key_id}"),
        (
            AuthorityInformationAccessOID.CA_ISSUERS,
            f"{PUBLIC_BASE_URL}/ca/{key_id}.crt",
        ),
    ]


def test_serial_numbers_are_positive_short_and_random(clients: Clients) -> None:
    """RFC 5280 section 4.1.2.2 and the CA/B practice of 64 random bits:
    over many issuances the serials are distinct, positive, at most 20
    octets, far longer than 100 bits, and no bit position is fixed."""
    issued = [_issue(clients) for _ in range(32)]
    serials = [_certificate(each.certificate).serial_number for each in issued]

    assert len(set(serials)) == len(serials)
    for serial in serials:
        assert serial > 0
        # DER INTEGER octets: the magnitude plus room for a zero sign bit.
        assert serial.bit_length() // 8 + 1 <= 20
        assert serial.bit_length() > 100
    varying_bits = [
        bit for bit in range(160) if 0 < sum(s >> bit & 1 for s in serials) < 32
    ]
    assert len(varying_bits) >= 128, f"only bits {varying_bits} vary"
    assert [each.record.serial_number for each in issued] == [
        format(serial, "x") for serial in serials
    ]


# The platform root and frontdoor intermediates --------------------------------


def test_platform_root_is_a_self_signed_20_year_ca(clients: Clients) -> None:
    root = _root(clients)

    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    constraints = _extension(root, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    key_usage = _extension(root, x509.KeyUsage)
    assert key_usage.critical
    assert _granted(key_usage.value) == {"key_cert_sign", "crl_sign"}
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=7300) - BACKDATE) < SLACK
    assert root.serial_number > 0
    assert root.serial_number.bit_length() // 8 + 1 <= 20


def _granted(key_usage: x509.KeyUsage) -> set[str]:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    ]
    return {name for name in names if getattr(key_usage, name)}


def test_intermediate_is_a_five_year_ca_for_end_entities_only(
    clients: Clients,
) -> None:
    root = _root(clients)
    intermediate = _intermediate(clients)
    root_key_id = _key_id(root)

    intermediate.verify_directly_issued_by(root)
    constraints = _extension(intermediate, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    key_usage = _extension(intermediate, x509.KeyUsage)
    assert key_usage.critical
    assert {"key_cert_sign", "crl_sign"} <= _granted(key_usage.value)
    assert _granted(key_usage.value) <= {
        "key_cert_sign",
        "crl_sign",
        "digital_signature",
    }
    authority_key_id = _extension(intermediate, x509.AuthorityKeyIdentifier).value
    assert authority_key_id.key_identifier.hex() == root_key_id
    distribution_points = _extension(intermediate, x509.CRLDistributionPoints).value
    assert [point.full_name for point in distribution_points] == [
        [x509.UniformResourceIdentifier(f"{PUBLIC_BASE_URL}/crl/{root_key_id}.crl")]
    ]
    access = _extension(intermediate, x509.AuthorityInformationAccess).value
    assert [(d.access_method, d.access_location.value) for d in access] == [
        (
            AuthorityInformationAccessOID.CA_ISSUERS,
            f"{PUBLIC_BASE_URL}/ca/{root_key_id}.crt",
        )
    ]
    lifetime = intermediate.not_valid_after_utc - intermediate.not_valid_before_utc
    assert abs(lifetime - dt.timedelta(days=1825) - BACKDATE) < SLACK


def test_intermediate_validity_is_capped_at_the_roots(tmp_path: Path) -> None:
    settings = suite_settings(tmp_path / "data", issuer={"root_validity_days": 100})
    with running(settings) as started:
        started.clients.create_frontdoor(FRONTDOOR)
        root = _root(started.clients)
        intermediate = _intermediate(started.clients)

    assert intermediate.not_valid_after_utc == root.not_valid_after_utc


def test_longest_names_fit_the_ca_subjects(tmp_path: Path) -> None:
    """A 63-character frontdoor under a 64-character organization gets an
    intermediate whose names stay within RFC 5280's 64 characters, and it
    issues; the OU keeps the whole frontdoor name."""
    organization = "O" * 64
    frontdoor = "f" * 63
    settings = suite_settings(tmp_path / "data", issuer={"organization": organization})
    with running(settings) as started:
        created = started.clients.create_frontdoor(frontdoor)
        started.clients.issue(frontdoor)
        root = _root(started.clients)
    intermediate = x509.load_der_x509_certificate(created.intermediates[0].certificate)

    for name in (root.subject, intermediate.subject):
        assert all(len(str(attribute.value)) <= 64 for attribute in name)
    (unit,) = intermediate.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME
    )
    assert unit.value == frontdoor


# Key types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        pytest.param(
            lambda: rsa.generate_private_key(65537, 2048), "RSA 2048", id="rsa-2048"
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP256R1()), "EC P-256", id="ec-p256"
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP384R1()), "EC P-384", id="ec-p384"
        ),
    ],
)
def test_default_key_types_are_accepted(
    clients: Clients, key: Any, key_type: str
) -> None:
    private_key = key()

    issued = _issue(clients, make_csr(key=private_key))

    certificate = _certificate(issued.certificate)
    assert certificate.public_key() == private_key.public_key()
    assert issued.record.key_type == key_type


def test_ed25519_csr_is_refused_by_default(clients: Clients) -> None:
    csr = make_csr(key=ed25519.Ed25519PrivateKey.generate())

    error = rpc_error(lambda: _issue(clients, csr))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Ed25519 keys are not accepted here" in (error.details() or "")
    assert "use one of: RSA, ECDSA P-256, ECDSA P-384" in (error.details() or "")


@pytest.fixture(scope="module")
def ed25519_installation(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    """A suite whose platform key policy allows Ed25519, with one frontdoor
    that allows only Ed25519 and one that allows only EC P-256."""
    data_dir = tmp_path_factory.mktemp("issuer-ed25519") / "data"
    settings = suite_settings(data_dir, key_policy={"allowed_key_types": ALL_KEY_TYPES})
    with running(settings) as started:
        for name, key_type in (
            ("edwards", common_pb2.KEY_TYPE_ED25519),
            ("ec-only", common_pb2.KEY_TYPE_EC_P256),
        ):
            started.clients.create_frontdoor(
                name,
                settings=common_pb2.FrontdoorSettings(
                    issuance=common_pb2.IssuanceProfile(allowed_key_types=[key_type])
                ),
            )
        yield started


def _pem(der: bytes) -> bytes:
    return _certificate(der).public_bytes(serialization.Encoding.PEM)


def test_ed25519_certificate_issues_where_the_frontdoor_allows_it(
    ed25519_installation: Running, tmp_path: Path
) -> None:
    """openssl accepts the result as a TLS client certificate and so does
    Tessera's validator."""
    openssl = require_tool("openssl")
    clients = ed25519_installation.clients
    key = ed25519.Ed25519PrivateKey.generate()

    issued = clients.issue("edwards", make_csr("CN=edwards-client", key=key))

    certificate = _certificate(issued.certificate)
    assert certificate.public_key() == key.public_key()
    assert issued.record.key_type == "Ed25519"
    leaf, chain, root = (tmp_path / name for name in ("leaf", "chain", "root"))
    leaf.write_bytes(_pem(issued.certificate))
    chain.write_bytes(_pem(issued.chain[0]))
    root.write_bytes(_pem(issued.chain[1]))
    verified = run(
        [
            openssl,
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(root),
            "-untrusted",
            str(chain),
            str(leaf),
        ]
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verdict = clients.validate([issued.certificate], "edwards")
    assert verdict.valid, verdict.message
    assert list(verdict.reasons) == [common_pb2.VALIDATION_REASON_OK]


def test_frontdoor_may_narrow_the_platform_key_types(
    ed25519_installation: Running,
) -> None:
    """Allowed by the platform but not by the frontdoor: refused."""
    clients = ed25519_installation.clients
    csr = make_csr(key=ed25519.Ed25519PrivateKey.generate())

    error = rpc_error(lambda: clients.issue("ec-only", csr))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "use one of: ECDSA P-256" in (error.details() or "")
    assert clients.issue("ec-only").record.key_type == "EC P-256"


# The audit log --------------------------------------------------------------


def _details(event: AuditEventRow) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(event.details)
    return details


def test_every_signature_is_audited_before_and_after(installation: Running) -> None:
    """The root, the intermediate and a client certificate each have an
    intent entry followed by a success entry naming serial, issuer key id
    and frontdoor."""
    clients = installation.clients
    issued = _issue(clients)
    root, intermediate = _root(clients), _intermediate(clients)
    client = _certificate(issued.certificate)

    signatures = [
        e for e in installation.audit_events() if e.action == "certificate.sign"
    ]

    expected = [
        (root, root, "root", ""),
        (intermediate, root, "intermediate", FRONTDOOR),
        (client, intermediate, "client", FRONTDOOR),
    ]
    for certificate, issuer, kind, frontdoor in expected:
        serial = format(certificate.serial_number, "x")
        entries = [e for e in signatures if _details(e)["serial_number"] == serial]
        assert [e.outcome for e in entries] == ["intent", "success"], kind
        for entry in entries:
            assert _details(entry)["issuer_key_id"] == _key_id(issuer)
            assert _details(entry)["frontdoor"] == frontdoor
            assert _details(entry)["kind"] == kind
            assert _details(entry)["subject"] == certificate.subject.rfc4514_string()
        fingerprint = hashlib.sha256(
            certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()
        assert _details(entries[1])["fingerprint"] == fingerprint
    outcomes = [e.outcome for e in signatures]
    assert outcomes.count("intent") == outcomes.count("success")
    assert installation.audit_chain_is_intact()


def test_each_revocation_is_audited_once(installation: Running) -> None:
    clients = installation.clients
    record = _issue(clients).record

    revocation = clients.revoke(record.fingerprint_sha256)

    entries = [
        e
        for e in installation.audit_events()
        if e.action == "certificate.revoke"
        and _details(e).get("serial_number") == record.serial_number
    ]
    assert len(entries) == 1
    entry = entries[0]
    assert entry.outcome == "success"
    assert _details(entry) == {
        "sequence": revocation.sequence,
        "frontdoor": FRONTDOOR,
        "issuer_key_id": record.issuer_key_id,
        "serial_number": record.serial_number,
        "fingerprint": record.fingerprint_sha256,
        "reason": "keyCompromise",
    }
    assert installation.audit_chain_is_intact()


def test_concurrent_creations_of_one_frontdoor_make_one_ca(
    installation: Running,
) -> None:
    """Ten CreateFrontdoor calls for one name at once: one succeeds, nine
    are ALREADY_EXISTS, and the intermediate is signed exactly once."""
    clients = installation.clients
    barrier = threading.Barrier(10)

    def create() -> grpc.StatusCode:
        barrier.wait()
        try:
            clients.create_frontdoor("raced")
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: create(), range(10)))

    assert sorted(code.name for code in codes) == ["ALREADY_EXISTS"] * 9 + ["OK"]
    signed = [
        e
        for e in installation.audit_events()
        if e.action == "certificate.sign"
        and e.outcome == "success"
        and _details(e)["frontdoor"] == "raced"
        # The frontdoor's OCSP responder certificate is signed beside it.
        and _details(e)["kind"] == "intermediate"
    ]
    assert len(signed) == 1
