"""Revocation status of certificates Tessera issued, for the validator.

DESIGN, "Revocation, end to end", step 5: the cache's answer counts as "not
revoked" only while the issuer's completeness marker covers it. Without the
marker (Redis flushed, restarted, evicted or unreachable) the registry's log
decides; when the registry cannot answer either, the status is unknown and
the frontdoor's failure policy applies. Never "not revoked" by default.

Before any of that, the revocations this validator heard on the registry's
revocation stream (step 4) answer "revoked" at once. They cover the time
between a revocation's commit and the cache sync's next pass, when the
issuer's Redis hash may lack the entry (its fast-path write failed) while an
older marker still reads "complete": without them the certificate would pass
until that pass.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import threading
from collections.abc import Mapping

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


class StreamedRevocations:
    """Revocations heard on the stream that the cache may not hold yet.

    An entry leaves once its issuer's completeness marker covers its
    sequence (the cache then holds it, or the registry answers for it).
    Should the cache stay behind for long, the oldest entries leave first
    beyond ``capacity``; the cache and the registry still answer for them,
    as they did before the stream existed.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._entries: collections.OrderedDict[
            tuple[str, str], common_pb2.Revocation
        ] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, revocation: common_pb2.Revocation) -> None:
        """Remember a revocation from the stream."""
        key = (revocation.issuer_key_id, revocation.serial_number)
        with self._lock:
            self._entries[key] = revocation
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def get(
        self, issuer_key_id: str, serial_number: str
    ) -> common_pb2.Revocation | None:
        with self._lock:
            return self._entries.get((issuer_key_id, serial_number))

    def issuer_key_ids(self) -> set[str]:
        with self._lock:
            return {issuer for issuer, _ in self._entries}

    def forget_covered(self, markers: Mapping[str, int | None]) -> int:
        """Drop entries the issuers' markers cover; how many were dropped."""
        with self._lock:
            covered = [
                key
                for key, revocation in self._entries.items()
                if (marker := markers.get(key[0])) is not None
                and revocation.sequence <= marker
            ]
            for key in covered:
                del self._entries[key]
        return len(covered)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class RevocationChecker:
    """Asks the revocations heard on the stream, the cache, then the registry."""

    def __init__(
        self,
        cache: RevocationCache,
        registry: RegistryClient,
        registry_timeout_seconds: float,
        streamed: StreamedRevocations | None = None,
    ) -> None:
        self._cache = cache
        self._registry = registry
        self._timeout = registry_timeout_seconds
        self._streamed = streamed if streamed is not None else StreamedRevocations()

    def check(self, issuer_key_id: str, serial_number: str) -> RevocationAnswer:
        """The revocation status of one certificate."""
        heard = self._streamed.get(issuer_key_id, serial_number)
        if heard is not None:
            metrics.REVOCATION_LOOKUPS.labels(source="stream").inc()
            return RevocationAnswer(Status.REVOKED, "stream", heard)
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
