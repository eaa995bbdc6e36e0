"""Bad input to the issuer: each refusal has the right gRPC status and a
message that says what to change, the issuer keeps serving, and the registry
holds exactly what it held before."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier
from google.protobuf import timestamp_pb2
from grpc_status import rpc_status

from services.issuer.policy import MAX_CSR_BYTES
from services.suite import start_suite
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
MAX_VALIDITY_DAYS = 90
INVALID = grpc.StatusCode.INVALID_ARGUMENT
REFUSED = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE
ECDSA_WITH_SHA256 = bytes.fromhex("2a8648ce3d040302")
P256_CURVE = bytes.fromhex("2a8648ce3d030107")
UNKNOWN_CURVE = bytes.fromhex("2a8648ce3d030109")
SAN_EXTENSION = bytes.fromhex("0603551d11")
UNUSED_EXTENSION = bytes.fromhex("0603551d63")


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    """One suite for the module with a frontdoor that issues for at most 90
    days; every test compares the registry before and after its own call."""
    data_dir: Path = tmp_path_factory.mktemp("issuer-bad-input") / "data"
    suite = start_suite(suite_settings(data_dir))
    connected = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    connected.create_frontdoor(
        FRONTDOOR,
        settings=common_pb2.FrontdoorSettings(
            issuance=common_pb2.IssuanceProfile(
                default_validity_days=30, max_validity_days=MAX_VALIDITY_DAYS
            )
        ),
    )
    yield connected
    connected.close()
    suite.stop()


def assert_refused_cleanly(
    clients: Clients,
    call: Callable[[], Any],
    code: grpc.StatusCode,
    *fragments: str,
) -> grpc.RpcError:
    """Make ``call``, which must fail with ``code`` and a message holding each
    fragment; the registry must be unchanged and the issuer still issue."""
    before = clients.snapshot()
    error = rpc_error(call)
    after = clients.snapshot()

    message = error.details() or ""
    assert error.code() == code, f"{error.code()}: {message}"
    for fragment in fragments:
        assert fragment in message, message
    assert after == before, "the refused call changed what the registry holds"
    issued = clients.issue(FRONTDOOR)
    assert issued.record.status == common_pb2.CERTIFICATE_STATUS_ACTIVE
    return error


# Requests that are not what they claim to be -----------------------------


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV (definite length)."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    length = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def csr_with_flipped_signature_byte() -> bytes:
    """A valid CSR whose signature's last byte was changed."""
    damaged = bytearray(make_csr())
    damaged[-1] ^= 0x01
    return bytes(damaged)


def csr_signed_by_another_key() -> bytes:
    """A CSR carrying one public key, signed by a different private key."""
    request = x509.load_der_x509_csr(make_csr())
    other_key = ec.generate_private_key(ec.SECP256R1())
    signature = other_key.sign(request.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256()))
    algorithm = _der(0x30, _der(0x06, ECDSA_WITH_SHA256))
    return _der(
        0x30,
        request.tbs_certrequest_bytes + algorithm + _der(0x03, b"\x00" + signature),
    )


def csr_with_repeated_extension() -> bytes:
    """A CSR with two subjectAltName extensions (its signature no longer
    matters: the repetition must be noticed first)."""
    san = x509.SubjectAlternativeName([x509.DNSName("payments.example")])
    placeholder = x509.UnrecognizedExtension(
        ObjectIdentifier("2.5.29.99"), san.public_bytes()
    )
    der = make_csr(sans=list(san), extensions=[(placeholder, False)])
    assert der.count(UNUSED_EXTENSION) == 1
    return der.replace(UNUSED_EXTENSION, SAN_EXTENSION)


def csr_with_unknown_curve() -> bytes:
    """A CSR whose EC key names a curve OID nobody defines."""
    der = make_csr()
    assert der.count(P256_CURVE) == 1
    return der.replace(P256_CURVE, UNKNOWN_CURVE)


