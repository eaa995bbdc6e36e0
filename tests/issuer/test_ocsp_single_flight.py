"""Shared lookups in the OCSP responder: concurrent requests for one
certificate ask the registry once, a revocation that arrives while that
lookup is in flight is never undone by it, a failed lookup is not
remembered, and hot entries are fetched again before they go stale."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509 import ocsp

from services.common import identifiers, metrics
from services.common.errors import Unavailable
from services.common.rpc import open_channel
from services.issuer import ocsp_http
from services.issuer.ocsp import OcspResponder, SharedLookup
from services.registry.client import RegistryClient
from services.suite import Suite, start_suite
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2
from tests.issuer.ocsp_requests import cert_id, post, request_der
from tests.issuer.test_ocsp import FRONTDOOR, Issued, issue, publishing_settings
from tests.support import Clients, ManualClock, eventually, free_port

# More concurrent requests from one address than the listener's per-client
# limit lets start lookups of their own.
CONCURRENT = 16


def registry_lookups() -> float:
    """GetCertificate calls the registry server (in this process) served."""
    return sum(
        sample.value
        for family in metrics.RPC_DURATION.collect()
        for sample in family.samples
        if sample.name.endswith("_count")
        and sample.labels["method"].endswith("GetCertificate")
    )


class HeldRegistry(RegistryClient):
    """The suite's registry client, whose first certificate lookup is held
    back after the registry answered (or, with ``fail_first``, fails as a
    registry that cannot be reached does) until the test releases it."""

    def __init__(self, real: RegistryClient, fail_first: bool = False) -> None:
        self._real = real
        self._fail_first = fail_first
        self.entered = threading.Event()
        self.release = threading.Event()
        self._first = True
        self._lock = threading.Lock()

    def get_certificate_by_serial(
        self, issuer_key_id: str, serial_number: str
    ) -> common_pb2.CertificateRecord:
        with self._lock:
            first, self._first = self._first, False
        if not first:
            return self._real.get_certificate_by_serial(issuer_key_id, serial_number)
        record = None
        if not self._fail_first:
            record = self._real.get_certificate_by_serial(issuer_key_id, serial_number)
        self.entered.set()
        assert self.release.wait(30)
        if record is not None:
            return record
        # A registry nobody listens on: gRPC's own UNAVAILABLE.
        channel = open_channel(f"127.0.0.1:{free_port()}")
        try:
            RegistryClient(channel, timeout_seconds=2).get_certificate_by_serial(
                issuer_key_id, serial_number
            )
        finally:
            channel.close()
        raise AssertionError("a registry on a closed port answered")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Suite, Clients]]:
    suite = start_suite(publishing_settings(tmp_path / "data"))  # type: ignore[arg-type]
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    clients.create_frontdoor(FRONTDOOR)
    yield suite, clients
    clients.close()
    suite.stop()


def hold_registry(suite: Suite, fail_first: bool = False) -> HeldRegistry:
    responder = suite.ocsp_responder
    assert responder is not None
    held = HeldRegistry(responder._registry, fail_first)
    responder._registry = held
    return held


def nonce_request(issued: Issued) -> bytes:
    return request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)],
        os.urandom(16),
    )


def answer(address: str, der: bytes) -> ocsp.OCSPResponse:
    return post(address, der).ocsp()


def known_issuers(suite: Suite, clients: Clients, tmp_path: Path) -> Issued:
    """A certificate of a frontdoor the responder has answered for before,
    so that it recognises the issuer without reading the CAs again."""
    assert suite.publication is not None
    warm = issue(clients, tmp_path / "warm")
    assert answer(suite.publication, nonce_request(warm)).response_status == (
        ocsp.OCSPResponseStatus.SUCCESSFUL
    )
    return issue(clients, tmp_path)


def test_concurrent_requests_for_one_certificate_share_one_registry_lookup(
    running: tuple[Suite, Clients], tmp_path: Path
) -> None:
    """Sixteen nonce requests from one address while the certificate's
    status is being fetched: one registry lookup, sixteen "good", no
    tryLater from the per-client limit (awaiting is not counted)."""
    suite, clients = running
    address = suite.publication
    assert address is not None
    issued = known_issuers(suite, clients, tmp_path)
    held = hold_registry(suite)
    before = registry_lookups()

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
        first = pool.submit(answer, address, nonce_request(issued))
        assert held.entered.wait(10)
        others = [
            pool.submit(answer, address, nonce_request(issued))
            for _ in range(CONCURRENT - 1)
        ]
        # Let every request reach the listener and find the lookup.
        assert not first.done()
        threading.Event().wait(0.5)
        held.release.set()
        answers = [future.result(timeout=30) for future in [first, *others]]

    assert [each.response_status for each in answers] == (
        [ocsp.OCSPResponseStatus.SUCCESSFUL] * CONCURRENT
    )
    assert {each.certificate_status for each in answers} == {ocsp.OCSPCertStatus.GOOD}
    assert registry_lookups() == before + 1


@pytest.mark.parametrize("nonce", [True, False])
def test_requests_arriving_together_for_a_cold_entry_share_one_lookup(
    running: tuple[Suite, Clients], tmp_path: Path, nonce: bool
) -> None:
    """Sixteen requests from one address released at once for a
    certificate nothing is held for: the first claims the lookup before its
    thread starts, so none of the others starts one or is refused."""
    suite, clients = running
    address = suite.publication
    assert address is not None
    issued = known_issuers(suite, clients, tmp_path)
    plain = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)]
    )
    barrier = threading.Barrier(CONCURRENT)
    before = registry_lookups()

    def together() -> ocsp.OCSPResponse:
        der = nonce_request(issued) if nonce else plain
        barrier.wait(10)
        return answer(address, der)

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
        answers = [
            future.result(timeout=30)
            for future in [pool.submit(together) for _ in range(CONCURRENT)]
        ]

    assert [each.response_status for each in answers] == (
        [ocsp.OCSPResponseStatus.SUCCESSFUL] * CONCURRENT
    )
    assert {each.certificate_status for each in answers} == {ocsp.OCSPCertStatus.GOOD}
    assert registry_lookups() == before + 1


def test_concurrent_requests_without_nonce_share_one_lookup(
    running: tuple[Suite, Clients], tmp_path: Path
) -> None:
    """The same for the pre-signed path: one lookup, one signature."""
    suite, clients = running
    address = suite.publication
    assert address is not None
    issued = known_issuers(suite, clients, tmp_path)
    plain = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)]
    )
    held = hold_registry(suite)
    before = registry_lookups()

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
        first = pool.submit(answer, address, plain)
        assert held.entered.wait(10)
        others = [pool.submit(answer, address, plain) for _ in range(CONCURRENT - 1)]
        threading.Event().wait(0.5)
        held.release.set()
        answers = [future.result(timeout=30) for future in [first, *others]]

    assert {each.certificate_status for each in answers} == {ocsp.OCSPCertStatus.GOOD}
    assert len({each.this_update_utc for each in answers}) == 1
    assert registry_lookups() == before + 1


@pytest.mark.parametrize("revoked_by", ["stream", "issuer"])
def test_a_revocation_during_an_in_flight_lookup_is_never_undone_by_it(
    running: tuple[Suite, Clients], tmp_path: Path, revoked_by: str
) -> None:
    """The registry said "good", then the certificate is revoked (at the
    registry, heard on the stream; or through this issuer) before that
    answer reaches the responder: the requests that asked before may hear
    "good", every request after the revocation hears "revoked", with and
    without nonce, including one that arrives while the old lookup is
    still held."""
    suite, clients = running
    address = suite.publication
    assert address is not None
    issued = known_issuers(suite, clients, tmp_path)
    plain = request_der(
        [cert_id(issued.intermediate, issued.certificate.serial_number)]
    )
    held = hold_registry(suite)
    # This suite's registry starts its revocation log afresh.
    metrics.OCSP_REVOCATION_SEQUENCE.set(0)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        early = pool.submit(answer, address, nonce_request(issued))
        assert held.entered.wait(10)
        if revoked_by == "stream":
            clients.registry.RecordRevocation(
                registry_pb2.RecordRevocationRequest(
                    fingerprint_sha256=issued.fingerprint, reason=1
                ),
                timeout=30,
            )
            assert eventually(
                lambda: metrics.OCSP_REVOCATION_SEQUENCE._value.get() > 0  # type: ignore[attr-defined]
            )
        else:
            # The issuer replaces the responses before RevokeCertificate
            # returns.
            clients.revoke(issued.fingerprint)
        late = answer(address, nonce_request(issued))
        held.release.set()
        early.result(timeout=30)

    assert late.certificate_status == ocsp.OCSPCertStatus.REVOKED
    for _ in range(3):
        assert (
            answer(address, nonce_request(issued)).certificate_status
            == ocsp.OCSPCertStatus.REVOKED
        )
        assert answer(address, plain).certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_a_failed_lookup_gives_its_waiters_try_later_and_is_not_remembered(
    running: tuple[Suite, Clients], tmp_path: Path
) -> None:
    """The registry cannot be reached for the lookup everyone awaits: all
    of them get tryLater, and the next request asks the registry again."""
    suite, clients = running
    address = suite.publication
    assert address is not None
    issued = known_issuers(suite, clients, tmp_path)
    held = hold_registry(suite, fail_first=True)
    before = registry_lookups()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = pool.submit(answer, address, nonce_request(issued))
        assert held.entered.wait(10)
        others = [pool.submit(answer, address, nonce_request(issued)) for _ in range(7)]
        threading.Event().wait(0.5)
        held.release.set()
        failed = [future.result(timeout=30) for future in [first, *others]]

    assert {each.response_status for each in failed} == {
        ocsp.OCSPResponseStatus.TRY_LATER
    }
    assert registry_lookups() == before
    retried = answer(address, nonce_request(issued))
    assert retried.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert registry_lookups() == before + 1


def test_held_statuses_are_fetched_again_before_they_go_stale(
    tmp_path: Path,
) -> None:
    """A status asked for in the last quarter of its lifetime is fetched
    again in the background, so that the request after its old expiry is
    still answered from memory."""
    clock = ManualClock()
    suite = start_suite(
        publishing_settings(tmp_path / "data"),  # type: ignore[arg-type]
        clock=clock,
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor(FRONTDOOR)
        address = suite.publication
        assert address is not None
        issued = known_issuers(suite, clients, tmp_path)
        before = registry_lookups()
        assert answer(address, nonce_request(issued)).certificate_status == (
            ocsp.OCSPCertStatus.GOOD
        )
        assert registry_lookups() == before + 1
        # Without Redis a status is reused for half the response validity
        # (30 minutes by default); ask within its last quarter.
        clock.advance(dt.timedelta(minutes=25))
        assert answer(address, nonce_request(issued)).certificate_status == (
            ocsp.OCSPCertStatus.GOOD
        )
        assert eventually(lambda: registry_lookups() == before + 2)
        clock.advance(dt.timedelta(minutes=10))
        answers = [answer(address, nonce_request(issued)) for _ in range(3)]
        assert {each.certificate_status for each in answers} == {
            ocsp.OCSPCertStatus.GOOD
        }
        # The refreshed status served them; the next refresh is not due yet.
        assert registry_lookups() == before + 2
    finally:
        clients.close()
        suite.stop()


def test_unavailable_is_what_a_closed_registry_port_raises() -> None:
    """The failure the tests above stage is the responder's tryLater cause."""
    channel = open_channel(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(Unavailable):
            RegistryClient(channel, timeout_seconds=2).get_certificate_by_serial(
                "00", "01"
            )
    finally:
        channel.close()


def _claimed_lookup(
    suite: Suite, clients: Clients, tmp_path: Path
) -> tuple[OcspResponder, Issued, bytes, SharedLookup]:
    """A certificate whose status lookup a nonce request on the event loop
    has claimed but not run (as while it waits for a thread): the
    responder, the certificate, that request and its claim."""
    responder = suite.ocsp_responder
    assert responder is not None
    issued = known_issuers(suite, clients, tmp_path)
    claimant_request = nonce_request(issued)
    pending, claim = responder.join_or_claim(claimant_request)
    assert pending is None
    assert claim is not None
    return responder, issued, claimant_request, claim


@pytest.mark.parametrize("waiting", ["several", "no-nonce"])
def test_a_thread_never_waits_for_a_lookup_whose_claimant_is_still_queued(
    running: tuple[Suite, Clients], tmp_path: Path, waiting: str
) -> None:
    """A request on the event loop claims a certificate's lookup and then
    waits for a thread. Requests already in threads that need the same
    lookup (one naming the certificate among several, one without nonce)
    run it themselves instead of waiting for the claimant, which could be
    queued behind them: with every thread of the pool waiting, the
    listener froze for good. The claimant then answers from what they
    fetched, and nothing awaiting the claim is given an empty result."""
    suite, clients = running
    responder, issued, claimant_request, claim = _claimed_lookup(
        suite, clients, tmp_path
    )
    serial = issued.certificate.serial_number
    if waiting == "several":
        other = request_der(
            [
                cert_id(issued.intermediate, serial),
                cert_id(issued.intermediate, serial),
            ],
            os.urandom(16),
        )
    else:
        other = request_der([cert_id(issued.intermediate, serial)])

    # Before the claimant has a thread. (A daemon thread: were it to wait
    # for the claim, the test fails instead of hanging.)
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(responder.respond(other)), daemon=True
    )
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the request waited for the queued claimant"
    (answered,) = results
    assert answered.response_status == "successful"
    assert set(answered.statuses) == {"good"}
    assert claim.future.done()
    assert claim.future.result() is not None

    own = responder.respond(claimant_request, claim)
    assert own.response_status == "successful"
    assert own.statuses == ("good",)


