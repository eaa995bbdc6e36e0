"""What the registry's revocation stream changes in a validator (DESIGN,
"Revocation, end to end", steps 4 and 5, and "Trust anchors").

Each entry is remembered until the cache's completeness marker covers it, so
the certificate is refused from that moment on even while Redis is behind;
an entry that revokes one of a frontdoor's anchors drops that frontdoor's
trust store at once, and cached verdicts that relied on the certificate
leave with it. The time from the revocation to this moment is the
revocation-to-enforcement latency, ``tessera_revocation_enforcement_seconds``.
"""

from __future__ import annotations

import grpc

from services.common import metrics
from services.common.certificate_facts import from_timestamp
from services.common.clock import Clock
from services.common.logging import get_logger
from services.common.revocation_cache import CacheUnavailable, RevocationCache
from services.validator.revocation import StreamedRevocations
from services.validator.trust import TrustStores
from services.validator.verdicts import VerdictCache
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

_log = get_logger(__name__)


class RevocationEvents:
    """Applies revocation-stream events to one validator's state."""

    def __init__(
        self,
        streamed: StreamedRevocations,
        trust_stores: TrustStores,
        cache: RevocationCache,
        clock: Clock,
        verdicts: VerdictCache | None = None,
    ) -> None:
        self._streamed = streamed
        self._trust_stores = trust_stores
        self._cache = cache
        self._clock = clock
        self._verdicts = verdicts

    def revocation(self, revocation: common_pb2.Revocation, live: bool) -> None:
        """Refuse the certificate from now on."""
        self._streamed.add(revocation)
        if self._verdicts is not None:
            self._verdicts.forget_certificate(
                revocation.issuer_key_id, revocation.serial_number
            )
        if (
            self._trust_stores.forget_revoked_anchor(
                revocation.issuer_key_id, revocation.serial_number
            )
            and self._verdicts is not None
        ):
            self._verdicts.forget_frontdoor(revocation.frontdoor)
        metrics.REVOCATION_STREAM_SEQUENCE.set(revocation.sequence)
        # Entries replayed at start-up were enforced long before this process
        # existed; their age says nothing about the stream.
        if live:
            revoked_at = from_timestamp(revocation.revocation_date)
            latency = (self._clock.now() - revoked_at).total_seconds()
            metrics.REVOCATION_ENFORCEMENT.observe(max(latency, 0.0))

    def heartbeat(self, heartbeat: registry_pb2.WatchHeartbeat) -> None:
        """Forget remembered entries the cache holds by now."""
        issuers = self._streamed.issuer_key_ids()
        if not issuers:
            return
        try:
            markers = self._cache.markers(issuers)
        except CacheUnavailable:
            return  # keep them; they are all that is known without Redis
        self._streamed.forget_covered(markers)

    def stream_broken(self, error: grpc.RpcError | None, resume_from: int) -> None:
        """Forget cached verdicts, which events may no longer reach, and say
        so; the subscriber resumes by itself."""
        if self._verdicts is not None:
            self._verdicts.clear()
        code = error.code().name if error is not None else "OK"
        details = (error.details() if error is not None else None) or ""
        _log.warning(
            "revocation stream broke; resuming",
            code=code,
            details=details,
            resume_from=resume_from,
        )