def oversized_csr() -> bytes:
    """A well-formed, correctly signed CSR larger than 64 KiB."""
    padding = x509.UnrecognizedExtension(
        ObjectIdentifier("1.3.6.1.4.1.55555.1"), _der(0x04, bytes(MAX_CSR_BYTES))
    )
    return make_csr(extensions=[(padding, False)])


def pem_csr() -> bytes:
    """A valid CSR, but PEM rather than DER."""
    request = x509.load_der_x509_csr(make_csr())
    return request.public_bytes(serialization.Encoding.PEM)


def csr_with_subject(common_name: str) -> bytes:
    """A CSR whose subject is one common name, written without validation."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def test_crafted_csrs_are_what_they_claim() -> None:
    """The bad-signature CSRs parse, so the issuer's refusal is about the
    signature; the oversized CSR is valid apart from its size."""
    for der in (csr_with_flipped_signature_byte(), csr_signed_by_another_key()):
        request = x509.load_der_x509_csr(der)
        assert request.subject.rfc4514_string() == "CN=client.example"
        assert not request.is_signature_valid
    assert len(oversized_csr()) > MAX_CSR_BYTES
    assert x509.load_der_x509_csr(oversized_csr()).is_signature_valid


@pytest.mark.parametrize(
    ("make", "fields", "fragments"),
    [
        pytest.param(
            lambda: b"this is not a certification request",
            {},
            ["not a DER-encoded PKCS#10", "openssl req -outform DER"],
            id="garbage-bytes",
        ),
        pytest.param(lambda: b"", {}, ["csr is empty"], id="empty-csr"),
        pytest.param(
            lambda: make_csr()[:-12],
            {},
            ["not a DER-encoded PKCS#10"],
            id="truncated-csr",
        ),
        pytest.param(
            pem_csr, {}, ["not a DER-encoded PKCS#10", "PEM"], id="pem-not-der"
        ),
        pytest.param(
            csr_with_flipped_signature_byte,
            {},
            ["signature does not verify", "generate the CSR again"],
            id="flipped-signature-byte",
        ),
        pytest.param(
            csr_signed_by_another_key,
            {},
            ["signature does not verify", "matching private key"],
            id="signed-by-another-key",
        ),
        pytest.param(
            lambda: make_csr(subject=None),
            {},
            ["neither a subject nor subject alternative names", "CN="],
            id="no-subject-no-san",
        ),
        pytest.param(
            make_csr,
            {"name": "payments\napi"},
            ["control or format characters"],
            id="name-with-newline",
        ),
        pytest.param(
            make_csr,
            {"name": "payments \x1b[31mapi"},
            ["control or format characters"],
            id="name-with-escape-sequence",
        ),
        pytest.param(
            make_csr,
            {"name": "n" * 1000},
            ["name may be at most"],
            id="name-too-long",
        ),
        pytest.param(
            make_csr,
            {"name": "   "},
            ["name is only spaces"],
            id="name-of-spaces",
        ),
        pytest.param(
            lambda: csr_with_subject("payments\r\nX-Injected: yes"),
            {},
            ["subject attribute CN", "control or format characters"],
            id="subject-with-control-characters",
        ),
        pytest.param(
            lambda: make_csr(sans=[x509.DNSName("payments\n.example")]),
            {},
            ["invalid subject alternative name", "not a host name"],
            id="dns-san-with-newline",
        ),
        pytest.param(
            lambda: make_csr(sans=[x509.DNSName("payments api.example")]),
            {},
            ["invalid subject alternative name", "not a host name"],
            id="dns-san-with-space",
        ),
        pytest.param(
            lambda: make_csr(sans=[x509.DNSName("*.example.com")]),
            {},
            ["invalid subject alternative name", "no wildcards"],
            id="dns-san-wildcard",
        ),
        pytest.param(
            lambda: make_csr(sans=[x509.RFC822Name("payments team")]),
            {},
            ["invalid subject alternative name", "local-part@host.name"],
            id="email-san-without-at",
        ),
        pytest.param(
            lambda: make_csr(sans=[x509.UniformResourceIdentifier("/relative/path")]),
            {},
            ["invalid subject alternative name", "not an absolute URI"],
            id="relative-uri-san",
        ),
        pytest.param(
            oversized_csr, {}, [f"at most {MAX_CSR_BYTES} bytes"], id="oversized-csr"
        ),
        pytest.param(
            csr_with_repeated_extension,
            {},
            ["repeats the extension 2.5.29.17"],
            id="repeated-extension",
        ),
        pytest.param(
            csr_with_unknown_curve,
            {},
            ["cannot read", "P-256"],
            id="unknown-curve",
        ),
        pytest.param(
            make_csr, {"frontdoor": ""}, ["frontdoor is empty"], id="no-frontdoor"
        ),
    ],
)
def test_malformed_issuance_request_is_invalid_argument(
    clients: Clients,
    make: Callable[[], bytes],
    fields: dict[str, Any],
    fragments: list[str],
) -> None:
    csr = make()
    request = {"frontdoor": FRONTDOOR, **fields}

    assert_refused_cleanly(
        clients, lambda: clients.issue(csr=csr, **request), INVALID, *fragments
    )


@pytest.mark.parametrize("digest", ["sha1", "md5", "sha224"])
def test_csr_signed_with_a_refused_hash_says_so(
    clients: Clients, tmp_path: Path, digest: str
) -> None:
    """openssl's CSR signed with SHA-1, MD5 or SHA-224 verifies, but is
    refused for its hash, with the flag that fixes it."""
    openssl = require_tool("openssl")
    key, csr = tmp_path / "key.pem", tmp_path / "csr.der"
    made = run(
        [
            openssl,
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-subj",
            "/CN=old-client",
            f"-{digest}",
            "-outform",
            "DER",
            "-out",
            str(csr),
        ]
    )
    assert made.returncode == 0, made.stderr

    assert_refused_cleanly(
        clients,
        lambda: clients.issue(FRONTDOOR, csr.read_bytes()),
        INVALID,
        f"signed with {digest.upper()}",
        "openssl req -sha256",
    )


def _rsa_key(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def _key_usage(**granted: bool) -> x509.KeyUsage:
    usages = {
        "digital_signature": False,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "key_cert_sign": False,
        "crl_sign": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    return x509.KeyUsage(**{**usages, **granted})


@pytest.mark.parametrize(
    ("make", "fields", "fragments"),
    [
        pytest.param(
            lambda: make_csr(key=_rsa_key(1024)),
            {},
            ["at least 2048 bits", "this one has 1024"],
            id="rsa-1024",
        ),
        pytest.param(
            lambda: make_csr(key=_rsa_key(2048, exponent=3)),
            {},
            ["public exponent 65537"],
            id="rsa-exponent-3",
        ),
        pytest.param(
            lambda: make_csr(key=ec.generate_private_key(ec.SECP192R1())),
            {},
            ["secp192r1 keys are not accepted", "use one of", "ECDSA P-256"],
            id="ec-p192",
        ),
        pytest.param(
            lambda: make_csr(
                extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]
            ),
            {},
            ["CA:TRUE", "client certificates only"],
            id="basic-constraints-ca",
        ),
        pytest.param(
            lambda: make_csr(
                extensions=[
                    (_key_usage(digital_signature=True, key_cert_sign=True), True)
                ]
            ),
            {},
            ["keyCertSign", "client certificates only"],
            id="key-cert-sign",
        ),
        pytest.param(
            lambda: make_csr(extensions=[(_key_usage(crl_sign=True), True)]),
            {},
            ["cRLSign", "client certificates only"],
            id="crl-sign",
        ),
        pytest.param(
            make_csr,
            {"validity_days": MAX_VALIDITY_DAYS + 1},
            [f"at most {MAX_VALIDITY_DAYS} days"],
            id="validity-above-maximum",
        ),
    ],
)
def test_request_the_policy_forbids_is_failed_precondition(
    clients: Clients,
    make: Callable[[], bytes],
    fields: dict[str, Any],
    fragments: list[str],
) -> None:
    csr = make()

    assert_refused_cleanly(
        clients,
        lambda: clients.issue(FRONTDOOR, csr=csr, **fields),
        REFUSED,
        *fragments,
    )


def test_validity_at_the_maximum_is_issued(clients: Clients) -> None:
    """The boundary of the validity refusal: the maximum itself is allowed."""
    issued = clients.issue(FRONTDOOR, validity_days=MAX_VALIDITY_DAYS)

    certificate = x509.load_der_x509_certificate(issued.certificate)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == MAX_VALIDITY_DAYS


def test_huge_frontdoor_name_is_answered_and_the_message_stays_short(
    clients: Clients,
) -> None:
    """A megabyte of name is refused at once with a short message: nothing
    echoes it whole into logs or status metadata."""
    error = rpc_error(lambda: clients.issue("a" * 1_000_000))

    assert error.code() in (NOT_FOUND, INVALID)
    assert len(error.details() or "") <= 1024


def test_issuing_for_an_unknown_frontdoor_is_not_found(clients: Clients) -> None:
    assert_refused_cleanly(
        clients,
        lambda: clients.issue("nowhere"),
        NOT_FOUND,
        "frontdoor 'nowhere' does not exist",
        "create it first",
    )


def test_frontdoor_with_a_revoked_intermediate_issues_nothing(
    clients: Clients,
) -> None:
    """Once its only intermediate is revoked, a frontdoor refuses to issue
    rather than sign with the revoked CA key."""
    frontdoor = clients.create_frontdoor("revoked-ca")
    clients.revoke(_sha256(frontdoor.intermediates[0].certificate))

    assert_refused_cleanly(
        clients,
        lambda: clients.issue("revoked-ca"),
        REFUSED,
        "no active intermediate CA",
    )


@pytest.mark.parametrize(
    ("reason", "refused"),
    [
        (common_pb2.REVOCATION_REASON_KEY_COMPROMISE, True),
        (common_pb2.REVOCATION_REASON_SUPERSEDED, False),
    ],
)
def test_a_key_revoked_for_compromise_gets_no_new_certificate(
    clients: Clients, reason: int, refused: bool
) -> None:
    """A CSR for a key once revoked as compromised is refused, at every
    frontdoor; a key whose certificate was merely superseded is not."""
    other = f"after-reason-{reason}"
    clients.create_frontdoor(other)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = clients.issue(FRONTDOOR, make_csr(key=key))
    clients.revoke(_sha256(issued.certificate), reason)

    if not refused:
        clients.issue(other, make_csr(key=key))
        return
    for frontdoor in (FRONTDOOR, other):
        assert_refused_cleanly(
            clients,
            lambda frontdoor=frontdoor: clients.issue(frontdoor, make_csr(key=key)),
            REFUSED,
            "public key was reported compromised",
            "make a new key and CSR",
        )


# Frontdoors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("Payments", id="upper-case"),
        pytest.param("pay_ments", id="underscore"),
        pytest.param("pay ments", id="space"),
        pytest.param("-payments", id="leading-hyphen"),
        pytest.param("payments-", id="trailing-hyphen"),
        pytest.param("payments\n", id="newline"),
        pytest.param("zahlungsverkehr-ü", id="non-ascii"),
        pytest.param("p" * 64, id="64-characters"),
    ],
)
def test_invalid_frontdoor_name_is_invalid_argument(
    clients: Clients, name: str
) -> None:
    assert_refused_cleanly(
        clients,
        lambda: clients.create_frontdoor(name),
        INVALID,
        "is not valid",
        "1 to 63 lowercase letters, digits and hyphens",
    )


@pytest.mark.parametrize(
    ("issuance", "fragment"),
    [
        pytest.param(
            common_pb2.IssuanceProfile(default_validity_days=400, max_validity_days=30),
            "longer than the maximum validity",
            id="default-above-maximum",
        ),
        pytest.param(
            common_pb2.IssuanceProfile(max_validity_days=4000),
            "at most 3650 days",
            id="maximum-above-ten-years",
        ),
        pytest.param(
            common_pb2.IssuanceProfile(allowed_key_types=[common_pb2.KEY_TYPE_ED25519]),
            "KEY_TYPE_ED25519 is not allowed by the platform's key policy",
            id="key-type-the-platform-forbids",
        ),
        pytest.param(
            common_pb2.IssuanceProfile(min_rsa_bits=99_999),
            "above the largest RSA key the platform accepts",
            id="min-rsa-bits-above-every-key",
        ),
        pytest.param(
            common_pb2.IssuanceProfile(
                allowed_key_types=[common_pb2.KEY_TYPE_EC_P256] * 3
            ),
            "names a key type more than once",
            id="repeated-key-type",
        ),
    ],
)
def test_contradictory_frontdoor_settings_are_invalid_argument(
    clients: Clients, issuance: common_pb2.IssuanceProfile, fragment: str
) -> None:
    settings = common_pb2.FrontdoorSettings(issuance=issuance)

    assert_refused_cleanly(
        clients,
        lambda: clients.create_frontdoor("contradictory", settings=settings),
        INVALID,
        fragment,
    )


def test_creating_a_frontdoor_twice_is_already_exists(clients: Clients) -> None:
    """The second creation changes nothing: the first intermediate stays the
    frontdoor's only one."""
    assert_refused_cleanly(
        clients,
        lambda: clients.create_frontdoor(FRONTDOOR),
        grpc.StatusCode.ALREADY_EXISTS,
        f"frontdoor {FRONTDOOR!r} already exists",
    )


