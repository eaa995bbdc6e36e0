"""The registry's store on SQLite and PostgreSQL: frontdoors, certificates,
listings with page tokens, and the gap-free revocation log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import services.registry
from services.common import certificate_facts as facts
from services.common import identifiers
from services.common.config import KeyPolicyConfig
from services.common.database import Database, migrate
from services.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PolicyRefusal,
)
from services.registry.models import RegistryBase
from services.registry.store import CertificateSelector, RegistryStore
from services.registry.usage import UsageEntry
from tessera.common.v1 import common_pb2
from tests.support import ManualClock, common_name

START = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)
KEY_COMPROMISE = common_pb2.REVOCATION_REASON_KEY_COMPROMISE
CLIENT = common_pb2.CERTIFICATE_KIND_CLIENT
ACTIVE = common_pb2.CERTIFICATE_STATUS_ACTIVE
REVOKED = common_pb2.CERTIFICATE_STATUS_REVOKED
ON_HOLD = common_pb2.CERTIFICATE_STATUS_ON_HOLD
EXPIRED = common_pb2.CERTIFICATE_STATUS_EXPIRED
ANY_STATUS = common_pb2.CERTIFICATE_STATUS_UNSPECIFIED


# A small PKI ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ca:
    """A CA certificate and its key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)

    @property
    def key_id(self) -> str:
        return identifiers.subject_key_id(self.certificate)


