"""The OCSP responder at the AIA URL of client certificates: openssl as the
relying party, several certificates per request, the GET forms, caching,
bad input, delegated responders and their renewal, pre-signed responses."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import gzip
import hashlib
import http.client
import os
import socket
import sqlite3
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from asn1crypto import core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common import metrics
from services.common.leases import Lease
from services.issuer import ocsp as responder_module
from services.issuer import ocsp_http
from services.suite import Suite, start_suite
from tessera.registry.v1 import registry_pb2
from tests.issuer.ocsp_requests import (
    cert_id,
    get,
    get_path,
    openssl_ocsp,
    post,
    request_der,
)
from tests.support import (
    Clients,
    ManualClock,
    eventually,
    free_port,
    require_tool,
    run,
    suite_settings,
)

FRONTDOOR = "payments"


@dataclasses.dataclass
class Issued:
    """A client certificate, its chain, and PEM files of all three."""

    record: object
    certificate: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    files: dict[str, Path]

    @property
    def key_id(self) -> str:
        return self.intermediate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.key_identifier.hex()

    @property
    def ocsp_url(self) -> str:
        access = self.certificate.extensions.get_extension_for_class(
            x509.AuthorityInformationAccess
        ).value
        return str(access[0].access_location.value)

    @property
    def fingerprint(self) -> str:
        return str(self.record.fingerprint_sha256)  # type: ignore[attr-defined]


def publishing_settings(data_dir: Path, **overrides: object) -> object:
    """Settings whose certificates name this suite's own listener."""
    port = free_port()
    issuer = {
        "publication_listen": f"127.0.0.1:{port}",
        "public_base_url": f"http://127.0.0.1:{port}",
        **overrides.pop("issuer", {}),  # type: ignore[dict-item]
    }
    return suite_settings(data_dir, issuer=issuer, **overrides)