# Revocation ----------------------------------------------------------------


def _revoke(clients: Clients, **fields: Any) -> common_pb2.Revocation:
    fields.setdefault("reason", KEY_COMPROMISE)
    return clients.issuer.RevokeCertificate(
        issuer_pb2.RevokeCertificateRequest(**fields), timeout=30
    )


def _serial(serial_number: str, frontdoor: str = FRONTDOOR) -> dict[str, Any]:
    return {
        "serial": common_pb2.SerialInFrontdoor(
            frontdoor=frontdoor, serial_number=serial_number
        )
    }


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        pytest.param(
            {"fingerprint_sha256": "ab" * 32},
            [f"no certificate with fingerprint {'ab' * 32} is recorded"],
            id="unknown-fingerprint",
        ),
        pytest.param(
            _serial("7e57"),
            [f"no certificate with serial number 7e57 in frontdoor {FRONTDOOR!r}"],
            id="unknown-serial",
        ),
        pytest.param(
            _serial("7e57", frontdoor="nowhere"),
            ["frontdoor 'nowhere' does not exist"],
            id="serial-in-unknown-frontdoor",
        ),
    ],
)
def test_revoking_an_unknown_certificate_is_not_found(
    clients: Clients, fields: dict[str, Any], fragments: list[str]
) -> None:
    assert_refused_cleanly(
        clients, lambda: _revoke(clients, **fields), NOT_FOUND, *fragments
    )


