"""The validator's verdicts through real gRPC: a refusal is an answer with
reasons, not an RPC error; the verdict names the client; revocation is
refused even when the cache proves nothing; and, with the registry
unreachable, the frontdoor's failure policy decides."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from services.common.config import Settings
from services.common.revocation_cache import CachedRevocation, MemoryRevocationCache
from services.common.rpc import open_channel
from services.registry.client import RegistryClient
from services.suite import Suite, start_suite
from services.validator.chain import AnchorSet
from services.validator.revocation import RevocationChecker
from services.validator.service import Validator
from services.validator.trust import FrontdoorTrust
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2
from tests.support import (
    Clients,
    ManualClock,
    eventually,
    free_port,
    make_csr,
    rpc_error,
    suite_settings,
)
from tests.validator.test_chain import Authority, key_usage, make_ca, make_leaf

FRONTDOOR = "payments"
OK = common_pb2.VALIDATION_REASON_OK
EXPIRED = common_pb2.VALIDATION_REASON_EXPIRED
NOT_YET_VALID = common_pb2.VALIDATION_REASON_NOT_YET_VALID
UNTRUSTED_ISSUER = common_pb2.VALIDATION_REASON_UNTRUSTED_ISSUER
BAD_SIGNATURE = common_pb2.VALIDATION_REASON_BAD_SIGNATURE
WRONG_USAGE = common_pb2.VALIDATION_REASON_WRONG_USAGE
REVOKED = common_pb2.VALIDATION_REASON_REVOKED
REVOCATION_UNKNOWN = common_pb2.VALIDATION_REASON_REVOCATION_UNKNOWN
FRONTDOOR_UNKNOWN = common_pb2.VALIDATION_REASON_FRONTDOOR_UNKNOWN
MALFORMED = common_pb2.VALIDATION_REASON_MALFORMED
KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE
DAY = dt.timedelta(days=1)


@dataclasses.dataclass
class Installation:
    """A running suite, the in-process revocation cache it shares, and
    clients."""

    suite: Suite
    settings: Settings
    cache: MemoryRevocationCache
    clients: Clients

    def frontdoor_ca(self, frontdoor: str = FRONTDOOR) -> Authority:
        """The frontdoor's intermediate with its private key, read from the
        software key store, to sign client certificates the issuer never
        would."""
        record = self.clients.issuer.GetFrontdoor(
            issuer_pb2.GetFrontdoorRequest(name=frontdoor), timeout=30
        )
        certificate = x509.load_der_x509_certificate(
            record.intermediates[0].certificate
        )
        key_file = self.settings.data_dir / "keys" / f"intermediate-{frontdoor}-1.pem"
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key() == certificate.public_key()
        return Authority(certificate, key)

    def wait_until_cache_is_complete(self, issuer_key_id: str, sequence: int) -> None:
        """Poll until the registry's cache sync marked the issuer's hash
        complete up to ``sequence``."""

        def complete() -> bool:
            marker = self.cache.markers([issuer_key_id])[issuer_key_id]
            return marker is not None and marker >= sequence

        assert eventually(complete), "the cache sync never covered the revocation"


@contextlib.contextmanager
def installed(data_dir: Path, revocation_stream: bool = True) -> Iterator[Installation]:
    """A suite whose validator keeps trust stores for an hour and whose
    cache sync runs only when a revocation wakes it, so what the validator
    holds changes only when a test makes it change; with the frontdoor
    "payments"."""
    settings = suite_settings(
        data_dir,
        registry={"cache_sync_interval_seconds": 3600},
        validator={
            "trust_store_ttl_seconds": 3600,
            "revocation_stream": revocation_stream,
        },
    )
    cache = MemoryRevocationCache()
    suite = start_suite(settings, cache=cache)
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        yield Installation(suite, settings, cache, clients)
    finally:
        clients.close()
        suite.stop()


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """One installation for the module's tests that do not flush the cache."""
    with installed(tmp_path_factory.mktemp("verdicts") / "data") as started:
        yield started