def test_a_revocation_while_a_lookup_is_claimed_answers_revoked(
    running: tuple[Suite, Clients], tmp_path: Path
) -> None:
    """The certificate is revoked while a request's lookup is claimed but
    not run: requests without nonce, the claimant and those awaiting the
    claim all answer "revoked" (never internalError)."""
    suite, clients = running
    responder, issued, claimant_request, claim = _claimed_lookup(
        suite, clients, tmp_path
    )
    serial = issued.certificate.serial_number
    joined, none = responder.join_or_claim(nonce_request(issued))
    assert joined is claim.future
    assert none is None

    clients.revoke(identifiers.fingerprint(issued.certificate))
    plain = request_der([cert_id(issued.intermediate, serial)])
    assert eventually(
        lambda: responder.respond(plain).statuses == ("revoked",), timeout=10
    )
    own = responder.respond(claimant_request, claim)
    assert own.response_status == "successful"
    assert own.statuses == ("revoked",)
    # The claim was answered without its lookup: those awaiting it look
    # again, and find "revoked" in memory.
    assert claim.future.result(timeout=5) is None
    again = responder.respond_from_memory(nonce_request(issued))
    assert again is not None
    assert again.statuses == ("revoked",)


def test_the_listener_limits_requests_in_progress_across_clients(
    running: tuple[Suite, Clients], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each client address stays within its own limit, yet many addresses
    together could queue the pool full (CRL and CA fetches wait in it too):
    past the listener's limit a request that needs a thread is answered
    tryLater at once, and answered again once the pool is free."""
    monkeypatch.setattr(ocsp_http, "MAX_IN_FLIGHT", 1)
    suite, clients = running
    address = suite.publication
    assert address is not None
    waiting = known_issuers(suite, clients, tmp_path)
    other = issue(clients, tmp_path / "other")
    held = hold_registry(suite)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(answer, address, nonce_request(waiting))
        assert held.entered.wait(10)
        refused = answer(address, nonce_request(other))
        held.release.set()
        assert first.result(timeout=30).certificate_status == ocsp.OCSPCertStatus.GOOD

    assert refused.response_status == ocsp.OCSPResponseStatus.TRY_LATER
    again = answer(address, nonce_request(other))
    assert again.certificate_status == ocsp.OCSPCertStatus.GOOD