@pytest.mark.parametrize(
    ("fields", "fragments"),
    [
        pytest.param(
            _serial("not-a-serial"),
            ["serial number must be written in hex digits"],
            id="serial-not-hex",
        ),
        pytest.param(_serial("00"), ["serial numbers are positive"], id="serial-zero"),
        pytest.param(
            _serial("7f" * 21), ["longer than the 20 octets"], id="serial-too-long"
        ),
        pytest.param(
            _serial("7e57", frontdoor=""),
            ["also needs its frontdoor"],
            id="serial-without-frontdoor",
        ),
        pytest.param(
            {"fingerprint_sha256": "abcd"},
            ["64 hex digits; this one has 4"],
            id="fingerprint-too-short",
        ),
        pytest.param(
            {"fingerprint_sha256": "SHA256:payments"},
            ["fingerprint must be written in hex digits"],
            id="fingerprint-not-hex",
        ),
        pytest.param(
            {"fingerprint_sha256": "a" * 3_000_000},
            ["64 hex digits; this one has 3000000"],
            id="fingerprint-of-three-megabytes",
        ),
        pytest.param(
            _serial("7e57", frontdoor="p" * 100_000),
            ["frontdoor name", "is not valid"],
            id="serial-in-oversized-frontdoor-name",
        ),
        pytest.param(
            {}, ["fingerprint_sha256", "serial number"], id="no-certificate-named"
        ),
        pytest.param(
            {"fingerprint_sha256": "ab" * 32, "reason": 7},
            ["revocation reason 7 is not an RFC 5280 reason"],
            id="reserved-reason-7",
        ),
    ],
)
def test_malformed_revocation_is_invalid_argument(
    clients: Clients, fields: dict[str, Any], fragments: list[str]
) -> None:
    assert_refused_cleanly(
        clients, lambda: _revoke(clients, **fields), INVALID, *fragments
    )