def issue(clients: Clients, directory: Path, frontdoor: str = FRONTDOOR) -> Issued:
    response = clients.issue(frontdoor)
    certificate = x509.load_der_x509_certificate(response.certificate)
    intermediate, root = (x509.load_der_x509_certificate(der) for der in response.chain)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, each in (
        ("certificate", certificate),
        ("intermediate", intermediate),
        ("root", root),
    ):
        files[name] = directory / f"{name}-{certificate.serial_number:x}.pem"
        files[name].write_bytes(each.public_bytes(Encoding.PEM))
    return Issued(response.record, certificate, intermediate, root, files)


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Suite, Clients]]:
    """A suite whose certificates point at its own listener, with two frontdoors."""
    suite = start_suite(
        publishing_settings(tmp_path_factory.mktemp("ocsp") / "data")  # type: ignore[arg-type]
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    clients.create_frontdoor(FRONTDOOR)
    clients.create_frontdoor("billing")
    yield suite, clients
    clients.close()
    suite.stop()


@pytest.fixture
def suite(running: tuple[Suite, Clients]) -> Suite:
    return running[0]


@pytest.fixture
def clients(running: tuple[Suite, Clients]) -> Clients:
    return running[1]


def openssl_status(issued: Issued, *extra: str) -> str:
    """What ``openssl ocsp`` prints for the certificate; fails unless the
    response verifies against the root and, with a nonce, echoes it."""
    require_tool("openssl")
    result = openssl_ocsp(
        issued.files["intermediate"],
        issued.files["certificate"],
        issued.ocsp_url,
        issued.files["root"],
        *extra,
    )
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
def test_openssl_sees_good_then_revoked_with_reason(
    clients: Clients, tmp_path: Path, nonce: bool
) -> None:
    """openssl, following the certificate's AIA URL, gets "good", and right
    after revocation "revoked" with the reason, with and without a nonce."""
    issued = issue(clients, tmp_path)
    extra = () if nonce else ("-no_nonce",)

    before = openssl_status(issued, *extra)
    clients.revoke(issued.fingerprint, reason=4)  # superseded
    after = openssl_status(issued, *extra)

    assert ": good" in before
    assert ": revoked" in after
    assert "Reason: superseded" in after


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no-nonce"])
def test_openssl_sees_unknown_for_a_serial_never_issued(
    clients: Clients, tmp_path: Path, nonce: bool
) -> None:
    """A serial number the intermediate never issued is "unknown"."""
    issued = issue(clients, tmp_path)
    extra = () if nonce else ("-no_nonce",)
    require_tool("openssl")

    result = openssl_ocsp_serial(issued, 0x1234567890ABCDEF, *extra)

    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    assert "0x1234567890ABCDEF: unknown" in result.stdout


def openssl_ocsp_serial(
    issued: Issued, serial_number: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp -serial``: asks about a serial number, not a file."""
    return run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(issued.files["intermediate"]),
            "-serial",
            f"0x{serial_number:X}",
            "-url",
            issued.ocsp_url,
            "-CAfile",
            str(issued.files["root"]),
            *extra,
        ]
    )


def test_answers_several_certificates_in_their_own_hash_algorithms(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """One request for a good certificate (SHA-1 CertID), a revoked one
    (SHA-256) and a serial never issued gets three SingleResponses in order,
    each echoing its CertID's hash algorithm."""
    good = issue(clients, tmp_path)
    revoked = issue(clients, tmp_path)
    clients.revoke(revoked.fingerprint, reason=1)
    assert suite.publication is not None

    answer = post(
        suite.publication,
        request_der(
            [
                cert_id(good.intermediate, good.certificate.serial_number, "sha1"),
                cert_id(good.intermediate, revoked.certificate.serial_number, "sha256"),
                cert_id(good.intermediate, 0x42, "sha256"),
            ]
        ),
    ).ocsp()

    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    singles = list(answer.responses)
    assert [single.serial_number for single in singles] == [
        good.certificate.serial_number,
        revoked.certificate.serial_number,
        0x42,
    ]
    assert [single.certificate_status for single in singles] == [
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ]
    assert [type(single.hash_algorithm) for single in singles] == [
        hashes.SHA1,
        hashes.SHA256,
        hashes.SHA256,
    ]
    assert singles[1].revocation_reason == x509.ReasonFlags.key_compromise
    verify_signature(answer, good.intermediate)


def verify_signature(answer: ocsp.OCSPResponse, intermediate: x509.Certificate) -> None:
    """The response is signed by a responder the intermediate certified."""
    (responder,) = answer.certificates
    responder.verify_directly_issued_by(intermediate)
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert answer.signature_hash_algorithm is not None
    public_key.verify(
        answer.signature,
        answer.tbs_response_bytes,
        ec.ECDSA(answer.signature_hash_algorithm),
    )


def test_all_four_cert_id_fields_must_match(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """A CertID with another issuer name hash or key hash is not this
    responder's (unauthorized); the serial of another intermediate's
    certificate under this intermediate's hashes is "unknown"."""
    issued = issue(clients, tmp_path)
    other = issue(clients, tmp_path, "billing")
    serial = issued.certificate.serial_number
    assert suite.publication is not None

    def status_of(each: dict[str, object]) -> object:
        answer = post(suite.publication, request_der([each])).ocsp()  # type: ignore[arg-type]
        if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return answer.response_status
        return answer.certificate_status

    assert status_of(cert_id(issued.intermediate, serial)) == ocsp.OCSPCertStatus.GOOD
    assert (
        status_of(cert_id(issued.intermediate, serial, name_hash=b"\x00" * 20))
        == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert (
        status_of(cert_id(issued.intermediate, serial, key_hash=b"\x00" * 20))
        == ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert (
        status_of(cert_id(issued.intermediate, other.certificate.serial_number))
        == ocsp.OCSPCertStatus.UNKNOWN
    )
    # The hashes of one algorithm under the OID of another do not match.
    sha1 = cert_id(issued.intermediate, serial, "sha1")
    sha1["hash_algorithm"] = {"algorithm": "sha256"}
    assert status_of(sha1) == ocsp.OCSPResponseStatus.UNAUTHORIZED


def base64_with_both_specials(issued: Issued) -> bytes:
    """A request whose base64 holds both "/" and "+" (a nonce is varied
    until it does)."""
    for counter in range(10_000):
        der = request_der(
            [cert_id(issued.intermediate, issued.certificate.serial_number)],
            nonce=hashlib.sha256(counter.to_bytes(4, "big")).digest()[:16],
        )
        text = base64.b64encode(der).decode()
        if "/" in text and "+" in text:
            return der
    raise AssertionError("no request with both characters found")


def test_get_tolerates_the_encodings_clients_use(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """GET works with the request's base64 as is, percent-encoded, after a
    doubled slash, base64url without padding, and without the key id."""
    issued = issue(clients, tmp_path)
    der = base64_with_both_specials(issued)
    text = base64.b64encode(der).decode()
    assert suite.publication is not None
    paths = [
        f"/ocsp/{issued.key_id}/{text}",
        f"/ocsp/{issued.key_id}/{urllib.parse.quote(text, safe='')}",
        f"/ocsp/{issued.key_id}//{text}",
        f"/ocsp/{issued.key_id}%2F{urllib.parse.quote(text, safe='')}",
        f"/ocsp/{issued.key_id}/" + base64.urlsafe_b64encode(der).decode().rstrip("="),
        f"/ocsp/{text}",
    ]
    assert "%2F" in paths[1]
    assert "%2B" in paths[1]

    for path in paths:
        answer = get(suite.publication, path).ocsp()
        assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, path
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD, path


def test_presigned_get_carries_rfc5019_caching_headers(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """A response without nonce may be cached until its nextUpdate; one with
    a nonce may not be stored at all."""
    issued = issue(clients, tmp_path)
    plain = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)]
    )
    with_nonce = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)],
        nonce=b"n" * 16,
    )
    assert suite.publication is not None

    first = get(suite.publication, get_path(issued.key_id, plain))
    second = get(suite.publication, get_path(issued.key_id, plain))
    fresh = get(suite.publication, get_path(issued.key_id, with_nonce))

    response = first.ocsp()
    max_age = int(first.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    lifetime = response.next_update_utc - response.this_update_utc  # type: ignore[operator]
    assert 0 < max_age <= min(60, lifetime.total_seconds())
    assert "public" in first.headers["Cache-Control"]
    assert first.headers["ETag"] == second.headers["ETag"]
    assert second.body == first.body
    assert first.headers["Last-Modified"]
    assert first.headers["Expires"]
    assert fresh.headers["Cache-Control"] == "no-store"
    assert fresh.ocsp().extensions.get_extension_for_class(
        x509.OCSPNonce
    ).value.nonce == (b"n" * 16)


def counted(response_status: str, cache: str) -> float:
    return metrics.OCSP_RESPONSES.labels(
        response_status=response_status, cache=cache
    )._value.get()  # type: ignore[attr-defined,no-any-return]


def test_requests_without_nonce_are_served_pre_signed(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """The second request for a certificate is a cache hit with the same
    bytes; a nonce request is signed for itself."""
    issued = issue(clients, tmp_path)
    der = request_der([cert_id(issued.intermediate, issued.certificate.serial_number)])
    assert suite.publication is not None
    hits, misses = counted("successful", "hit"), counted("successful", "miss")

    first = post(suite.publication, der).body
    second = post(suite.publication, der).body

    assert first == second
    assert counted("successful", "miss") == misses + 1
    assert counted("successful", "hit") == hits + 1


def test_bad_input_gets_ocsp_error_statuses_and_the_server_keeps_answering(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """Truncated, oversized, empty and garbage requests are malformedRequest;
    an unknown issuer and an unsupported CertID hash are unauthorized; a
    33-octet, an empty and a repeated nonce are malformedRequest; all with
    HTTP 200, and a good
    request is answered afterwards."""
    issued = issue(clients, tmp_path)
    serial = issued.certificate.serial_number
    good = request_der([cert_id(issued.intermediate, serial)])
    address = suite.publication
    assert address is not None
    malformed = ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    unauthorized = ocsp.OCSPResponseStatus.UNAUTHORIZED

    cases = [
        (post(address, good[:-5]), malformed),
        (post(address, good + b"\x00"), malformed),
        (post(address, b""), malformed),
        (post(address, b"\x30" + b"\xff" * 200_000), malformed),
        (post(address, b"not DER at all"), malformed),
        (get(address, f"/ocsp/{issued.key_id}/!!!not-base64***"), malformed),
        (get(address, f"/ocsp/{issued.key_id}/"), malformed),
        (get(address, f"/ocsp/{issued.key_id}/aGVsbG8="), malformed),
        (
            post(address, request_der([cert_id(issued.root, serial)])),
            unauthorized,
        ),
        (
            post(
                address,
                request_der([cert_id(issued.intermediate, serial, "sha512")]),
            ),
            unauthorized,
        ),
        (
            post(
                address,
                request_der([cert_id(issued.intermediate, serial)], nonce=b"x" * 33),
            ),
            malformed,
        ),
        (
            post(
                address,
                request_der([cert_id(issued.intermediate, serial)], nonce=b""),
            ),
            malformed,
        ),
        (
            post(
                address,
                request_der(
                    [cert_id(issued.intermediate, serial)], nonce=b"y" * 16, nonces=2
                ),
            ),
            malformed,
        ),
    ]

    for index, (answer, expected) in enumerate(cases):
        assert answer.ocsp().response_status == expected, index
        assert answer.headers["Cache-Control"] == "no-store"
    assert post(address, good).ocsp().certificate_status == ocsp.OCSPCertStatus.GOOD


def test_nonce_of_32_octets_is_echoed(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """RFC 8954's longest nonce is echoed, in a response signed for it."""
    issued = issue(clients, tmp_path)
    nonce = bytes(range(32))
    assert suite.publication is not None

    answer = post(
        suite.publication,
        request_der(
            [cert_id(issued.intermediate, issued.certificate.serial_number)], nonce
        ),
    ).ocsp()

    echoed = answer.extensions.get_extension_for_class(x509.OCSPNonce)
    assert echoed.value.nonce == nonce
    assert not echoed.critical


def test_delegated_responder_certificate_follows_rfc6960(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """The responder certificate: OCSPSigning EKU, id-pkix-ocsp-nocheck,
    digitalSignature, not a CA, valid at most 7 days, issued by the
    intermediate; the ResponderID is its SHA-1 key hash."""
    issued = issue(clients, tmp_path)
    assert suite.publication is not None
    answer = post(
        suite.publication,
        request_der([cert_id(issued.intermediate, issued.certificate.serial_number)]),
    ).ocsp()

    (responder,) = answer.certificates
    extensions = responder.extensions
    assert extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == (
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
    )
    extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert not extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    validity = responder.not_valid_after_utc - responder.not_valid_before_utc
    assert validity <= dt.timedelta(days=7)
    responder.verify_directly_issued_by(issued.intermediate)
    assert (
        answer.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(
            responder.public_key()  # type: ignore[arg-type]
        ).digest
    )


# With an injected clock ----------------------------------------------------


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[Suite, Clients, ManualClock]]:
    clock = ManualClock()
    suite = start_suite(
        publishing_settings(tmp_path / "data"),  # type: ignore[arg-type]
        clock=clock,
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    clients.create_frontdoor(FRONTDOOR)
    yield suite, clients, clock
    clients.close()
    suite.stop()


def test_pre_signed_responses_are_signed_again_at_half_life(
    clocked: tuple[Suite, Clients, ManualClock], tmp_path: Path
) -> None:
    """A pre-signed response is served until half its validity has passed,
    then replaced by a new one, so none goes out with less than half left.
    (Asked for shortly before half-life, it is also signed again in the
    background, refresh-ahead; whether that has happened by the next
    request is up to the background worker, so either new one will do.)"""
    suite, clients, clock = clocked
    issued = issue(clients, tmp_path)
    der = request_der([cert_id(issued.intermediate, issued.certificate.serial_number)])
    assert suite.publication is not None

    first = post(suite.publication, der).ocsp()
    clock.advance(dt.timedelta(minutes=29))
    same = post(suite.publication, der).ocsp()
    clock.advance(dt.timedelta(minutes=2))
    renewed = post(suite.publication, der).ocsp()

    assert same.this_update_utc == first.this_update_utc
    assert renewed.this_update_utc in (
        first.this_update_utc + dt.timedelta(minutes=29),
        first.this_update_utc + dt.timedelta(minutes=31),
    )
    assert renewed.next_update_utc - clock.now() > dt.timedelta(minutes=30)  # type: ignore[operator]


def test_responder_is_renewed_at_half_life_by_the_lease_holder(
    clocked: tuple[Suite, Clients, ManualClock], tmp_path: Path
) -> None:
    """Past half its life the responder certificate is replaced by the
    renewal job; responses are then signed by the new one."""
    suite, clients, clock = clocked
    issued = issue(clients, tmp_path)
    delegated = suite.ocsp_delegated
    assert delegated is not None
    assert suite.publication is not None
    nonce_request = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)], b"r" * 16
    )
    (before,) = post(suite.publication, nonce_request).ocsp().certificates

    assert delegated.renew_due() == 0
    clock.advance(dt.timedelta(days=3, hours=13))
    assert delegated.renew_due() == 1
    assert delegated.renew_due() == 0
    (after,) = post(suite.publication, nonce_request).ocsp().certificates

    assert after.serial_number != before.serial_number
    assert after.not_valid_before_utc > before.not_valid_before_utc
    after.verify_directly_issued_by(issued.intermediate)


def test_another_process_without_the_lease_does_not_renew(
    clocked: tuple[Suite, Clients, ManualClock], tmp_path: Path
) -> None:
    """Two responders sharing one database: only the lease holder renews."""
    suite, _, clock = clocked
    delegated = suite.ocsp_delegated
    assert delegated is not None
    lease = delegated._lease
    rival = Lease(
        lease._database,
        responder_module.LEASE_NAME,
        clock,
        dt.timedelta(minutes=5),
    )
    clock.advance(dt.timedelta(days=4))
    assert delegated.renew_due() == 1  # this process held the lease
    assert not rival.acquire()


# Redis shared by issuer processes ------------------------------------------


def test_revocation_replaces_the_pre_signed_response_in_redis(
    clean_redis: str, tmp_path: Path
) -> None:
    """With Redis, the pre-signed response is stored there; the revoking
    process replaces it with "revoked" at once, and a stale "good" written
    later by a slower process does not overwrite it."""
    suite = start_suite(publishing_settings(tmp_path / "data", redis_url=clean_redis))  # type: ignore[arg-type]
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        issued = issue(clients, tmp_path)
        serial = issued.certificate.serial_number
        der = request_der([cert_id(issued.intermediate, serial)])
        assert suite.publication is not None
        good = post(suite.publication, der).body
        store = redis.Redis.from_url(clean_redis)
        key = f"tessera:ocsp:{issued.key_id}:{serial:x}:sha1"
        held = responder_module.PresignedResponse.decode(store.get(key))  # type: ignore[arg-type]
        assert (held.status, held.der) == ("good", good)

        clients.revoke(issued.fingerprint, reason=1)

        stored = responder_module.PresignedResponse.decode(store.get(key))  # type: ignore[arg-type]
        assert stored.status == "revoked"
        assert post(suite.publication, der).ocsp().certificate_status == (
            ocsp.OCSPCertStatus.REVOKED
        )
        shared = responder_module.RedisPresigned(clean_redis)
        stale = dataclasses.replace(stored, status="good", der=good)
        assert not shared.put(
            (issued.key_id, serial, responder_module.SHA1),
            stale,
            dt.datetime.now(dt.UTC),
        )
        assert store.get(key)[0:1] == b"r"  # type: ignore[index]
        shared.close()
        store.close()
    finally:
        clients.close()
        suite.stop()


# The CA signing itself -------------------------------------------------------


def test_ca_signing_mode_signs_with_the_intermediate_audited(
    tmp_path: Path,
) -> None:
    """With ocsp_signing = "ca" the intermediate signs; openssl verifies the
    response, it carries no certificate, and the signature is audited."""
    suite = start_suite(
        publishing_settings(tmp_path / "data", issuer={"ocsp_signing": "ca"})  # type: ignore[arg-type]
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        issued = issue(clients, tmp_path)
        assert ": good" in openssl_status(issued)
        assert suite.publication is not None
        answer = post(
            suite.publication,
            request_der(
                [cert_id(issued.intermediate, issued.certificate.serial_number)]
            ),
        ).ocsp()
        assert answer.certificates == []
        assert suite.ocsp_delegated is None
        database = sqlite3.connect(tmp_path / "data" / "tessera.db")
        events = [
            row[0]
            for row in database.execute("SELECT action FROM audit_events").fetchall()
        ]
        database.close()
        assert "ocsp_response.sign" in events
    finally:
        clients.close()
        suite.stop()


def test_revocation_made_elsewhere_reaches_the_responder_through_the_stream(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """A revocation recorded straight at the registry (as another issuer
    process would) drops this responder's pre-signed "good": the next
    requests, with and without nonce, say "revoked"."""
    issued = issue(clients, tmp_path)
    serial = issued.certificate.serial_number
    plain = request_der([cert_id(issued.intermediate, serial)])
    assert suite.publication is not None
    address = suite.publication

    def status(der: bytes) -> ocsp.OCSPCertStatus:
        return post(address, der).ocsp().certificate_status

    def nonce_request() -> bytes:
        return request_der([cert_id(issued.intermediate, serial)], os.urandom(16))

    assert status(plain) == ocsp.OCSPCertStatus.GOOD
    assert status(nonce_request()) == ocsp.OCSPCertStatus.GOOD
    clients.registry.RecordRevocation(
        registry_pb2.RecordRevocationRequest(
            fingerprint_sha256=issued.fingerprint, reason=1
        ),
        timeout=30,
    )

    assert eventually(lambda: status(plain) == ocsp.OCSPCertStatus.REVOKED)
    assert status(nonce_request()) == ocsp.OCSPCertStatus.REVOKED


def test_two_issuer_processes_share_responders_and_pre_signed_responses(
    clean_redis: str, tmp_path: Path
) -> None:
    """Two issuers on one database and one Redis: the second uses the
    responder certificate the first made (it does not hold the lease), and
    serves the first one's pre-signed response from Redis; after the first
    revokes, the second says "revoked" on the next request."""
    first = start_suite(
        publishing_settings(tmp_path / "data", redis_url=clean_redis),  # type: ignore[arg-type]
        services=["registry", "issuer"],
    )
    second = None
    clients = None
    try:
        second = start_suite(
            publishing_settings(  # type: ignore[arg-type]
                tmp_path / "data",
                redis_url=clean_redis,
                issuer={"registry_address": first.address("registry")},
            ),
            services=["issuer"],
        )
        clients = Clients.connect(
            first.address("issuer"),
            first.address("registry"),
            first.address("registry"),
        )
        clients.create_frontdoor(FRONTDOOR)
        issued = issue(clients, tmp_path)
        der = request_der(
            [cert_id(issued.intermediate, issued.certificate.serial_number)]
        )
        assert first.publication is not None
        assert second.publication is not None

        from_first = post(first.publication, der)
        from_second = post(second.publication, der)
        assert from_second.body == from_first.body
        (responder_first,) = from_first.ocsp().certificates
        nonce = request_der(
            [cert_id(issued.intermediate, issued.certificate.serial_number)], b"s" * 16
        )
        (responder_second,) = post(second.publication, nonce).ocsp().certificates
        assert responder_second == responder_first

        clients.revoke(issued.fingerprint, reason=1)

        assert post(second.publication, der).ocsp().certificate_status == (
            ocsp.OCSPCertStatus.REVOKED
        )
    finally:
        if clients is not None:
            clients.close()
        if second is not None:
            second.stop()
        first.stop()


def test_compressed_requests_are_refused_without_inflating_them(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """A gzip body (a bomb of a gigabyte of zeros, or broken) is
    malformedRequest at once; the listener never inflates it."""
    issued = issue(clients, tmp_path)
    good = request_der([cert_id(issued.intermediate, issued.certificate.serial_number)])
    address = suite.publication
    assert address is not None
    bomb = gzip.compress(b"\0" * 50_000_000)

    for body in (bomb, b"\x1f\x8b broken", gzip.compress(good)):
        started = time.monotonic()
        answer = post(address, body, headers={"Content-Encoding": "gzip"})
        assert time.monotonic() - started < 2
        assert answer.ocsp().response_status == (
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        )
    assert post(address, good).ocsp().certificate_status == ocsp.OCSPCertStatus.GOOD


def test_a_body_that_never_arrives_is_cut_off(
    suite: Suite, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that announces a body and sends none holds its connection
    for BODY_SECONDS, then gets malformedRequest."""
    monkeypatch.setattr(ocsp_http, "BODY_SECONDS", 0.5)
    assert suite.publication is not None
    host, port = suite.publication.rsplit(":", 1)

    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /ocsp HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/ocsp-request\r\nContent-Length: 100\r\n\r\n"
        )
        started = time.monotonic()
        reply = connection.recv(65536)

    assert time.monotonic() - started < 5
    assert reply.startswith(b"HTTP/1.1 200")
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert ocsp.load_der_ocsp_response(body).response_status == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_a_body_sent_in_parts_within_the_limit_is_answered(
    suite: Suite, clients: Clients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that has not arrived whole with the headers is waited for
    (up to BODY_SECONDS) and answered once the rest comes, nonce echoed."""
    monkeypatch.setattr(ocsp_http, "BODY_SECONDS", 3.0)
    issued = issue(clients, tmp_path)
    nonce = os.urandom(16)
    body = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)], nonce
    )
    assert suite.publication is not None
    host, port = suite.publication.rsplit(":", 1)

    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/ocsp")
        connection.putheader("Content-Type", "application/ocsp-request")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body[:10])
        time.sleep(0.5)
        connection.send(body[10:])
        reply = connection.getresponse()
        status, content = reply.status, reply.read()
    finally:
        connection.close()

    assert status == 200
    answer = ocsp.load_der_ocsp_response(content)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        nonce
    )


def test_a_serial_longer_than_any_ca_issues_is_unknown(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """21 octets and more are not serial numbers (RFC 5280 4.1.2.2): the
    answer is unknown, not tryLater, and the registry is not asked."""
    issued = issue(clients, tmp_path)
    assert suite.publication is not None

    for serial in (2**167 + 5, 2**800):
        answer = post(
            suite.publication, request_der([cert_id(issued.intermediate, serial)])
        ).ocsp()
        assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_a_request_spanning_two_intermediates_is_unauthorized(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """No responder signs for two intermediates, so a request naming both
    is refused rather than half answered."""
    clients.create_frontdoor("orders")
    payments = issue(clients, tmp_path / "payments")
    orders = issue(clients, tmp_path / "orders", "orders")
    assert suite.publication is not None

    answer = post(
        suite.publication,
        request_der(
            [
                cert_id(payments.intermediate, payments.certificate.serial_number),
                cert_id(orders.intermediate, orders.certificate.serial_number),
            ]
        ),
    ).ocsp()

    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def _tlv(tag: int, body: bytes, long_form: bool = False) -> bytes:
    """One DER (or, with ``long_form``, BER) TLV, for requests that
    asn1crypto and cryptography would never write."""
    size = len(body)
    if size < 0x80 and not long_form:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8 or 1, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


_NONCE_OID = _tlv(0x06, bytes.fromhex("2b0601050507300102"))


def _handmade_request(
    certificate_id: bytes,
    *,
    nonce_value: bytes | None = None,
    serial: bytes | None = None,
    version: bytes = b"",
    requestor: bytes = b"",
    single_extensions: bytes = b"",
    outer: str = "der",
) -> bytes:
    """An OCSPRequest put together TLV by TLV: ``certificate_id`` is a DER
    CertID, whose serial number ``serial`` (an INTEGER's content octets)
    replaces; ``nonce_value`` is the nonce extension's extnValue as sent."""
    if serial is not None:
        parsed = asn1_ocsp.CertId.load(certificate_id)
        certificate_id = _tlv(
            0x30,
            parsed["hash_algorithm"].dump()
            + parsed["issuer_name_hash"].dump()
            + parsed["issuer_key_hash"].dump()
            + _tlv(0x02, serial),
        )
    single = _tlv(0x30, certificate_id + single_extensions)
    extensions = b""
    if nonce_value is not None:
        nonce = _tlv(0x30, _NONCE_OID + _tlv(0x04, nonce_value))
        extensions = _tlv(0xA2, _tlv(0x30, nonce))
    tbs = _tlv(0x30, version + requestor + _tlv(0x30, single) + extensions)
    if outer == "long-form":
        return _tlv(0x30, tbs, long_form=True)
    if outer == "indefinite":
        return b"\x30\x80" + tbs + b"\x00\x00"
    return _tlv(0x30, tbs)


def test_requests_that_are_not_der_are_malformed(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """RFC 6960 requests are DER: BER lengths, an explicit default version,
    padded or empty integers, a nonce whose extnValue is not the DER of an
    OCTET STRING (trailing octets, a long-form length, a constructed one, or
    a bare nonce with the wrapped bytes hidden elsewhere in the request) and
    a critical singleRequestExtension nobody understands are refused with
    malformedRequest, never answered with a nonce the client did not send.
    The same hand-made request in DER is answered and its nonce echoed."""
    issued = issue(clients, tmp_path)
    address = suite.publication
    assert address is not None
    certificate_id = asn1_ocsp.CertId(
        cert_id(issued.intermediate, issued.certificate.serial_number)
    ).dump()
    nonce = b"q" * 8
    wrapped = _tlv(0x04, nonce)
    critical_extension = _tlv(
        0xA0,
        _tlv(
            0x30,
            _tlv(
                0x30,
                _tlv(0x06, bytes.fromhex("2a0304"))
                + b"\x01\x01\xff"
                + _tlv(0x04, b"\x05\x00"),
            ),
        ),
    )
    control = post(address, _handmade_request(certificate_id, nonce_value=wrapped))
    echoed = control.ocsp()
    assert echoed.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert echoed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        nonce
    )

    cases = {
        "outer long-form length": _handmade_request(
            certificate_id, nonce_value=wrapped, outer="long-form"
        ),
        "outer indefinite length": _handmade_request(
            certificate_id, nonce_value=wrapped, outer="indefinite"
        ),
        "explicit default version": _handmade_request(
            certificate_id, nonce_value=wrapped, version=_tlv(0xA0, b"\x02\x01\x00")
        ),
        "padded serial": _handmade_request(
            certificate_id,
            serial=b"\x00"
            + issued.certificate.serial_number.to_bytes(20, "big").lstrip(b"\x00"),
        ),
        "empty serial": _handmade_request(certificate_id, serial=b""),
        "nonce with trailing octets": _handmade_request(
            certificate_id, nonce_value=wrapped + b"\xde\xad"
        ),
        "nonce with a long-form length": _handmade_request(
            certificate_id, nonce_value=_tlv(0x04, nonce, long_form=True)
        ),
        "constructed nonce": _handmade_request(
            certificate_id,
            nonce_value=b"\x24\x80"
            + _tlv(0x04, b"qqqq")
            + _tlv(0x04, b"qqqq")
            + b"\x00\x00",
        ),
        "bare nonce, wrapped copy in requestorName": _handmade_request(
            certificate_id,
            nonce_value=b"ABCDEFGH",
            requestor=_tlv(0xA1, _tlv(0x82, _tlv(0x04, _tlv(0x04, b"ABCDEFGH")))),
        ),
        "critical singleRequestExtension": _handmade_request(
            certificate_id, nonce_value=wrapped, single_extensions=critical_extension
        ),
    }
    for name, der in cases.items():
        answer = post(address, der)
        assert answer.status == 200, name
        assert answer.ocsp().response_status == (
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        ), name
    plain_get = get(address, "/ocsp")
    assert plain_get.status == 200
    assert plain_get.ocsp().response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # The server is unharmed.
    plain = post(address, _handmade_request(certificate_id)).ocsp()
    assert plain.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_a_nonce_without_its_octet_string_is_malformed(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """RFC 8954 wraps the nonce in an OCTET STRING inside extnValue; a bare
    one is refused, as it is in requests for several certificates, rather
    than echoed in a form the client never sent."""
    issued = issue(clients, tmp_path)
    wrapped = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)],
        nonce=b"\x01\x02\x03",
    )
    bare = wrapped.replace(
        bytes.fromhex("04050403010203"), bytes.fromhex("04050102030405")
    )
    assert bare != wrapped
    assert suite.publication is not None

    answer = post(suite.publication, bare).ocsp()

    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    echoed = post(suite.publication, wrapped).ocsp()
    assert echoed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        b"\x01\x02\x03"
    )


def test_padded_requests_are_answered_but_not_remembered(
    suite: Suite, clients: Clients, tmp_path: Path
) -> None:
    """Requests padded with a large extension still get their answer, but
    their bytes are not kept to recognise a repeat, so a stream of
    differently padded requests cannot fill the responder's memory."""
    issued = issue(clients, tmp_path)
    responder = suite.ocsp_responder
    assert responder is not None
    assert suite.publication is not None
    serial = issued.certificate.serial_number
    plain = request_der([cert_id(issued.intermediate, serial)])
    post(suite.publication, plain)
    remembered = len(responder._request_keys)

    for padding in range(20):
        tbs = {
            "request_list": [{"req_cert": cert_id(issued.intermediate, serial)}],
            "request_extensions": [
                {
                    "extn_id": "1.2.3.4",
                    "critical": False,
                    "extn_value": core.OctetString(bytes([padding]) * 5000).dump(),
                }
            ],
        }
        padded = asn1_ocsp.OCSPRequest({"tbs_request": tbs}).dump()
        answer = post(suite.publication, padded).ocsp()
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD

    assert len(responder._request_keys) == remembered