@pytest.fixture
def quiet_installation(tmp_path: Path) -> Iterator[Installation]:
    """An installation of the test's own, where no other test's revocation
    can wake the cache sync after the test flushed the cache."""
    with installed(tmp_path / "data") as started:
        yield started


@pytest.fixture
def clients(installation: Installation) -> Clients:
    """The module's clients, in place of conftest's suite of its own."""
    return installation.clients


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _key_id(certificate: x509.Certificate) -> str:
    extension = certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    return extension.value.digest.hex()


# Answers, not errors --------------------------------------------------------


def test_valid_verdict_names_the_client(clients: Clients) -> None:
    """Subject, SANs, serial number, fingerprint, issuer key id and notAfter
    in the verdict are those of the certificate."""
    sans = [
        x509.DNSName("payments.internal"),
        x509.UniformResourceIdentifier("spiffe://example.org/ns/prod/sa/payments"),
        x509.RFC822Name("payments-team@example.org"),
    ]
    issued = clients.issue(FRONTDOOR, make_csr("CN=payments-api,O=Example", sans))
    certificate = x509.load_der_x509_certificate(issued.certificate)
    intermediate = x509.load_der_x509_certificate(issued.chain[0])

    verdict = clients.validate([issued.certificate], FRONTDOOR)

    assert verdict.valid, verdict.message
    assert list(verdict.reasons) == [OK]
    identity = verdict.identity
    assert identity.subject == "CN=payments-api,O=Example"
    assert identity.subject == certificate.subject.rfc4514_string()
    assert [(name.type, name.value) for name in identity.subject_alt_names] == [
        (common_pb2.SubjectAltName.TYPE_DNS, "payments.internal"),
        (
            common_pb2.SubjectAltName.TYPE_URI,
            "spiffe://example.org/ns/prod/sa/payments",
        ),
        (common_pb2.SubjectAltName.TYPE_EMAIL, "payments-team@example.org"),
    ]
    assert identity.serial_number == format(certificate.serial_number, "x")
    assert identity.fingerprint_sha256 == _sha256(issued.certificate)
    assert identity.issuer_key_id == _key_id(intermediate)
    assert identity.not_valid_after.ToDatetime(dt.UTC) == (
        certificate.not_valid_after_utc
    )
    assert not verdict.HasField("revocation")


def test_presented_intermediate_does_not_change_the_verdict(clients: Clients) -> None:
    """Clients often send their chain along; the frontdoor's own
    intermediate in it is harmless, the platform root too."""
    issued = clients.issue(FRONTDOOR)

    verdict = clients.validate([issued.certificate, *issued.chain], FRONTDOOR)

    assert verdict.valid, verdict.message