def test_revoking_with_remove_from_crl_is_invalid_argument(clients: Clients) -> None:
    """removeFromCRL belongs to delta CRLs; the certificate stays unrevoked."""
    fingerprint = clients.issue(FRONTDOOR).record.fingerprint_sha256

    assert_refused_cleanly(
        clients,
        lambda: _revoke(
            clients,
            fingerprint_sha256=fingerprint,
            reason=common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL,
        ),
        INVALID,
        "removeFromCRL is not a reason to revoke",
    )


def test_invalidity_date_in_the_future_is_invalid_argument(clients: Clients) -> None:
    fingerprint = clients.issue(FRONTDOOR).record.fingerprint_sha256
    tomorrow = timestamp_pb2.Timestamp()
    tomorrow.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))

    assert_refused_cleanly(
        clients,
        lambda: _revoke(
            clients, fingerprint_sha256=fingerprint, invalidity_date=tomorrow
        ),
        INVALID,
        "invalidity_date lies in the future",
    )


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(2**40, 0), (2**62, 0), (-(2**62), 0), (0, -5), (0, 2_000_000_000)],
)
def test_impossible_invalidity_date_is_invalid_argument(
    clients: Clients, seconds: int, nanos: int
) -> None:
    """A Timestamp outside years 1 to 9999 is bad input, not a registry fault."""
    fingerprint = clients.issue(FRONTDOOR).record.fingerprint_sha256
    impossible = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)

    assert_refused_cleanly(
        clients,
        lambda: _revoke(
            clients, fingerprint_sha256=fingerprint, invalidity_date=impossible
        ),
        INVALID,
        "invalidity_date is not a valid timestamp",
    )


