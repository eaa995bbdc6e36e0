"""CRLs: contents, numbering, retention, coalesced rebuilds, and serving
over HTTP and gRPC, on a suite whose CRL job the test drives by hand."""

from __future__ import annotations

import datetime as dt
import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import CRLEntryExtensionOID
from prometheus_client import REGISTRY

from services.common.audit import AuditLog
from services.common.database import Database
from services.common.errors import ResourceExhausted
from services.issuer.authority import CertificateAuthority, Hierarchy
from services.issuer.crl import CrlPublisher, CrlStore, crl_number_for
from services.issuer.distribution import Distribution
from services.suite import Suite, start_suite
from signers.api import SignerContext
from tessera.common.v1 import common_pb2
from tessera.issuer.v1 import issuer_pb2
from tests.support import Clients, ManualClock, make_csr, rpc_error, suite_settings

FRONTDOOR = "payments"
COALESCE = dt.timedelta(seconds=5)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC))


@pytest.fixture
def crl_suite(tmp_path: Path, clock: ManualClock) -> Iterator[Suite]:
    """A suite on a manual clock whose CRL job runs only when told."""
    running = start_suite(
        suite_settings(
            tmp_path / "data",
            issuer={"crl_poll_seconds": 0, "crl_coalesce_seconds": 5},
        ),
        clock=clock,
    )
    yield running
    running.stop()


@pytest.fixture
def crl_clients(crl_suite: Suite) -> Iterator[Clients]:
    connected = Clients.connect(
        crl_suite.address("issuer"),
        crl_suite.address("registry"),
        crl_suite.address("validator"),
    )
    yield connected
    connected.close()


def _publisher(suite: Suite) -> CrlPublisher:
    assert suite.crl_publisher is not None
    return suite.crl_publisher


def _crl(clients: Clients, key_id: str) -> x509.CertificateRevocationList:
    response = clients.issuer.GetCrl(issuer_pb2.GetCrlRequest(key_id=key_id))
    return x509.load_der_x509_crl(response.crl)


def _intermediate(clients: Clients) -> x509.Certificate:
    frontdoor = clients.issuer.GetFrontdoor(
        issuer_pb2.GetFrontdoorRequest(name=FRONTDOOR)
    )
    return x509.load_der_x509_certificate(frontdoor.intermediates[0].certificate)


def _key_id(certificate: x509.Certificate) -> str:
    return certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value.key_identifier.hex()


def _settle(suite: Suite, clock: ManualClock) -> None:
    """Let the coalescing delay pass and run the job: every CRL is current."""
    _publisher(suite).run_once()
    clock.advance(COALESCE)
    _publisher(suite).run_once()