def _certificate_with_renamed_extension(old: bytes, new: bytes) -> bytes:
    """A self-signed certificate whose DER has ``old`` replaced by ``new``
    once (the signature no longer matters: parsing must fail first)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken")])
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = dt.datetime.now(dt.UTC)
    der = _der(
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + DAY)
        .add_extension(identifier, critical=False)
        .add_extension(
            x509.UnrecognizedExtension(
                ObjectIdentifier("2.5.29.99"), identifier.public_bytes()
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    assert der.count(old) == 1
    return der.replace(old, new)


def certificate_with_a_name_that_is_not_utf8() -> bytes:
    """A UTF8String common name holding bytes that are not UTF-8."""
    unknown = bytes.fromhex("0603551d63")
    der = _certificate_with_renamed_extension(unknown, unknown)
    return der.replace(b"broken", bytes.fromhex("fffefdfcfbfa"))


def certificate_with_repeated_extension() -> bytes:
    """Two subjectKeyIdentifier extensions."""
    return _certificate_with_renamed_extension(
        bytes.fromhex("0603551d63"), bytes.fromhex("0603551d0e")
    )


def certificate_with_unknown_curve() -> bytes:
    """An EC key on a curve OID nobody defines."""
    return _certificate_with_renamed_extension(
        bytes.fromhex("2a8648ce3d030107"), bytes.fromhex("2a8648ce3d030109")
    )


@pytest.mark.parametrize(
    ("chain", "where"),
    [
        pytest.param(lambda _: [b"garbage"], "the client certificate", id="garbage"),
        pytest.param(lambda _: [b""], "the client certificate", id="empty-bytes"),
        pytest.param(
            lambda leaf: [leaf[:-20]], "the client certificate", id="truncated"
        ),
        pytest.param(
            lambda _: [b"\x30" + bytes(70 * 1024)],
            "the client certificate",
            id="oversized",
        ),
        pytest.param(
            lambda _: [certificate_with_repeated_extension()],
            "the client certificate",
            id="repeated-extension",
        ),
        pytest.param(
            lambda _: [certificate_with_unknown_curve()],
            "the client certificate",
            id="unknown-curve",
        ),
        pytest.param(
            lambda _: [certificate_with_a_name_that_is_not_utf8()],
            "the client certificate",
            id="name-not-utf8",
        ),
        pytest.param(
            lambda leaf: [leaf, b"junk"],
            "certificate 2 of the chain",
            id="garbage-intermediate",
        ),
    ],
)
def test_unparseable_certificate_is_a_malformed_verdict(
    clients: Clients, chain: Callable[[bytes], list[bytes]], where: str
) -> None:
    """Bytes that are not a usable certificate get an answer, not an RPC
    error."""
    leaf = clients.issue(FRONTDOOR).certificate

    verdict = clients.validate(chain(leaf), FRONTDOOR)

    assert not verdict.valid
    assert list(verdict.reasons) == [MALFORMED]
    assert verdict.message == f"{where} is not a DER-encoded X.509 certificate"


def test_malformed_leaf_verdict_has_no_identity(clients: Clients) -> None:
    verdict = clients.validate([b"garbage"], FRONTDOOR)

    assert not verdict.HasField("identity")


@pytest.mark.parametrize(
    ("chain", "frontdoor", "fragment"),
    [
        pytest.param([], FRONTDOOR, "chain is empty", id="empty-chain"),
        pytest.param([b"x"] * 11, FRONTDOOR, "at most 10", id="chain-too-long"),
        pytest.param([b"x"], "", "frontdoor is empty", id="no-frontdoor"),
    ],
)
def test_request_without_a_question_is_invalid_argument(
    clients: Clients, chain: list[bytes], frontdoor: str, fragment: str
) -> None:
    error = rpc_error(lambda: clients.validate(chain, frontdoor))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (error.details() or "")


def test_unknown_frontdoor_is_a_frontdoor_unknown_verdict(clients: Clients) -> None:
    issued = clients.issue(FRONTDOOR)

    verdict = clients.validate([issued.certificate], "nowhere")

    assert not verdict.valid
    assert list(verdict.reasons) == [FRONTDOOR_UNKNOWN]
    assert verdict.message == "frontdoor 'nowhere' does not exist"
    assert verdict.identity.fingerprint_sha256 == _sha256(issued.certificate)


# Client certificates the issuer would never sign ------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stranger() -> Authority:
    """A valid CA that is no anchor of any frontdoor."""
    return make_ca(
        "someone else's CA", not_before=_now() - 30 * DAY, not_after=_now() + 30 * DAY
    )


@pytest.mark.parametrize(
    ("make", "reasons", "fragment"),
    [
        pytest.param(
            lambda ca: make_leaf(
                ca, not_before=_now() - 10 * DAY, not_after=_now() - DAY
            ),
            [EXPIRED],
            "the certificate expired on",
            id="expired",
        ),
        pytest.param(
            lambda ca: make_leaf(
                ca, not_before=_now() + DAY, not_after=_now() + 9 * DAY
            ),
            [NOT_YET_VALID],
            "the certificate is not valid before",
            id="not-yet-valid",
        ),
        pytest.param(
            lambda ca: make_leaf(
                ca,
                not_before=_now() - DAY,
                not_after=_now() + DAY,
                extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
            ),
            [WRONG_USAGE],
            "does not include clientAuth",
            id="server-auth-only",
        ),
        pytest.param(
            lambda ca: make_leaf(
                ca,
                not_before=_now() - DAY,
                not_after=_now() + DAY,
                usage=key_usage(key_agreement=True),
            ),
            [WRONG_USAGE],
            "lacks digitalSignature",
            id="key-usage-without-digital-signature",
        ),
        pytest.param(
            lambda ca: make_leaf(
                ca,
                not_before=_now() - DAY,
                not_after=_now() + DAY,
                signed_by=ec.generate_private_key(ec.SECP256R1()),
            ),
            [BAD_SIGNATURE],
            "does not verify with the key of its named issuer",
            id="bad-signature",
        ),
        pytest.param(
            lambda ca: make_leaf(
                stranger(),
                not_before=_now() - DAY,
                not_after=_now() + DAY,
            ),
            [UNTRUSTED_ISSUER],
            "no trust anchor of this frontdoor issued the certificate",
            id="untrusted-issuer",
        ),
        pytest.param(
            lambda ca: make_leaf(
                stranger(),
                not_before=_now() - 10 * DAY,
                not_after=_now() - DAY,
            ),
            [EXPIRED, UNTRUSTED_ISSUER],
            "expired on",
            id="expired-and-untrusted",
        ),
    ],
)
def test_crafted_client_certificate_gets_its_reasons(
    installation: Installation,
    make: Callable[[Authority], x509.Certificate],
    reasons: list[int],
    fragment: str,
) -> None:
    """Certificates signed with the frontdoor's own intermediate key (or
    another), outside the issuer's profile, through gRPC."""
    leaf = make(installation.frontdoor_ca())

    verdict = installation.clients.validate([_der(leaf)], FRONTDOOR)

    assert not verdict.valid
    assert list(verdict.reasons) == reasons
    assert fragment in verdict.message
    assert verdict.identity.serial_number == format(leaf.serial_number, "x")