def test_revoking_the_platform_root_is_failed_precondition(clients: Clients) -> None:
    root = clients.issuer.GetPlatformRoot(issuer_pb2.GetPlatformRootRequest())
    fingerprint = _sha256(root.certificate)

    assert_refused_cleanly(
        clients,
        lambda: _revoke(clients, fingerprint_sha256=fingerprint),
        REFUSED,
        "the platform root cannot be revoked",
    )


@pytest.mark.parametrize("second_by", ["fingerprint", "serial"])
def test_revoking_twice_is_already_exists_with_the_first_revocation(
    clients: Clients, second_by: str
) -> None:
    """The refusal carries the existing log entry as a packed
    tessera.common.v1.Revocation in the google.rpc.Status details."""
    record = clients.issue(FRONTDOOR).record
    first = clients.revoke(record.fingerprint_sha256, reason=KEY_COMPROMISE)
    again = (
        {"fingerprint_sha256": record.fingerprint_sha256.upper()}
        if second_by == "fingerprint"
        else _serial(record.serial_number)
    )

    error = assert_refused_cleanly(
        clients,
        lambda: _revoke(
            clients, reason=common_pb2.REVOCATION_REASON_SUPERSEDED, **again
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "was already revoked on",
        f"log entry {first.sequence}",
    )

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    assert status.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    revocations = []
    for detail in status.details:
        assert detail.Is(common_pb2.Revocation.DESCRIPTOR)
        revocation = common_pb2.Revocation()
        detail.Unpack(revocation)
        revocations.append(revocation)
    assert revocations == [first]
    assert first.reason == KEY_COMPROMISE
