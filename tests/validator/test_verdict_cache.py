"""The verdict cache: valid verdicts only, reused for a short time, never
past the path's earliest notAfter, and dropped by the revocation of any
certificate of their path, by a trust event and by a broken stream."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from services.common import identifiers
from services.suite import start_suite
from services.validator.verdicts import VerdictCache
from tessera.common.v1 import common_pb2
from tessera.validator.v1 import validator_pb2
from tests.support import Clients, ManualClock, eventually, suite_settings
from tests.validator.test_chain import NOW, make_ca, make_leaf

SECOND = dt.timedelta(seconds=1)
VALID = validator_pb2.ValidationVerdict(
    valid=True, reasons=[common_pb2.VALIDATION_REASON_OK], message="valid"
)


def _setting() -> tuple[VerdictCache, ManualClock, list, list[bytes]]:
    clock = ManualClock(NOW)
    cache = VerdictCache(SECOND, clock.now)
    anchor = make_ca("payments intermediate")
    leaf = make_leaf(anchor)
    path = [leaf, anchor.certificate]
    return cache, clock, path, [leaf.public_bytes(Encoding.DER)]


def test_valid_verdict_is_reused_until_its_time_runs_out() -> None:
    cache, clock, path, chain = _setting()
    cache.put("payments", chain, VALID, path, cache.generation())

    assert cache.get("payments", chain) == VALID
    assert cache.get("billing", chain) is None
    clock.advance(SECOND)
    assert cache.get("payments", chain) is None


def test_verdict_never_outlives_the_earliest_not_valid_after() -> None:
    """A leaf one second from its notAfter is kept one second, though the
    cache keeps verdicts for an hour."""
    clock = ManualClock(NOW)
    cache = VerdictCache(dt.timedelta(hours=1), clock.now)
    anchor = make_ca("payments intermediate")
    leaf = make_leaf(anchor, not_after=NOW + dt.timedelta(seconds=30))
    chain = [leaf.public_bytes(Encoding.DER)]
    clock.advance(dt.timedelta(seconds=29))
    cache.put("payments", chain, VALID, [leaf, anchor.certificate], cache.generation())

    clock.advance(SECOND)

    assert cache.get("payments", chain) is None


def test_refusals_are_not_kept() -> None:
    cache, _, path, chain = _setting()
    refusal = validator_pb2.ValidationVerdict(
        valid=False, reasons=[common_pb2.VALIDATION_REASON_REVOKED]
    )

    cache.put("payments", chain, refusal, path, cache.generation())

    assert cache.get("payments", chain) is None


def test_revocation_of_any_certificate_of_the_path_drops_the_verdict() -> None:
    """The leaf's revocation and its issuing CA's revocation each drop it."""
    for revoked in (0, 1):
        cache, _, path, chain = _setting()
        cache.put("payments", chain, VALID, path, cache.generation())
        certificate = path[revoked]

        dropped = cache.forget_certificate(
            identifiers.authority_key_id(certificate) or "",
            identifiers.format_serial(certificate.serial_number),
        )

        assert dropped == 1
        assert cache.get("payments", chain) is None


def test_trust_event_and_broken_stream_drop_verdicts() -> None:
    cache, _, path, chain = _setting()
    cache.put("payments", chain, VALID, path, cache.generation())
    assert cache.forget_frontdoor("billing") == 0
    assert cache.forget_frontdoor("payments") == 1

    cache.put("payments", chain, VALID, path, cache.generation())
    cache.clear()
    assert cache.get("payments", chain) is None


def test_verdict_worked_out_across_an_invalidation_is_not_kept() -> None:
    """A verdict whose revocation lookups ran before an event that
    arrived meanwhile may be stale; it is not stored."""
    cache, _, path, chain = _setting()
    generation = cache.generation()

    cache.forget_certificate("aa", "1")
    cache.put("payments", chain, VALID, path, generation)

    assert cache.get("payments", chain) is None


def test_revocation_event_drops_a_cached_verdict_at_once(tmp_path: Path) -> None:
    """With verdicts kept for a minute, a revoked certificate is still refused
    within a second: the revocation stream's event drops the verdict."""
    suite = start_suite(
        suite_settings(
            tmp_path / "data",
            validator={"verdict_cache_seconds": 60, "trust_store_ttl_seconds": 60},
        )
    )
    clients = Clients.connect(
        suite.address("issuer"), suite.address("registry"), suite.address("validator")
    )
    try:
        clients.create_frontdoor("payments")
        issued = clients.issue("payments")
        for _ in range(2):
            assert clients.validate([issued.certificate], "payments").valid

        clients.revoke(issued.record.fingerprint_sha256)

        assert eventually(
            lambda: not clients.validate([issued.certificate], "payments").valid,
            timeout=1,
        )
    finally:
        clients.close()
        suite.stop()