def test_client_certificate_without_san_is_valid(installation: Installation) -> None:
    """Identity may come from the subject alone (DESIGN, "Trust anchors")."""
    leaf = make_leaf(
        installation.frontdoor_ca(),
        not_before=_now() - DAY,
        not_after=_now() + DAY,
        sans=(),
    )

    verdict = installation.clients.validate([_der(leaf)], FRONTDOOR)

    assert verdict.valid, verdict.message
    assert list(verdict.identity.subject_alt_names) == []
    assert verdict.identity.subject == "CN=payments-api"


def test_frontdoor_intermediate_presented_as_client_certificate_is_refused(
    clients: Clients,
) -> None:
    issued = clients.issue(FRONTDOOR)

    verdict = clients.validate([issued.chain[0]], FRONTDOOR)

    assert not verdict.valid


# Revocation -----------------------------------------------------------------


def test_revoked_certificate_is_revoked_with_its_revocation(clients: Clients) -> None:
    issued = clients.issue(FRONTDOOR)
    assert clients.validate([issued.certificate], FRONTDOOR).valid

    revocation = clients.revoke(issued.record.fingerprint_sha256, KEY_COMPROMISE)
    verdict = clients.validate([issued.certificate], FRONTDOOR)

    assert not verdict.valid
    assert list(verdict.reasons) == [REVOKED]
    assert "the certificate was revoked on" in verdict.message
    assert "(reason: keyCompromise)" in verdict.message
    assert verdict.revocation.reason == KEY_COMPROMISE
    assert verdict.revocation.serial_number == issued.record.serial_number
    assert verdict.revocation.issuer_key_id == issued.record.issuer_key_id
    assert verdict.revocation.sequence == revocation.sequence
    assert verdict.revocation.revocation_date.seconds == (
        revocation.revocation_date.seconds
    )


