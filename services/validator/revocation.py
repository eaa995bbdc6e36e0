"""Revocation status of certificates Tessera issued, for the validator.

DESIGN, "Revocation, end to end", step 5: the cache's answer counts as "not
revoked" only while the issuer's completeness marker covers it. Without the
marker (Redis flushed, restarted, evicted or unreachable) the registry's log
decides; when the registry cannot answer either, the status is unknown and
the frontdoor's failure policy applies. Never "not revoked" by default.
"""

from __future__ import annotations

import dataclasses
import enum

from services.common import metrics
from services.common.certificate_facts import timestamp
from services.common.errors import TesseraError
from services.common.revocation_cache import CacheUnavailable, RevocationCache
from services.registry.client import RegistryClient
from tessera.common.v1 import common_pb2


class Status(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class RevocationAnswer:
    """What is known about one certificate's revocation."""

    status: Status
    # Where the answer came from: "cache" or "registry"; why it is unknown.
    source: str
    # Set when revoked. Cache answers carry the log fields the cache keeps.
    revocation: common_pb2.Revocation | None = None


class RevocationChecker:
    """Asks the cache, then the registry."""

    def __init__(
        self,
        cache: RevocationCache,
        registry: RegistryClient,
        registry_timeout_seconds: float,
    ) -> None:
        self._cache = cache
        self._registry = registry
        self._timeout = registry_timeout_seconds

    def check(self, issuer_key_id: str, serial_number: str) -> RevocationAnswer:
        """The revocation status of one certificate."""
        try:
            answer = self._cache.lookup(issuer_key_id, serial_number)
        except CacheUnavailable:
            answer = None
        if answer is not None and answer.revocation is not None:
            metrics.REVOCATION_LOOKUPS.labels(source="cache").inc()
            cached = answer.revocation
            revocation = common_pb2.Revocation(
                sequence=cached.sequence,
                issuer_key_id=issuer_key_id,
                serial_number=serial_number,
                reason=cached.reason,  # type: ignore[arg-type]
                revocation_date=timestamp(cached.revocation_date),
            )
            if cached.invalidity_date is not None:
                revocation.invalidity_date.CopyFrom(timestamp(cached.invalidity_date))
            return RevocationAnswer(Status.REVOKED, "cache", revocation)
        if answer is not None and answer.proves_not_revoked:
            metrics.REVOCATION_LOOKUPS.labels(source="cache").inc()
            return RevocationAnswer(Status.GOOD, "cache")

        try:
            status = self._registry.revocation_status(
                issuer_key_id, serial_number, timeout=self._timeout
            )
        except TesseraError as error:
            metrics.REVOCATION_LOOKUPS.labels(source="unknown").inc()
            return RevocationAnswer(
                Status.UNKNOWN,
                f"the revocation cache cannot prove the status and the registry "
                f"did not answer ({error.message})",
            )
        metrics.REVOCATION_LOOKUPS.labels(source="registry").inc()
        if status.revoked:
            return RevocationAnswer(Status.REVOKED, "registry", status.revocation)
        return RevocationAnswer(Status.GOOD, "registry")