def _builder(
    subject: str,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_valid_before: dt.datetime,
    not_valid_after: dt.datetime,
    serial_number: int | None,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(common_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    )


def make_root(now: dt.datetime) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder(
            "Tessera root",
            common_name("Tessera root"),
            key.public_key(),
            now - dt.timedelta(days=1),
            now + dt.timedelta(days=3650),
            None,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(certificate, key)


def make_intermediate(
    root: Ca,
    now: dt.datetime,
    name: str = "payments",
    serial_number: int | None = None,
    days: int = 1825,
) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        _builder(
            f"{name} intermediate",
            root.certificate.subject,
            key.public_key(),
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=days),
            serial_number,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_aki(root), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    return Ca(certificate, key)


def make_client(
    issuer: Ca,
    now: dt.datetime,
    subject: str = "client.example",
    serial_number: int | None = None,
    days: int = 90,
    ca: bool | None = False,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(
            subject,
            issuer.certificate.subject,
            key.public_key(),
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=days),
            serial_number,
        )
        .add_extension(_aki(issuer), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    return builder.sign(issuer.key, hashes.SHA256())


def _aki(issuer: Ca) -> x509.AuthorityKeyIdentifier:
    ski = issuer.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def by_fingerprint(certificate: x509.Certificate) -> CertificateSelector:
    return CertificateSelector(fingerprint=identifiers.fingerprint(certificate))


# Fixtures -------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    migrate(database_url, "common")
    migrate(database_url, "registry")
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def store(database: Database, clock: ManualClock) -> RegistryStore:
    return RegistryStore(database, clock, KeyPolicyConfig())


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: ManualClock) -> Iterator[RegistryStore]:
    """A store on SQLite only, for requests refused before any query runs."""
    url = f"sqlite:///{tmp_path / 'refusals.db'}"
    migrate(url, "common")
    migrate(url, "registry")
    database = Database(url)
    yield RegistryStore(database, clock, KeyPolicyConfig())
    database.dispose()


@pytest.fixture
def root(store: RegistryStore, clock: ManualClock) -> Ca:
    """The platform root, recorded as the issuer records it."""
    ca = make_root(clock.now())
    store.record_certificate(
        ca.der, "", "platform root", common_pb2.CERTIFICATE_KIND_ROOT
    )
    return ca


@pytest.fixture
def payments(store: RegistryStore, root: Ca, clock: ManualClock) -> Ca:
    """The intermediate of frontdoor "payments"."""
    ca = make_intermediate(root, clock.now(), "payments")
    store.register_frontdoor("payments", common_pb2.FrontdoorSettings(), ca.der)
    return ca


def record_client(
    store: RegistryStore,
    issuer: Ca,
    clock: ManualClock,
    frontdoor: str = "payments",
    **fields: Any,
) -> x509.Certificate:
    certificate = make_client(issuer, clock.now(), **fields)
    store.record_certificate(der(certificate), frontdoor, "a client", CLIENT)
    return certificate


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every registry table."""
    with database.reading() as session:
        return {
            table.name: [
                tuple(row)
                for row in session.execute(
                    sa.select(table).order_by(*table.primary_key.columns)
                )
            ]
            for table in RegistryBase.metadata.sorted_tables
        }


# Frontdoors -----------------------------------------------------------------


def test_register_frontdoor_records_its_intermediate(
    store: RegistryStore, root: Ca, clock: ManualClock
) -> None:
    intermediate = make_intermediate(root, clock.now())

    frontdoor = store.register_frontdoor(
        "payments", common_pb2.FrontdoorSettings(), intermediate.der
    )

    assert frontdoor.name == "payments"
    assert [ca.key_id for ca in frontdoor.intermediates] == [intermediate.key_id]
    assert frontdoor.intermediates[0].certificate == intermediate.der
    assert frontdoor.intermediates[0].status == ACTIVE
    assert frontdoor.created_at.ToDatetime(dt.UTC) == clock.now()
    assert store.get_frontdoor("payments") == frontdoor
    record = store.get_certificate(by_fingerprint(intermediate.certificate))
    assert record.kind == common_pb2.CERTIFICATE_KIND_INTERMEDIATE
    assert record.issuer_key_id == root.key_id
    assert record.frontdoor == "payments"


def test_register_frontdoor_again_with_same_intermediate_is_idempotent(
    store: RegistryStore, payments: Ca, database: Database
) -> None:
    """An issuer that lost the answer may retry."""
    first = store.get_frontdoor("payments")
    before = snapshot(database)

    again = store.register_frontdoor(
        "payments", common_pb2.FrontdoorSettings(), payments.der
    )

    assert again == first
    assert snapshot(database) == before


def test_rejects_second_frontdoor_of_same_name_with_other_intermediate(
    store: RegistryStore, payments: Ca, root: Ca, clock: ManualClock
) -> None:
    other = make_intermediate(root, clock.now())

    with pytest.raises(AlreadyExists, match="frontdoor 'payments' already exists"):
        store.register_frontdoor("payments", common_pb2.FrontdoorSettings(), other.der)


@pytest.mark.parametrize(
    "name",
    ["", "Payments", "-payments", "payments-", "pay_ments", "pay ments", "a" * 64],
)
def test_rejects_bad_frontdoor_name(
    sqlite_store: RegistryStore, clock: ManualClock, name: str
) -> None:
    intermediate = make_intermediate(make_root(clock.now()), clock.now())

    with pytest.raises(InvalidArgument, match="is not valid"):
        sqlite_store.register_frontdoor(
            name, common_pb2.FrontdoorSettings(), intermediate.der
        )
    assert sqlite_store.list_frontdoors() == []


def test_rejects_an_intermediate_the_platform_root_did_not_sign(
    store: RegistryStore, root: Ca, clock: ManualClock, database: Database
) -> None:
    """A self-signed CA, or one naming the recorded root but signed by another
    key, never becomes a frontdoor's anchor."""
    stranger = make_root(clock.now())
    impostor_issuer = Ca(root.certificate, stranger.key)
    before = snapshot(database)

    for candidate, fragment in [
        (stranger, "names no platform root"),
        (make_intermediate(stranger, clock.now()), "names no platform root"),
        (make_intermediate(impostor_issuer, clock.now()), "does not verify"),
    ]:
        with pytest.raises(PolicyRefusal, match=fragment):
            store.register_frontdoor(
                "evil", common_pb2.FrontdoorSettings(), candidate.der
            )

    assert snapshot(database) == before


def test_accepts_frontdoor_name_of_sixty_three_characters(
    store: RegistryStore, root: Ca, clock: ManualClock
) -> None:
    name = "a" * 63

    frontdoor = store.register_frontdoor(
        name,
        common_pb2.FrontdoorSettings(),
        make_intermediate(root, clock.now()).der,
    )

    assert frontdoor.name == name


@pytest.mark.parametrize("ca", [False, None], ids=["ca-false", "no-constraints"])
def test_rejects_intermediate_that_is_not_a_ca(
    sqlite_store: RegistryStore, clock: ManualClock, ca: bool | None
) -> None:
    leaf = make_client(make_root(clock.now()), clock.now(), ca=ca)

    with pytest.raises(InvalidArgument, match="not a CA certificate"):
        sqlite_store.register_frontdoor(
            "payments", common_pb2.FrontdoorSettings(), der(leaf)
        )
    assert sqlite_store.list_frontdoors() == []


@pytest.mark.parametrize(
    ("blob", "message"),
    [(b"", "certificate is empty"), (b"\x30\x03\x02\x01\x01", "not a DER-encoded")],
)
def test_rejects_intermediate_that_is_not_a_certificate(
    sqlite_store: RegistryStore, blob: bytes, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sqlite_store.register_frontdoor(
            "payments", common_pb2.FrontdoorSettings(), blob
        )


def test_rejects_settings_that_contradict_themselves(
    sqlite_store: RegistryStore, clock: ManualClock
) -> None:
    settings = common_pb2.FrontdoorSettings()
    settings.issuance.default_validity_days = 400
    settings.issuance.max_validity_days = 30
    intermediate = make_intermediate(make_root(clock.now()), clock.now())

    with pytest.raises(InvalidArgument, match="longer than the maximum validity"):
        sqlite_store.register_frontdoor("payments", settings, intermediate.der)


def test_refused_registration_leaves_no_frontdoor_behind(
    store: RegistryStore, payments: Ca, root: Ca, clock: ManualClock, database: Database
) -> None:
    """The intermediate clashes with a recorded certificate only after the
    frontdoor row was written; the whole transaction goes."""
    clash = make_intermediate(
        root, clock.now(), "billing", serial_number=payments.certificate.serial_number
    )
    before = snapshot(database)

    with pytest.raises(AlreadyExists, match="another certificate with serial"):
        store.register_frontdoor("billing", common_pb2.FrontdoorSettings(), clash.der)

    assert snapshot(database) == before
    with pytest.raises(NotFound):
        store.get_frontdoor("billing")


def test_get_unknown_frontdoor_is_not_found(store: RegistryStore) -> None:
    with pytest.raises(NotFound, match="frontdoor 'billing' does not exist"):
        store.get_frontdoor("billing")


def test_list_frontdoors_is_by_name(
    store: RegistryStore, root: Ca, clock: ManualClock
) -> None:
    for name in ("payments", "billing", "orders"):
        store.register_frontdoor(
            name,
            common_pb2.FrontdoorSettings(),
            make_intermediate(root, clock.now(), name).der,
        )

    assert [door.name for door in store.list_frontdoors()] == [
        "billing",
        "orders",
        "payments",
    ]


def test_trust_store_drops_revoked_intermediate(
    store: RegistryStore, payments: Ca
) -> None:
    assert [anchor.key_id for anchor in store.trust_store("payments").anchors] == [
        payments.key_id
    ]

    store.record_revocation(by_fingerprint(payments.certificate), KEY_COMPROMISE, None)

    assert list(store.trust_store("payments").anchors) == []


def test_trust_store_drops_expired_intermediate(
    store: RegistryStore, root: Ca, clock: ManualClock
) -> None:
    short = make_intermediate(root, clock.now(), "orders", days=1)
    store.register_frontdoor("orders", common_pb2.FrontdoorSettings(), short.der)

    clock.advance(dt.timedelta(days=2))

    assert list(store.trust_store("orders").anchors) == []
    assert store.get_frontdoor("orders").intermediates[0].status == EXPIRED


# Certificates ---------------------------------------------------------------


def test_record_certificate_describes_it(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = make_client(payments, clock.now(), subject="api.payments.internal")

    record = store.record_certificate(der(client), "payments", "payments api", CLIENT)

    assert record.fingerprint_sha256 == identifiers.fingerprint(client)
    assert record.serial_number == identifiers.format_serial(client.serial_number)
    assert record.issuer_key_id == payments.key_id
    assert record.frontdoor == "payments"
    assert record.name == "payments api"
    assert record.subject == "CN=api.payments.internal"
    assert [(san.type, san.value) for san in record.subject_alt_names] == [
        (common_pb2.SubjectAltName.TYPE_DNS, "api.payments.internal")
    ]
    assert record.key_type == "EC P-256"
    assert record.status == ACTIVE
    assert record.kind == CLIENT
    assert record.certificate == der(client)
    assert not record.HasField("revocation")


def test_record_certificate_twice_is_harmless(
    store: RegistryStore, payments: Ca, clock: ManualClock, database: Database
) -> None:
    client = make_client(payments, clock.now())
    first = store.record_certificate(der(client), "payments", "api", CLIENT)
    before = snapshot(database)

    clock.advance(dt.timedelta(minutes=5))
    again = store.record_certificate(der(client), "payments", "api", CLIENT)

    assert again == first
    assert snapshot(database) == before


def test_rejects_other_certificate_with_same_issuer_and_serial(
    store: RegistryStore, payments: Ca, clock: ManualClock, database: Database
) -> None:
    first = record_client(store, payments, clock, serial_number=0x7777)
    second = make_client(payments, clock.now(), serial_number=0x7777)
    before = snapshot(database)

    with pytest.raises(AlreadyExists) as caught:
        store.record_certificate(der(second), "payments", "api", CLIENT)

    assert "serial number 7777" in caught.value.message
    assert identifiers.fingerprint(first) in caught.value.message
    assert snapshot(database) == before


def test_same_serial_from_other_issuers_is_fine(
    store: RegistryStore, payments: Ca, root: Ca, clock: ManualClock
) -> None:
    billing = make_intermediate(root, clock.now(), "billing")
    store.register_frontdoor("billing", common_pb2.FrontdoorSettings(), billing.der)

    record_client(store, payments, clock, serial_number=0x42)
    record_client(store, billing, clock, "billing", serial_number=0x42)

    records, _ = store.list_certificates(
        "", common_pb2.CERTIFICATE_STATUS_ACTIVE, 0, ""
    )
    assert sum(record.serial_number == "42" for record in records) == 2


def test_rejects_client_certificate_of_unknown_frontdoor(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = make_client(payments, clock.now())

    with pytest.raises(NotFound, match="frontdoor 'billing' does not exist"):
        store.record_certificate(der(client), "billing", "api", CLIENT)
    with pytest.raises(InvalidArgument, match="frontdoor is empty"):
        store.record_certificate(der(client), "", "api", CLIENT)


def test_rejects_unknown_certificate_kind(
    sqlite_store: RegistryStore, clock: ManualClock
) -> None:
    client = make_client(make_root(clock.now()), clock.now())

    with pytest.raises(InvalidArgument, match="kind must be"):
        sqlite_store.record_certificate(
            der(client), "payments", "api", common_pb2.CERTIFICATE_KIND_UNSPECIFIED
        )


@pytest.mark.parametrize(
    ("name", "message"),
    [("api\nadmin", "control or format"), ("x" * 257, "at most 256")],
)
def test_rejects_bad_descriptive_name(
    sqlite_store: RegistryStore, clock: ManualClock, name: str, message: str
) -> None:
    client = make_client(make_root(clock.now()), clock.now())

    with pytest.raises(InvalidArgument, match=message):
        sqlite_store.record_certificate(der(client), "payments", name, CLIENT)


def test_get_certificate_by_each_selector(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock, serial_number=0x00AB_CDEF)
    fingerprint = identifiers.fingerprint(client)
    openssl_fingerprint = ":".join(
        fingerprint[index : index + 2].upper() for index in range(0, 64, 2)
    )
    selectors = [
        CertificateSelector(fingerprint=fingerprint),
        CertificateSelector(fingerprint=openssl_fingerprint),
        CertificateSelector(issuer_key_id=payments.key_id, serial_number="abcdef"),
        CertificateSelector(
            issuer_key_id=payments.key_id.upper(), serial_number="00:AB:CD:EF"
        ),
        CertificateSelector(frontdoor="payments", serial_number="0xabcdef"),
    ]

    found = {
        store.get_certificate(selector).fingerprint_sha256 for selector in selectors
    }

    assert found == {fingerprint}


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            CertificateSelector(fingerprint="ab" * 32),
            f"no certificate with fingerprint {'ab' * 32} is recorded",
        ),
        (
            CertificateSelector(issuer_key_id="0102", serial_number="1f"),
            "no certificate with serial number 1f from issuer 0102 is recorded",
        ),
    ],
)
def test_get_unknown_certificate_is_not_found(
    store: RegistryStore, payments: Ca, selector: CertificateSelector, message: str
) -> None:
    with pytest.raises(NotFound) as caught:
        store.get_certificate(selector)

    assert caught.value.message == message


def test_frontdoor_serial_selector_names_only_client_certificates(
    store: RegistryStore, payments: Ca
) -> None:
    """The intermediate belongs to the frontdoor but is not one of its clients."""
    serial = identifiers.format_serial(payments.certificate.serial_number)

    with pytest.raises(NotFound) as caught:
        store.get_certificate(
            CertificateSelector(frontdoor="payments", serial_number=serial)
        )

    assert caught.value.message == (
        f"no certificate with serial number {serial} in frontdoor 'payments' "
        "is recorded"
    )


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (CertificateSelector(), "name the certificate by fingerprint"),
        (CertificateSelector(serial_number="1f"), "name the certificate by"),
        (CertificateSelector(frontdoor="payments"), "name the certificate by"),
        (CertificateSelector(fingerprint="abcd"), "64 hex digits; this one has 4"),
        (CertificateSelector(fingerprint="zz" * 32), "must be written in hex"),
        (
            CertificateSelector(frontdoor="payments", serial_number="0"),
            "0 is not a serial number",
        ),
        (
            CertificateSelector(issuer_key_id="abc", serial_number="1f"),
            "even number of hex digits",
        ),
    ],
)
def test_rejects_malformed_selector(
    sqlite_store: RegistryStore, selector: CertificateSelector, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sqlite_store.get_certificate(selector)


def test_frontdoor_serial_selector_with_unknown_frontdoor_is_not_found(
    store: RegistryStore, payments: Ca
) -> None:
    with pytest.raises(NotFound, match="frontdoor 'billing' does not exist"):
        store.get_certificate(
            CertificateSelector(frontdoor="billing", serial_number="1f")
        )


# Listing --------------------------------------------------------------------


def fingerprints(records: list[common_pb2.CertificateRecord]) -> set[str]:
    return {record.fingerprint_sha256 for record in records}


def test_list_certificates_filters_by_frontdoor(
    store: RegistryStore, payments: Ca, root: Ca, clock: ManualClock
) -> None:
    billing = make_intermediate(root, clock.now(), "billing")
    store.register_frontdoor("billing", common_pb2.FrontdoorSettings(), billing.der)
    ours = record_client(store, payments, clock)
    theirs = record_client(store, billing, clock, "billing")

    records, token = store.list_certificates("payments", ANY_STATUS, 0, "")

    assert token == ""
    assert fingerprints(records) == {
        identifiers.fingerprint(payments.certificate),
        identifiers.fingerprint(ours),
    }
    assert identifiers.fingerprint(theirs) not in fingerprints(records)
    everything, _ = store.list_certificates("", ANY_STATUS, 0, "")
    assert len(everything) == 5  # the root, two intermediates, two clients


def test_list_certificates_filters_by_status(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    active = record_client(store, payments, clock)
    revoked = record_client(store, payments, clock)
    held = record_client(store, payments, clock)
    store.record_revocation(by_fingerprint(revoked), KEY_COMPROMISE, None)
    store.record_revocation(
        by_fingerprint(held), common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD, None
    )

    def listed(status: common_pb2.CertificateStatus) -> set[str]:
        return fingerprints(store.list_certificates("payments", status, 0, "")[0])

    assert listed(ACTIVE) == {
        identifiers.fingerprint(active),
        identifiers.fingerprint(payments.certificate),
    }
    assert listed(REVOKED) == {identifiers.fingerprint(revoked)}
    assert listed(ON_HOLD) == {identifiers.fingerprint(held)}
    assert listed(EXPIRED) == set()
    assert len(listed(common_pb2.CERTIFICATE_STATUS_UNSPECIFIED)) == 4


def test_expired_status_is_derived_from_the_clock(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    short = record_client(store, payments, clock, days=1)
    long = record_client(store, payments, clock, days=90)
    revoked_short = record_client(store, payments, clock, days=1)
    store.record_revocation(by_fingerprint(revoked_short), KEY_COMPROMISE, None)

    clock.advance(dt.timedelta(days=2))

    expired, _ = store.list_certificates("payments", EXPIRED, 0, "")
    active, _ = store.list_certificates("payments", ACTIVE, 0, "")
    assert fingerprints(expired) == {identifiers.fingerprint(short)}
    assert identifiers.fingerprint(long) in fingerprints(active)
    assert identifiers.fingerprint(short) not in fingerprints(active)
    assert store.get_certificate(by_fingerprint(short)).status == EXPIRED
    assert store.get_certificate(by_fingerprint(revoked_short)).status == REVOKED


def test_pagination_walks_every_certificate_once(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    clients = [record_client(store, payments, clock) for _ in range(6)]
    expected = [identifiers.fingerprint(payments.certificate)] + [
        identifiers.fingerprint(client) for client in clients
    ]

    pages: list[list[str]] = []
    token = ""
    while True:
        records, token = store.list_certificates("payments", ANY_STATUS, 3, token)
        pages.append([record.fingerprint_sha256 for record in records])
        if not token:
            break

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [fingerprint for page in pages for fingerprint in page] == expected


def test_last_full_page_has_no_next_token(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    record_client(store, payments, clock)

    first, token = store.list_certificates("payments", ANY_STATUS, 1, "")
    second, last_token = store.list_certificates("payments", ANY_STATUS, 1, token)

    assert len(first) == len(second) == 1
    assert last_token == ""


def test_page_token_works_in_another_replica(
    store: RegistryStore, payments: Ca, clock: ManualClock, database_url: str
) -> None:
    """Every replica reads the token key from the database."""
    record_client(store, payments, clock)
    _, token = store.list_certificates("payments", ANY_STATUS, 1, "")
    replica_database = Database(database_url)
    try:
        replica = RegistryStore(replica_database, clock, KeyPolicyConfig())

        records, _ = replica.list_certificates("payments", ANY_STATUS, 1, token)
    finally:
        replica_database.dispose()

    assert len(records) == 1


def _tamper(token: str) -> str:
    payload, tag = token.split(".")
    flipped = "A" if payload[5] != "A" else "B"
    return f"{payload[:5]}{flipped}{payload[6:]}.{tag}"


@pytest.mark.parametrize(
    "bad_token",
    [_tamper, lambda token: token + "x", lambda _: "not-a-token", lambda _: "a.b.c"],
    ids=["tampered", "extended", "garbage", "three-parts"],
)
def test_rejects_page_token_that_was_not_issued(
    store: RegistryStore, payments: Ca, clock: ManualClock, bad_token: Any
) -> None:
    for _ in range(3):
        record_client(store, payments, clock)
    _, token = store.list_certificates("payments", ANY_STATUS, 1, "")

    with pytest.raises(InvalidArgument, match="not a token this registry issued"):
        store.list_certificates("payments", ANY_STATUS, 1, bad_token(token))


@pytest.mark.parametrize(
    ("frontdoor", "status"),
    [("", ANY_STATUS), ("payments", ACTIVE)],
    ids=["other-frontdoor", "other-status"],
)
def test_rejects_page_token_reused_with_other_filters(
    store: RegistryStore,
    payments: Ca,
    clock: ManualClock,
    frontdoor: str,
    status: common_pb2.CertificateStatus,
) -> None:
    for _ in range(3):
        record_client(store, payments, clock)
    _, token = store.list_certificates("payments", ANY_STATUS, 1, "")

    with pytest.raises(InvalidArgument, match="listing with other filters"):
        store.list_certificates(frontdoor, status, 1, token)


def test_rejects_oversized_page_and_unknown_status(
    sqlite_store: RegistryStore,
) -> None:
    with pytest.raises(InvalidArgument, match="page_size may be at most 1000"):
        sqlite_store.list_certificates("", ANY_STATUS, 1001, "")
    with pytest.raises(InvalidArgument, match="status 99 is not a certificate status"):
        sqlite_store.list_certificates("", 99, 0, "")  # type: ignore[arg-type]


def test_list_certificates_of_unknown_frontdoor_is_not_found(
    store: RegistryStore, payments: Ca
) -> None:
    with pytest.raises(NotFound, match="frontdoor 'billing' does not exist"):
        store.list_certificates("billing", ANY_STATUS, 0, "")


def test_ca_key_ids_lists_root_and_intermediates(
    store: RegistryStore, root: Ca, payments: Ca, clock: ManualClock
) -> None:
    record_client(store, payments, clock)

    assert store.ca_key_ids() == [root.key_id, payments.key_id]


# The revocation log ---------------------------------------------------------


def test_revocations_take_sequences_one_two_three(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    clients = [record_client(store, payments, clock) for _ in range(3)]

    sequences = [
        store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, None).sequence
        for client in clients
    ]

    assert sequences == [1, 2, 3]
    assert store.last_sequence() == 3


def test_revocation_describes_the_certificate(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock, serial_number=0x1F)
    compromised = clock.now() - dt.timedelta(days=2)

    revocation = store.record_revocation(
        CertificateSelector(frontdoor="payments", serial_number="1F"),
        KEY_COMPROMISE,
        compromised,
    )

    assert revocation.sequence == 1
    assert revocation.frontdoor == "payments"
    assert revocation.issuer_key_id == payments.key_id
    assert revocation.serial_number == "1f"
    assert revocation.fingerprint_sha256 == identifiers.fingerprint(client)
    assert revocation.reason == KEY_COMPROMISE
    assert revocation.revocation_date.ToDatetime(dt.UTC) == clock.now()
    assert revocation.invalidity_date.ToDatetime(dt.UTC) == compromised
    record = store.get_certificate(by_fingerprint(client))
    assert record.status == REVOKED
    assert record.revocation == revocation


def test_revoking_again_is_already_exists_with_the_existing_revocation(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock)
    first = store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, None)
    clock.advance(dt.timedelta(hours=1))

    with pytest.raises(AlreadyExists) as caught:
        store.record_revocation(
            by_fingerprint(client), common_pb2.REVOCATION_REASON_SUPERSEDED, None
        )

    assert caught.value.details == (first,)
    assert "already revoked" in caught.value.message
    assert "(log entry 1)" in caught.value.message
    assert store.last_sequence() == 1


def test_held_certificate_cannot_be_revoked_again(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock)
    held = store.record_revocation(
        by_fingerprint(client), common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD, None
    )

    with pytest.raises(AlreadyExists) as caught:
        store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, None)

    assert caught.value.details == (held,)


def test_certificate_hold_gives_status_on_hold(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock)

    store.record_revocation(
        by_fingerprint(client), common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD, None
    )

    record = store.get_certificate(by_fingerprint(client))
    assert record.status == ON_HOLD
    assert record.revocation.reason == common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD


def test_rejects_revoking_the_root(
    store: RegistryStore, root: Ca, payments: Ca, database: Database
) -> None:
    before = snapshot(database)

    with pytest.raises(PolicyRefusal, match="platform root cannot be revoked"):
        store.record_revocation(by_fingerprint(root.certificate), KEY_COMPROMISE, None)

    assert snapshot(database) == before


def test_intermediate_can_be_revoked_under_the_root(
    store: RegistryStore, root: Ca, payments: Ca
) -> None:
    revocation = store.record_revocation(
        by_fingerprint(payments.certificate),
        common_pb2.REVOCATION_REASON_CA_COMPROMISE,
        None,
    )

    assert revocation.issuer_key_id == root.key_id
    assert store.get_frontdoor("payments").intermediates[0].status == REVOKED


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (common_pb2.REVOCATION_REASON_REMOVE_FROM_CRL, "removeFromCRL is not a reason"),
        (7, "not an RFC 5280 reason"),
        (11, "not an RFC 5280 reason"),
    ],
)
def test_rejects_reasons_that_cannot_revoke(
    sqlite_store: RegistryStore, reason: int, message: str
) -> None:
    """The reason is checked before the certificate is even looked up."""
    unknown = CertificateSelector(fingerprint="cd" * 32)

    with pytest.raises(InvalidArgument, match=message):
        sqlite_store.record_revocation(unknown, reason, None)


def test_rejects_invalidity_date_in_the_future(
    store: RegistryStore, payments: Ca, clock: ManualClock, database: Database
) -> None:
    client = record_client(store, payments, clock)
    before = snapshot(database)

    with pytest.raises(InvalidArgument, match="invalidity_date lies in the future"):
        store.record_revocation(
            by_fingerprint(client), KEY_COMPROMISE, clock.now() + dt.timedelta(hours=1)
        )

    assert snapshot(database) == before


def test_accepts_invalidity_date_within_clock_skew(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    client = record_client(store, payments, clock)
    skewed = clock.now() + dt.timedelta(minutes=4)

    revocation = store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, skewed)

    assert revocation.invalidity_date.ToDatetime(dt.UTC) == skewed


def test_revoking_unknown_certificate_is_not_found(
    store: RegistryStore, payments: Ca, database: Database
) -> None:
    before = snapshot(database)

    with pytest.raises(NotFound, match="no certificate with fingerprint"):
        store.record_revocation(
            CertificateSelector(fingerprint="cd" * 32), KEY_COMPROMISE, None
        )

    assert snapshot(database) == before


def test_refused_requests_leave_the_tables_unchanged(
    store: RegistryStore,
    root: Ca,
    payments: Ca,
    clock: ManualClock,
    database: Database,
) -> None:
    """One of each refusal in a row; not a single row changes."""
    revoked = record_client(store, payments, clock, serial_number=0x99)
    store.record_revocation(by_fingerprint(revoked), KEY_COMPROMISE, None)
    before = snapshot(database)
    refusals = [
        lambda: store.record_revocation(by_fingerprint(revoked), KEY_COMPROMISE, None),
        lambda: store.record_revocation(
            by_fingerprint(root.certificate), KEY_COMPROMISE, None
        ),
        lambda: store.record_certificate(
            der(make_client(payments, clock.now(), serial_number=0x99)),
            "payments",
            "clash",
            CLIENT,
        ),
        lambda: store.register_frontdoor(
            "payments",
            common_pb2.FrontdoorSettings(),
            make_intermediate(root, clock.now()).der,
        ),
        lambda: store.register_frontdoor(
            "billing", common_pb2.FrontdoorSettings(), der(revoked)
        ),
        lambda: store.list_certificates("payments", ANY_STATUS, 1, "forged.token"),
    ]

    for refusal in refusals:
        with pytest.raises((AlreadyExists, PolicyRefusal, InvalidArgument)):
            refusal()

    assert snapshot(database) == before


def test_concurrent_revocations_take_gap_free_sequences(
    store: RegistryStore,
    payments: Ca,
    clock: ManualClock,
    database_url: str,
) -> None:
    """Eight replicas revoke eight certificates at once: numbers 1 to 8, each
    once, in commit order, and no error."""
    clients = [record_client(store, payments, clock) for _ in range(8)]
    databases = [Database(database_url) for _ in clients]
    barrier = threading.Barrier(len(clients))
    results: list[int | BaseException] = [0] * len(clients)

    def revoke(index: int) -> None:
        replica = RegistryStore(databases[index], clock, KeyPolicyConfig())
        barrier.wait()
        try:
            results[index] = replica.record_revocation(
                by_fingerprint(clients[index]), KEY_COMPROMISE, None
            ).sequence
        except BaseException as error:  # reported by the assertion below
            results[index] = error

    threads = [
        threading.Thread(target=revoke, args=(index,)) for index in range(len(clients))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for each in databases:
        each.dispose()

    assert sorted(results) == list(range(1, 9)), results  # type: ignore[type-var]
    logged, last = store.list_revocations(0, 0)
    assert last == 8
    assert [entry.sequence for entry in logged] == list(range(1, 9))
    assert {entry.fingerprint_sha256 for entry in logged} == {
        identifiers.fingerprint(client) for client in clients
    }


def test_concurrent_revocations_of_one_certificate_record_it_once(
    store: RegistryStore,
    payments: Ca,
    clock: ManualClock,
    database_url: str,
) -> None:
    """Racing revocations of the same certificate: one wins, the others get
    ALREADY_EXISTS with the winner's entry, and no number is lost."""
    client = record_client(store, payments, clock)
    databases = [Database(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(databases))
    results: list[object] = [None] * len(databases)

    def revoke(index: int) -> None:
        replica = RegistryStore(databases[index], clock, KeyPolicyConfig())
        barrier.wait()
        try:
            results[index] = replica.record_revocation(
                by_fingerprint(client), KEY_COMPROMISE, None
            )
        except BaseException as error:  # sorted out below
            results[index] = error

    threads = [
        threading.Thread(target=revoke, args=(index,))
        for index in range(len(databases))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for each in databases:
        each.dispose()

    winners = [
        result for result in results if isinstance(result, common_pb2.Revocation)
    ]
    losers = [result for result in results if isinstance(result, AlreadyExists)]
    assert len(winners) == 1, results
    assert len(losers) == len(databases) - 1, results
    assert all(loser.details == (winners[0],) for loser in losers)
    assert store.last_sequence() == 1
    next_client = record_client(store, payments, clock)
    assert (
        store.record_revocation(
            by_fingerprint(next_client), KEY_COMPROMISE, None
        ).sequence
        == 2
    )


def test_list_revocations_pages_through_the_log(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    for _ in range(4):
        client = record_client(store, payments, clock)
        store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, None)

    everything, last = store.list_revocations(0, 0)
    middle, _ = store.list_revocations(1, 2)
    after_end, last_again = store.list_revocations(4, 0)

    assert last == last_again == 4
    assert [entry.sequence for entry in everything] == [1, 2, 3, 4]
    assert [entry.sequence for entry in middle] == [2, 3]
    assert after_end == []


def test_rejects_oversized_revocation_page(sqlite_store: RegistryStore) -> None:
    with pytest.raises(InvalidArgument, match="limit may be at most 10000"):
        sqlite_store.list_revocations(0, 10_001)


@pytest.mark.parametrize("after_sequence", [2**63, 2**64 - 1])
def test_rejects_positions_beyond_any_sequence(
    store: RegistryStore, after_sequence: int
) -> None:
    """A position no BIGINT holds is bad input, not a database error."""
    with pytest.raises(InvalidArgument, match="larger than any sequence"):
        store.list_revocations(after_sequence, 0)


def test_empty_log_has_last_sequence_zero(store: RegistryStore) -> None:
    assert store.last_sequence() == 0
    assert store.list_revocations(0, 0) == ([], 0)


def test_revocation_status_answers_from_the_log(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    revoked = record_client(store, payments, clock, serial_number=0xA1)
    record_client(store, payments, clock, serial_number=0xA2)
    entry = store.record_revocation(by_fingerprint(revoked), KEY_COMPROMISE, None)

    yes = store.revocation_status(payments.key_id, "a1")
    no = store.revocation_status(payments.key_id, "a2")

    assert yes.revoked
    assert yes.revocation == entry
    assert yes.complete_to_sequence == 1
    assert not no.revoked
    assert not no.HasField("revocation")
    assert no.complete_to_sequence == 1


def test_revocation_status_reads_serials_as_openssl_prints_them(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    """Upper case, colons and leading zeros name the same certificate; they
    must not turn a revoked certificate into "not revoked"."""
    revoked = record_client(store, payments, clock, serial_number=0xA1)
    store.record_revocation(by_fingerprint(revoked), KEY_COMPROMISE, None)
    key_id = ":".join(
        payments.key_id[index : index + 2].upper()
        for index in range(0, len(payments.key_id), 2)
    )

    status = store.revocation_status(key_id, "00:A1")

    assert status.revoked


@pytest.mark.parametrize(
    ("issuer_key_id", "serial_number"),
    [("", "a1"), ("0102", ""), ("0102", "not hex"), ("xyz", "a1")],
)
def test_rejects_malformed_revocation_status_query(
    sqlite_store: RegistryStore, issuer_key_id: str, serial_number: str
) -> None:
    """A query that names no certificate gets an error, not "not revoked"."""
    with pytest.raises(InvalidArgument):
        sqlite_store.revocation_status(issuer_key_id, serial_number)


def test_log_entries_and_issuer_log_entries_feed_the_cache(
    store: RegistryStore, root: Ca, payments: Ca, clock: ManualClock
) -> None:
    clients = [record_client(store, payments, clock) for _ in range(3)]
    for client in clients:
        store.record_revocation(by_fingerprint(client), KEY_COMPROMISE, None)
    store.record_revocation(by_fingerprint(payments.certificate), KEY_COMPROMISE, None)

    window = store.log_entries(1, 3, 10)
    batches = list(store.issuer_log_entries(payments.key_id, 4, 2))
    root_batches = list(store.issuer_log_entries(root.key_id, 4, 2))

    assert [entry.sequence for entry in window] == [2, 3]
    assert [[entry.sequence for entry in batch] for batch in batches] == [[1, 2], [3]]
    assert [[entry.sequence for entry in batch] for batch in root_batches] == [[4]]
    assert window[0].revocation.sequence == 2
    assert window[0].serial_number == identifiers.format_serial(
        clients[1].serial_number
    )


def _race(count: int, database_url: str, clock: ManualClock, act: Any) -> list[Any]:
    """Run ``act(store)`` in ``count`` replicas at once; results or errors."""
    databases = [Database(database_url) for _ in range(count)]
    stores = [RegistryStore(each, clock, KeyPolicyConfig()) for each in databases]
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = act(stores[index])
        except BaseException as error:  # returned to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for each in databases:
        each.dispose()
    return results


def test_concurrent_retries_of_record_certificate_are_harmless(
    store: RegistryStore, payments: Ca, clock: ManualClock, database_url: str
) -> None:
    """An issuer retrying after a deadline while the first call still runs."""
    client = make_client(payments, clock.now())

    results = _race(
        4,
        database_url,
        clock,
        lambda replica: replica.record_certificate(
            der(client), "payments", "api", CLIENT
        ),
    )

    assert all(
        isinstance(result, common_pb2.CertificateRecord) for result in results
    ), results
    assert {result.fingerprint_sha256 for result in results} == {
        identifiers.fingerprint(client)
    }


def test_concurrent_retries_of_register_frontdoor_are_harmless(
    store: RegistryStore, root: Ca, clock: ManualClock, database_url: str
) -> None:
    intermediate = make_intermediate(root, clock.now(), "orders")

    results = _race(
        4,
        database_url,
        clock,
        lambda replica: replica.register_frontdoor(
            "orders", common_pb2.FrontdoorSettings(), intermediate.der
        ),
    )

    assert all(isinstance(result, common_pb2.Frontdoor) for result in results), results
    assert len(store.list_frontdoors()) == 1


# Compromised keys -------------------------------------------------------------


def _spki(certificate: x509.Certificate) -> str:
    return facts.spki_sha256(certificate.public_key())


@pytest.mark.parametrize(
    "reason",
    [KEY_COMPROMISE, common_pb2.REVOCATION_REASON_CA_COMPROMISE],
)
def test_compromise_revocation_marks_the_key_compromised(
    store: RegistryStore, payments: Ca, clock: ManualClock, reason: int
) -> None:
    client = record_client(store, payments, clock)

    revocation = store.record_revocation(by_fingerprint(client), reason, None)

    status = store.key_status(_spki(client))
    assert status.compromised
    assert status.revocation == revocation


@pytest.mark.parametrize(
    "reason",
    [
        common_pb2.REVOCATION_REASON_SUPERSEDED,
        common_pb2.REVOCATION_REASON_CERTIFICATE_HOLD,
        common_pb2.REVOCATION_REASON_UNSPECIFIED,
    ],
)
def test_other_revocations_leave_the_key_usable(
    store: RegistryStore, payments: Ca, clock: ManualClock, reason: int
) -> None:
    client = record_client(store, payments, clock)

    store.record_revocation(by_fingerprint(client), reason, None)

    assert not store.key_status(_spki(client)).compromised


def test_a_key_compromised_twice_keeps_its_first_revocation(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    """Two certificates for one key: the first compromise revocation is kept."""
    client = record_client(store, payments, clock)
    key = ec.generate_private_key(ec.SECP256R1())
    twins = [
        _builder(
            f"twin-{n}.example",
            payments.certificate.subject,
            key.public_key(),
            clock.now(),
            clock.now() + dt.timedelta(days=30),
            None,
        )
        .add_extension(_aki(payments), critical=False)
        .sign(payments.key, hashes.SHA256())
        for n in range(2)
    ]
    for twin in twins:
        store.record_certificate(der(twin), "payments", "a twin", CLIENT)

    first = store.record_revocation(by_fingerprint(twins[0]), KEY_COMPROMISE, None)
    store.record_revocation(by_fingerprint(twins[1]), KEY_COMPROMISE, None)

    assert store.key_status(_spki(twins[1])).revocation == first
    assert not store.key_status(_spki(client)).compromised


@pytest.mark.parametrize("text", ["", "zz" * 32, "ab" * 31, "ab" * 33])
def test_rejects_malformed_key_hashes(sqlite_store: RegistryStore, text: str) -> None:
    with pytest.raises(InvalidArgument, match="64 hex digits"):
        sqlite_store.key_status(text)


def test_migration_enters_keys_revoked_before_it(tmp_path: Path) -> None:
    """A database at r0001 with a keyCompromise revocation gets the key
    entered by r0002, so older revocations block the key too."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    root = make_root(START)
    intermediate = make_intermediate(root, START)
    client = make_client(intermediate, START)
    _migrate_registry_to(url, "r0001")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO certificates (id, fingerprint, serial_number, "
                "issuer_key_id, subject_key_id, kind, name, subject, "
                "subject_alt_names, not_valid_before, not_valid_after, key_type, "
                "status, created_at, der) VALUES (1, 'f', '1', 'k', '', 'client', "
                "'', '', '[]', :now, :now, 'ec', 'revoked', :now, :der)"
            ),
            {"now": START.replace(tzinfo=None), "der": der(client)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO revocation_log (sequence, certificate_id, "
                "issuer_key_id, serial_number, fingerprint, frontdoor, reason, "
                "revocation_date) VALUES (7, 1, 'k', '1', 'f', 'payments', 1, :now)"
            ),
            {"now": START.replace(tzinfo=None)},
        )
    engine.dispose()

    migrate(url, "registry")

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT spki_sha256, revocation_sequence FROM compromised_keys")
        ).all()
    engine.dispose()
    assert rows == [(_spki(client), 7)]


def _migrate_registry_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option(
        "script_location",
        str(Path(services.registry.__file__).parent / "migrations"),
    )
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["version_table"] = "alembic_version_registry"
    command.upgrade(config, revision)


# Last use on pages ------------------------------------------------------------


def test_a_page_reads_last_use_in_one_query_and_each_record_gets_its_own(
    store: RegistryStore,
    database: Database,
    root: Ca,
    payments: Ca,
    clock: ManualClock,
) -> None:
    """Every record on a page shows its own latest sighting (the later of
    two frontdoors; none for a certificate never seen), and a longer page
    costs no more statements than a page of two: last use is read for the
    whole page at once, not once a record."""
    billing = make_intermediate(root, clock.now(), "billing")
    store.register_frontdoor("billing", common_pb2.FrontdoorSettings(), billing.der)
    clients = [
        identifiers.fingerprint(record_client(store, payments, clock)) for _ in range(4)
    ]
    seen = clock.now() - dt.timedelta(hours=2)
    store.usage.record(
        [
            UsageEntry(clients[0], "payments", seen),
            UsageEntry(clients[0], "billing", seen + dt.timedelta(hours=1)),
            UsageEntry(clients[1], "payments", seen),
            UsageEntry(clients[3], "billing", seen),
        ]
    )
    statements: list[str] = []

    def count(*arguments: Any) -> None:
        statements.append(str(arguments[2]))

    sa.event.listen(database.read_engine, "before_cursor_execute", count)
    try:
        # The intermediate and one client: the chains' CAs are read too,
        # once each.
        records, _ = store.list_certificates("payments", ACTIVE, 2, "")
        for_two = len(statements)
        statements.clear()
        records, _ = store.list_certificates("payments", ACTIVE, 10, "")
        for_page = len(statements)
    finally:
        sa.event.remove(database.read_engine, "before_cursor_execute", count)

    last_use = {
        record.fingerprint_sha256: (
            record.last_used_frontdoor,
            facts.from_timestamp(record.last_used_at)
            if record.HasField("last_used_at")
            else None,
        )
        for record in records
    }
    assert last_use[clients[0]] == ("billing", seen + dt.timedelta(hours=1))
    assert last_use[clients[1]] == ("payments", seen)
    assert last_use[clients[2]] == ("", None)
    assert last_use[clients[3]] == ("billing", seen)
    assert len(records) == 5  # the intermediate and the four clients
    assert for_page == for_two, statements


def test_active_listing_follows_the_clock_through_the_statement_cache(
    store: RegistryStore, payments: Ca, clock: ManualClock
) -> None:
    """The same ACTIVE listing asked again after the clock passed a
    certificate's notAfter leaves it out: "not expired yet" is bound anew
    each time, not kept with the cached statement."""
    fingerprint = identifiers.fingerprint(record_client(store, payments, clock))

    before, _ = store.list_certificates("payments", ACTIVE, 100, "")
    clock.advance(dt.timedelta(days=91))
    after, _ = store.list_certificates("payments", ACTIVE, 100, "")

    assert fingerprint in [record.fingerprint_sha256 for record in before]
    assert fingerprint not in [record.fingerprint_sha256 for record in after]


def test_sqlite_pages_frontdoor_and_status_through_their_index(
    sqlite_store: RegistryStore, clock: ManualClock
) -> None:
    """SQLite, without statistics, walks (frontdoor, status, id) for a page
    in recording order rather than reading every unexpired certificate of
    the frontdoor by notAfter and sorting them (seconds at a million)."""
    root = make_root(clock.now())
    sqlite_store.record_certificate(
        root.der, "", "platform root", common_pb2.CERTIFICATE_KIND_ROOT
    )
    payments = make_intermediate(root, clock.now(), "payments")
    sqlite_store.register_frontdoor(
        "payments", common_pb2.FrontdoorSettings(), payments.der
    )
    database = sqlite_store._database
    statements: list[tuple[str, Any]] = []

    def keep(*arguments: Any) -> None:
        if "FROM certificates" in arguments[2] and "LIMIT" in arguments[2]:
            statements.append((arguments[2], arguments[3]))

    sa.event.listen(database.read_engine, "before_cursor_execute", keep)
    try:
        sqlite_store.list_certificates("payments", ACTIVE, 100, "")
    finally:
        sa.event.remove(database.read_engine, "before_cursor_execute", keep)
    page, parameters = statements[0]
    with database.read_engine.connect() as connection:
        plan = [
            row[3]
            for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {page}", parameters
            )
        ]

    assert any("ix_certificates_frontdoor_status" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