def test_certificate_on_hold_is_refused_as_revoked(clients: Clients) -> None:
    issued = clients.issue(FRONTDOOR)

    clients.revoke(
        issued.record.fingerprint_sha256, common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD
    )
    verdict = clients.validate([issued.certificate], FRONTDOOR)

    assert list(verdict.reasons) == [REVOKED]
    assert "(reason: certificateHold)" in verdict.message


def test_revoked_certificate_is_refused_after_the_cache_lost_everything(
    quiet_installation: Installation,
) -> None:
    """Without the completeness marker the cache proves nothing, so the
    validator asks the registry, whose answer carries the whole log entry."""
    installation = quiet_installation
    clients = installation.clients
    issued = clients.issue(FRONTDOOR)
    key_id = issued.record.issuer_key_id
    revocation = clients.revoke(issued.record.fingerprint_sha256, KEY_COMPROMISE)
    installation.wait_until_cache_is_complete(key_id, revocation.sequence)

    installation.cache.flush()
    verdict = clients.validate([issued.certificate], FRONTDOOR)

    assert installation.cache.markers([key_id]) == {key_id: None}
    assert list(verdict.reasons) == [REVOKED]
    assert verdict.revocation == revocation


def test_unrevoked_certificate_is_valid_after_the_cache_lost_everything(
    quiet_installation: Installation,
) -> None:
    """The registry, asked instead of the cache, says "not revoked"."""
    installation = quiet_installation
    issued = installation.clients.issue(FRONTDOOR)
    key_id = issued.record.issuer_key_id

    installation.cache.flush()
    verdict = installation.clients.validate([issued.certificate], FRONTDOOR)

    assert installation.cache.markers([key_id]) == {key_id: None}
    assert verdict.valid, verdict.message
    assert verdict.message == "the certificate is valid"


def _intermediate_fingerprint(clients: Clients, frontdoor: str) -> tuple[str, str]:
    """The fingerprint and serial number of the frontdoor's intermediate."""
    record = clients.issuer.GetFrontdoor(
        issuer_pb2.GetFrontdoorRequest(name=frontdoor), timeout=30
    )
    der = record.intermediates[0].certificate
    serial = x509.load_der_x509_certificate(der).serial_number
    return _sha256(der), format(serial, "x")


def test_revoked_intermediate_drops_the_frontdoor_trust_store_at_once(
    clients: Clients,
) -> None:
    """The validator holds the frontdoor's trust store for an hour, yet the
    intermediate's revocation, heard on the revocation stream, drops it at
    once: the verdict names the withdrawn issuing CA and its revocation."""
    clients.create_frontdoor("compromised-now")
    issued = clients.issue("compromised-now")
    assert clients.validate([issued.certificate], "compromised-now").valid
    fingerprint, serial_number = _intermediate_fingerprint(clients, "compromised-now")
    key_id = issued.record.issuer_key_id

    clients.revoke(fingerprint, common_pb2.REVOCATION_REASON_CA_COMPROMISE)

    def names_the_withdrawn_anchor() -> bool:
        verdict = clients.validate([issued.certificate], "compromised-now")
        if verdict.valid:
            return False  # the stream has not brought the revocation yet
        assert list(verdict.reasons) == [REVOKED]
        return f"issuing CA {key_id} was revoked" in verdict.message

    assert eventually(names_the_withdrawn_anchor, timeout=5)
    verdict = clients.validate([issued.certificate], "compromised-now")
    assert verdict.revocation.serial_number == serial_number


def test_certificate_of_a_revoked_intermediate_is_revoked(tmp_path: Path) -> None:
    """A validator that holds the frontdoor's trust store from before the
    revocation (here: one that does not follow the revocation stream)
    checks the intermediate's revocation like a client's."""
    with installed(tmp_path / "data", revocation_stream=False) as installation:
        _refuses_under_a_revoked_intermediate(installation.clients)