def test_crl_lists_revocations_with_reason_and_invalidity_date(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """Entries carry the serial, date, reason (omitted for unspecified, RFC
    5280 5.3.1) and invalidity date; the CRL carries AKI, number, IDP and
    thisUpdate/nextUpdate, and verifies with the intermediate's key."""
    crl_clients.create_frontdoor(FRONTDOOR)
    compromised = crl_clients.issue(FRONTDOOR).record
    unspecified = crl_clients.issue(FRONTDOOR).record
    kept = crl_clients.issue(FRONTDOOR).record
    invalid_since = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    request = issuer_pb2.RevokeCertificateRequest(
        fingerprint_sha256=compromised.fingerprint_sha256,
        reason=common_pb2.REVOCATION_REASON_KEY_COMPROMISE,
    )
    request.invalidity_date.FromDatetime(invalid_since)
    crl_clients.issuer.RevokeCertificate(request)
    crl_clients.revoke(
        unspecified.fingerprint_sha256, common_pb2.REVOCATION_REASON_UNSPECIFIED
    )
    _settle(crl_suite, clock)

    intermediate = _intermediate(crl_clients)
    crl = _crl(crl_clients, _key_id(intermediate))

    assert crl.is_signature_valid(intermediate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == intermediate.subject
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=24)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier.hex() == _key_id(intermediate)
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.only_contains_user_certs
    listed = {entry.serial_number: entry for entry in crl}
    assert int(kept.serial_number, 16) not in listed
    first = listed[int(compromised.serial_number, 16)]
    assert (
        first.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert (
        first.extensions.get_extension_for_oid(
            CRLEntryExtensionOID.INVALIDITY_DATE
        ).value.invalidity_date_utc
        == invalid_since
    )
    second = listed[int(unspecified.serial_number, 16)]
    assert len(second.extensions) == 0


def test_root_crl_lists_revoked_intermediates(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """The platform root's CRL covers the intermediates it certified."""
    crl_clients.create_frontdoor(FRONTDOOR)
    intermediate = _intermediate(crl_clients)
    root = crl_clients.issuer.GetPlatformRoot(issuer_pb2.GetPlatformRootRequest())
    _settle(crl_suite, clock)
    assert len(_crl(crl_clients, root.key_id)) == 0

    crl_clients.revoke(
        _fingerprint(intermediate), common_pb2.REVOCATION_REASON_CA_COMPROMISE
    )
    _settle(crl_suite, clock)

    crl = _crl(crl_clients, root.key_id)
    assert [entry.serial_number for entry in crl] == [intermediate.serial_number]
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.value.only_contains_ca_certs


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_number_derives_from_this_update() -> None:
    """Microseconds since the epoch, or one more than the last number."""
    moment = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    expected = int(moment.timestamp()) * 1_000_000

    assert crl_number_for(moment, None) == expected
    assert crl_number_for(moment, expected - 5) == expected
    assert crl_number_for(moment, expected) == expected + 1
    assert crl_number_for(moment, expected + 10**9) == expected + 10**9 + 1


def test_crl_number_never_goes_backwards_when_the_clock_does(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """A clock set back an hour still yields a greater CRL number."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    before = _number(_crl(crl_clients, key_id))

    clock.advance(dt.timedelta(hours=-1))
    authority = crl_suite_authority(crl_suite, key_id)
    _publisher(crl_suite).rebuild(authority)

    assert _number(_crl(crl_clients, key_id)) == before + 1


def crl_suite_authority(suite: Suite, key_id: str) -> CertificateAuthority:
    """The CA with ``key_id`` that the suite's CRL job publishes for."""
    (authority,) = [
        each for each in _publisher(suite).authorities() if each.key_id == key_id
    ]
    return authority


def test_crl_number_grows_past_a_restored_older_database(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock, tmp_path: Path
) -> None:
    """After the bookkeeping is restored from an older backup, the next
    number still exceeds every number issued before (it follows time)."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    old_number = _number(_crl(crl_clients, key_id))
    clock.advance(dt.timedelta(hours=2))
    _publisher(crl_suite).run_once()
    newest = _number(_crl(crl_clients, key_id))
    assert newest > old_number

    # The backup: the row as it stood with the old number.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'tessera.db'}")
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE crls SET crl_number = :n WHERE issuer_key_id = :k"),
            {"n": old_number, "k": key_id},
        )
    engine.dispose()
    clock.advance(dt.timedelta(minutes=1))
    _publisher(crl_suite).rebuild(crl_suite_authority(crl_suite, key_id))

    assert _number(_crl(crl_clients, key_id)) > newest


@pytest.mark.slow
def test_burst_of_1000_revocations_causes_at_most_10_rebuilds(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """A thousand revocations over 20 s, the job polling every second: a few
    rebuilds, each within 30 s of the revocations it covers, and the last
    CRL lists all of them."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    csr = make_csr()
    records = [crl_clients.issue(FRONTDOOR, csr=csr).record for _ in range(1000)]
    rebuilds = []
    unpublished_since: dt.datetime | None = None
    for index, record in enumerate(records):
        crl_clients.revoke(record.fingerprint_sha256)
        unpublished_since = unpublished_since or clock.now()
        if index % 50 == 49:
            clock.advance(dt.timedelta(seconds=1))
            done = _publisher(crl_suite).run_once() or []
            if done:
                rebuilds.extend(done)
                assert clock.now() - unpublished_since <= dt.timedelta(seconds=30)
                unpublished_since = None
    while unpublished_since is not None:
        clock.advance(dt.timedelta(seconds=1))
        done = _publisher(crl_suite).run_once() or []
        if done:
            rebuilds.extend(done)
            assert clock.now() - unpublished_since <= dt.timedelta(seconds=30)
            unpublished_since = None

    assert 1 <= len(rebuilds) <= 10, rebuilds
    assert {rebuild.cause for rebuild in rebuilds} == {"revocation"}
    crl = _crl(crl_clients, _key_id(_intermediate(crl_clients)))
    assert len(crl) == 1000


def test_schedule_rebuilds_before_next_update(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """Without revocations a CRL is rebuilt after the refresh interval (an
    hour), long before its nextUpdate (a day)."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    clock.advance(dt.timedelta(minutes=59))
    assert _publisher(crl_suite).run_once() == []

    clock.advance(dt.timedelta(minutes=1))
    rebuilds = _publisher(crl_suite).run_once()

    assert rebuilds is not None
    assert {rebuild.cause for rebuild in rebuilds} == {"schedule"}
    assert len(rebuilds) == 2  # the root's and the intermediate's


def test_revoked_certificate_stays_listed_past_its_expiry(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """An entry stays on the CRLs rebuilt after its certificate expired
    (RFC 5280 3.3) and leaves one CRL validity later."""
    crl_clients.create_frontdoor(FRONTDOOR)
    record = crl_clients.issue(FRONTDOOR, validity_days=1).record
    crl_clients.revoke(record.fingerprint_sha256)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    expiry = record.not_valid_after.ToDatetime(tzinfo=dt.UTC)

    clock.advance(expiry - clock.now() + dt.timedelta(hours=12))
    _publisher(crl_suite).run_once()
    assert len(_crl(crl_clients, key_id)) == 1

    clock.advance(dt.timedelta(hours=13))
    _publisher(crl_suite).run_once()
    assert len(_crl(crl_clients, key_id)) == 0


# Serving ---------------------------------------------------------------------


def _http(
    suite: Suite, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    assert suite.publication is not None
    host, port = suite.publication.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_crl_is_served_at_its_distribution_point(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """DER with application/pkix-crl, an ETag answered with 304, and a
    max-age of a minute at most that ends no later than nextUpdate."""
    crl_clients.create_frontdoor(FRONTDOOR)
    certificate = x509.load_der_x509_certificate(
        crl_clients.issue(FRONTDOOR).certificate
    )
    _settle(crl_suite, clock)
    points = certificate.extensions.get_extension_for_class(
        x509.CRLDistributionPoints
    ).value
    url = points[0].full_name[0].value  # type: ignore[index]
    path = url.split("/", 3)[3]
    clock.advance(dt.timedelta(hours=23))

    status, headers, body = _http(crl_suite, f"/{path}")

    assert status == 200
    assert headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(body)
    assert (
        body
        == crl_clients.issuer.GetCrl(
            issuer_pb2.GetCrlRequest(key_id=_key_id(_intermediate(crl_clients)))
        ).crl
    )
    until_next_update = crl.next_update_utc - clock.now()
    assert 0 < until_next_update.total_seconds() <= 3600
    # Caches keep it a minute at most, so revocations reach relying parties
    # behind them quickly; never past nextUpdate.
    assert "max-age=60," in headers["Cache-Control"]
    clock.advance(until_next_update - dt.timedelta(seconds=20))
    assert "max-age=20," in _http(crl_suite, f"/{path}")[1]["Cache-Control"]
    status, _, body = _http(crl_suite, f"/{path}", {"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, b"")
    assert _http(crl_suite, f"/{path}", {"If-None-Match": "*"})[0] == 304
    assert _http(crl_suite, f"/{path}", {"If-None-Match": '"0"'})[0] == 200


def test_bad_crl_and_bundle_requests_get_404_or_400(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """Unknown key ids and frontdoors are 404 with a sentence, malformed
    ones 400 or 404, never a 500; the listener keeps serving."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    cases = {
        "/crl/" + "ab" * 20 + ".crl": 404,
        "/crl/not-hex.crl": 400,
        "/crl/.crl": 404,
        "/crl/%00.crl": 400,
        "/crl/../../etc/passwd": 404,
        "/crl/" + "a" * 300 + ".crl": 404,
        "/crl/" + "ab" * 90 + ".crl": 400,
        "/bundle/nosuch/ca.pem": 404,
        "/bundle/nosuch/crl.pem": 404,
        "/bundle/Bad_Name/ca.pem": 400,
        "/bundle/payments/other.pem": 404,
        "/bundle//ca.pem": 404,
    }
    for path, expected in cases.items():
        status, _, body = _http(crl_suite, path)
        assert status == expected, (path, status, body)
    status, _, body = _http(crl_suite, "/crl/" + "ab" * 20 + ".crl")
    assert b"no CA with key id" in body
    assert _http(crl_suite, f"/bundle/{FRONTDOOR}/ca.pem")[0] == 200


def test_crl_not_built_yet_is_503_with_retry_after(
    crl_suite: Suite, crl_clients: Clients
) -> None:
    """Before the job's first pass a CRL is unavailable, not an error."""
    crl_clients.create_frontdoor(FRONTDOOR)
    key_id = _key_id(_intermediate(crl_clients))

    status, headers, body = _http(crl_suite, f"/crl/{key_id}.crl")

    assert status == 503
    assert headers["Retry-After"] == "5"
    assert b"has not been built yet" in body


def test_bundles_hold_root_and_intermediates_and_their_crls(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """The CA bundle is root then intermediate, the CRL bundle their CRLs;
    HTTP and gRPC give the same."""
    crl_clients.create_frontdoor(FRONTDOOR)
    crl_clients.create_frontdoor("billing")
    _settle(crl_suite, clock)

    status, headers, body = _http(crl_suite, f"/bundle/{FRONTDOOR}/ca.pem")
    certificates = x509.load_pem_x509_certificates(body)
    _, _, crl_body = _http(crl_suite, f"/bundle/{FRONTDOOR}/crl.pem")
    bundle = crl_clients.issuer.GetTrustBundle(
        issuer_pb2.GetTrustBundleRequest(frontdoor=FRONTDOOR)
    )

    assert status == 200
    assert headers["Content-Type"] == "application/x-pem-file"
    intermediate = _intermediate(crl_clients)
    assert [c.subject for c in certificates][1:] == [intermediate.subject]
    assert certificates[0].subject == certificates[0].issuer
    assert list(bundle.ca_certificates) == [
        c.public_bytes(Encoding.DER) for c in certificates
    ]
    crls = [
        x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + part)
        for part in crl_body.split(b"-----BEGIN X509 CRL-----")[1:]
    ]
    assert [crl.issuer for crl in crls] == [c.subject for c in certificates]
    assert list(bundle.intermediate_subjects) == [intermediate.subject.rfc4514_string()]


def test_get_crl_and_bundle_refuse_bad_input_over_grpc(
    crl_suite: Suite, crl_clients: Clients
) -> None:
    """Malformed key ids and names are INVALID_ARGUMENT, unknown ones
    NOT_FOUND, each with a sentence."""
    cases = [
        (
            lambda: crl_clients.issuer.GetCrl(issuer_pb2.GetCrlRequest(key_id="zz")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda: crl_clients.issuer.GetCrl(
                issuer_pb2.GetCrlRequest(key_id="ab" * 20)
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: crl_clients.issuer.GetTrustBundle(
                issuer_pb2.GetTrustBundleRequest(frontdoor="nosuch")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: crl_clients.issuer.GetTrustBundle(
                issuer_pb2.GetTrustBundleRequest(frontdoor="")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for call, code in cases:
        error = rpc_error(call)
        assert error.code() == code
        assert len(error.details() or "") > 20


def test_metrics_report_size_entries_and_age_per_frontdoor(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock
) -> None:
    """Size in bytes and entries of the published CRL, and its age as of
    the job's last pass, labelled by frontdoor and issuing CA."""
    crl_clients.create_frontdoor(FRONTDOOR)
    crl_clients.revoke(crl_clients.issue(FRONTDOOR).record.fingerprint_sha256)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    clock.advance(dt.timedelta(minutes=10))
    _publisher(crl_suite).run_once()
    labels = {"frontdoor": FRONTDOOR, "issuer_key_id": key_id}
    der = crl_clients.issuer.GetCrl(issuer_pb2.GetCrlRequest(key_id=key_id)).crl

    assert REGISTRY.get_sample_value("tessera_crl_entries", labels) == 1
    assert REGISTRY.get_sample_value("tessera_crl_size_bytes", labels) == len(der)
    age = clock.now() - x509.load_der_x509_crl(der).last_update_utc
    assert age >= dt.timedelta(minutes=10)
    assert REGISTRY.get_sample_value("tessera_crl_age_seconds", labels) == (
        age.total_seconds()
    )


def test_crl_covering_more_than_a_restored_log_is_replaced(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock, tmp_path: Path
) -> None:
    """A CRL that claims a log position beyond the log's end (the registry
    was restored from an older backup) is rebuilt from the log at once."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'tessera.db'}")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE crls SET revocation_sequence = 100 WHERE issuer_key_id = :k"
            ),
            {"k": key_id},
        )
    engine.dispose()

    rebuilds = _publisher(crl_suite).run_once()

    assert rebuilds is not None
    assert [(r.crl.issuer_key_id, r.cause) for r in rebuilds] == [
        (key_id, "log behind")
    ]
    assert rebuilds[0].crl.revocation_sequence == 0


def test_crl_too_large_for_grpc_points_to_http(
    crl_suite: Suite, crl_clients: Clients, clock: ManualClock, tmp_path: Path
) -> None:
    """A CRL or bundle beyond one gRPC message is refused with a sentence
    naming the HTTP URL to fetch it from, not a transport failure."""
    crl_clients.create_frontdoor(FRONTDOOR)
    _settle(crl_suite, clock)
    key_id = _key_id(_intermediate(crl_clients))
    settings = suite_settings(tmp_path / "data")
    database = Database(settings.issuer_database_url)
    hierarchy = Hierarchy(
        database,
        settings.issuer,
        SignerContext(data_dir=settings.data_dir, environ={}),
        AuditLog(database, "issuer", clock),
        clock,
    )
    distribution = Distribution(hierarchy, CrlStore(database), clock, 200)
    try:
        with pytest.raises(ResourceExhausted, match=re.escape(f"/crl/{key_id}.crl")):
            distribution.crl_message(key_id)
        with pytest.raises(
            ResourceExhausted, match=re.escape("/bundle/payments/ca.pem")
        ):
            distribution.trust_bundle_message(FRONTDOOR)
        # HTTP has no such limit.
        assert len(distribution.crl(key_id).der) > 200
        assert len(distribution.trust_bundle(FRONTDOOR).crls) == 2
    finally:
        hierarchy.close()
        database.dispose()