def _refuses_under_a_revoked_intermediate(clients: Clients) -> None:
    clients.create_frontdoor("compromised")
    issued = clients.issue("compromised")
    assert clients.validate([issued.certificate], "compromised").valid
    fingerprint, serial_number = _intermediate_fingerprint(clients, "compromised")

    clients.revoke(fingerprint, common_pb2.REVOCATION_REASON_CA_COMPROMISE)
    verdict = clients.validate([issued.certificate], "compromised")

    assert not verdict.valid
    assert list(verdict.reasons) == [REVOKED]
    assert "its issuing CA was revoked" in verdict.message
    assert "(reason: cACompromise)" in verdict.message
    assert verdict.revocation.serial_number == serial_number


def test_certificate_of_a_revoked_intermediate_is_refused_by_a_fresh_validator(
    clients: Clients,
) -> None:
    """A validator that fetches the trust store after the revocation no
    longer builds paths to the intermediate, yet still names why: the
    registry lists it among the frontdoor's withdrawn anchors with its
    revocation, so the verdict is REVOKED with the revocation's details."""
    clients.create_frontdoor("compromised-early")
    issued = clients.issue("compromised-early")
    fingerprint, _ = _intermediate_fingerprint(clients, "compromised-early")

    clients.revoke(fingerprint, common_pb2.REVOCATION_REASON_CA_COMPROMISE)
    verdict = clients.validate(
        [issued.certificate, issued.chain[0]], "compromised-early"
    )

    assert not verdict.valid
    assert list(verdict.reasons) == [REVOKED]
    assert verdict.revocation.reason == common_pb2.REVOCATION_REASON_CA_COMPROMISE
    assert "issuing CA" in verdict.message


def test_certificate_of_an_expired_intermediate_is_expired(tmp_path: Path) -> None:
    """Once the frontdoor's intermediate has expired it is no anchor, and the
    verdict names the expired issuing CA rather than an unknown issuer."""
    clock = ManualClock()
    settings = suite_settings(
        tmp_path / "data", issuer={"intermediate_validity_days": 2}
    )
    running = start_suite(settings, clock=clock)
    connected = Clients.connect(
        running.address("issuer"),
        running.address("registry"),
        running.address("validator"),
    )
    try:
        connected.create_frontdoor("short-lived")
        issued = connected.issue("short-lived")
        clock.advance(dt.timedelta(days=3))

        verdict = connected.validate([issued.certificate], "short-lived")
    finally:
        connected.close()
        running.stop()

    assert not verdict.valid
    assert common_pb2.VALIDATION_REASON_EXPIRED in verdict.reasons
    assert UNTRUSTED_ISSUER not in verdict.reasons
    assert "issuing CA" in verdict.message


# With the registry unreachable -----------------------------------------------


NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class StandInTrustStores:
    """Trust stores the validator would have fetched: one frontdoor whose
    anchor is an intermediate Tessera issued."""

    trust: FrontdoorTrust

    def get(self, frontdoor: str) -> FrontdoorTrust | None:
        return self.trust if frontdoor == self.trust.frontdoor else None


@dataclasses.dataclass
class Isolated:
    """A Validator whose registry cannot be reached, and what it checks."""

    validator: Validator
    cache: MemoryRevocationCache
    anchor: Authority
    leaf: x509.Certificate

    @property
    def anchor_key_id(self) -> str:
        return _key_id(self.anchor.certificate)


@pytest.fixture
def isolated() -> Iterator[Callable[[int], Isolated]]:
    """Build a Validator with a RegistryClient pointing at a closed port, an
    empty in-process cache and a stand-in trust store with a given failure
    policy."""
    channels: list[grpc.Channel] = []

    def build(on_unknown: int) -> Isolated:
        channel = open_channel(f"127.0.0.1:{free_port()}")
        channels.append(channel)
        registry = RegistryClient(channel, timeout_seconds=1)
        cache = MemoryRevocationCache()
        anchor = make_ca("payments frontdoor CA")
        trust = FrontdoorTrust(
            frontdoor=FRONTDOOR,
            anchors=AnchorSet([anchor.certificate]),
            issued_anchor_key_ids=frozenset({_key_id(anchor.certificate)}),
            withdrawn=(),
            revocation=common_pb2.RevocationPolicy(on_unknown=on_unknown),
            fetched_at=NOW,
        )
        validator = Validator(
            StandInTrustStores(trust),  # type: ignore[arg-type]
            RevocationChecker(cache, registry, registry_timeout_seconds=0.5),
            ManualClock(NOW),
        )
        return Isolated(validator, cache, anchor, make_leaf(anchor))

    yield build
    for channel in channels:
        channel.close()


@pytest.mark.parametrize(
    "on_unknown",
    [
        pytest.param(
            common_pb2.REVOCATION_FAILURE_POLICY_FAIL_CLOSED, id="fail-closed"
        ),
        pytest.param(
            common_pb2.REVOCATION_FAILURE_POLICY_UNSPECIFIED, id="platform-default"
        ),
    ],
)
def test_unknown_revocation_status_is_refused_when_failing_closed(
    isolated: Callable[[int], Isolated], on_unknown: int
) -> None:
    subject = isolated(on_unknown)

    verdict = subject.validator.validate([_der(subject.leaf)], FRONTDOOR)

    assert not verdict.valid
    assert list(verdict.reasons) == [REVOCATION_UNKNOWN]
    assert "revocation status is unknown and the frontdoor fails closed" in (
        verdict.message
    )
    assert "the registry did not answer" in verdict.message
    assert verdict.identity.serial_number == format(subject.leaf.serial_number, "x")


def test_unknown_revocation_status_is_valid_with_a_warning_when_failing_open(
    isolated: Callable[[int], Isolated],
) -> None:
    subject = isolated(common_pb2.REVOCATION_FAILURE_POLICY_FAIL_OPEN)

    verdict = subject.validator.validate([_der(subject.leaf)], FRONTDOOR)

    assert verdict.valid
    assert list(verdict.reasons) == [OK]
    assert verdict.message.startswith(
        "valid, but revocation status is unknown and the frontdoor fails open"
    )


def test_complete_cache_answers_without_the_registry(
    isolated: Callable[[int], Isolated],
) -> None:
    """With the completeness marker present, "not revoked" is proven even
    though the registry is down, whatever the failure policy."""
    subject = isolated(common_pb2.REVOCATION_FAILURE_POLICY_FAIL_CLOSED)
    token = subject.cache.begin_rebuild(subject.anchor_key_id)
    assert token is not None
    assert subject.cache.finish_rebuild(subject.anchor_key_id, token, 0)

    verdict = subject.validator.validate([_der(subject.leaf)], FRONTDOOR)

    assert verdict.valid
    assert verdict.message == "the certificate is valid"


def test_cached_revocation_is_refused_without_the_registry(
    isolated: Callable[[int], Isolated],
) -> None:
    """A revocation entry in the cache is enough, even under fail-open."""
    subject = isolated(common_pb2.REVOCATION_FAILURE_POLICY_FAIL_OPEN)
    subject.cache.put_fast_path(
        subject.anchor_key_id,
        format(subject.leaf.serial_number, "x"),
        CachedRevocation(sequence=1, reason=KEY_COMPROMISE, revocation_date=NOW - DAY),
    )

    verdict = subject.validator.validate([_der(subject.leaf)], FRONTDOOR)

    assert list(verdict.reasons) == [REVOKED]
    assert verdict.revocation.reason == KEY_COMPROMISE
    assert verdict.revocation.sequence == 1


def test_unknown_frontdoor_needs_no_registry(
    isolated: Callable[[int], Isolated],
) -> None:
    subject = isolated(common_pb2.REVOCATION_FAILURE_POLICY_FAIL_CLOSED)

    verdict = subject.validator.validate([_der(subject.leaf)], "nowhere")

    assert list(verdict.reasons) == [FRONTDOOR_UNKNOWN]
