"""The cache sync: the only writer of the revocation cache's completeness
markers (DESIGN, "Revocation, end to end", step 3).

One leased job tails the revocation log in sequence order. For each issuing
CA it adds the log entries the cache lacks and moves the marker to the end
of the contiguous run it read, with a compare-and-set so that a concurrent
flush is never covered up. A hash whose marker vanished (Redis flushed,
restarted or evicted) is rebuilt from the log under a token the flush would
also remove; a marker ahead of the log (a database restored from an older
backup) means the hash describes another history and is dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict

from services.common.jobs import PeriodicJob
from services.common.leases import Lease
from services.common.logging import get_logger
from services.common.revocation_cache import CachedRevocation, RevocationCache
from services.registry.store import LogEntry, RegistryStore

LEASE_NAME = "registry.cache_sync"
_log = get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """What one pass of the sync did."""

    complete_to: int
    advanced: tuple[str, ...] = ()
    rebuilt: tuple[str, ...] = ()
    discarded: tuple[str, ...] = ()


class CacheSync:
    """Keeps the revocation cache complete and its markers honest."""

    def __init__(
        self,
        store: RegistryStore,
        cache: RevocationCache,
        lease: Lease,
        batch_size: int = 5000,
    ) -> None:
        self._store = store
        self._cache = cache
        self._lease = lease
        self._batch_size = batch_size
        self._job: PeriodicJob | None = None

    def run_once(self) -> SyncReport | None:
        """One pass; None when another replica holds the lease."""
        if not self._lease.acquire():
            return None

        key_ids = self._store.ca_key_ids()
        last = self._store.last_sequence()
        markers = self._cache.markers(key_ids)

        discarded = [
            key_id for key_id, marker in markers.items() if marker and marker > last
        ]
        for key_id in discarded:
            self._cache.discard(key_id)
            markers[key_id] = None

        rebuilt = [
            key_id
            for key_id, marker in markers.items()
            if marker is None and self._rebuild(key_id, last)
        ]

        behind = {
            key_id: marker
            for key_id, marker in markers.items()
            if marker is not None and marker < last
        }
        advanced: list[str] = []
        complete_to = last
        if behind:
            low = min(behind.values())
            entries = self._store.log_entries(low, last, self._batch_size)
            complete_to = _contiguous_end(low, entries)
            by_issuer: dict[str, dict[str, CachedRevocation]] = defaultdict(dict)
            for entry in entries:
                if entry.sequence <= complete_to and entry.sequence > behind.get(
                    entry.issuer_key_id, complete_to
                ):
                    by_issuer[entry.issuer_key_id][entry.serial_number] = (
                        entry.revocation
                    )
            for key_id, marker in behind.items():
                if marker < complete_to and self._cache.advance(
                    key_id, marker, by_issuer.get(key_id, {}), complete_to
                ):
                    advanced.append(key_id)

        return SyncReport(
            complete_to=complete_to,
            advanced=tuple(advanced),
            rebuilt=tuple(rebuilt),
            discarded=tuple(discarded),
        )

    def _rebuild(self, issuer_key_id: str, up_to: int) -> bool:
        token = self._cache.begin_rebuild(issuer_key_id)
        if token is None:
            return False
        for batch in self._store.issuer_log_entries(
            issuer_key_id, up_to, self._batch_size
        ):
            chunk = {entry.serial_number: entry.revocation for entry in batch}
            if not self._cache.rebuild_chunk(issuer_key_id, token, chunk):
                return False
        return self._cache.finish_rebuild(issuer_key_id, token, up_to)

    # Background loop ----------------------------------------------------

    def start(self, interval: dt.timedelta) -> None:
        """Run passes every ``interval`` and whenever ``wake`` is called."""
        self._job = PeriodicJob("cache-sync", interval, self._pass, self._pass_failed)
        self._job.start()

    def wake(self) -> None:
        """Run a pass soon, for example right after a revocation was recorded."""
        if self._job is not None:
            self._job.wake()

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop(timeout_seconds=10)

    def _pass(self) -> None:
        report = self.run_once()
        if report and (report.rebuilt or report.discarded):
            _log.info(
                "revocation cache filled from the log",
                rebuilt=report.rebuilt,
                discarded=report.discarded,
                complete_to=report.complete_to,
            )

    @staticmethod
    def _pass_failed(error: Exception) -> None:
        # The next pass retries; the validator never trusts a marker this
        # pass failed to write.
        _log.error("revocation cache sync pass failed", exc_info=error)


def _contiguous_end(low: int, entries: list[LogEntry]) -> int:
    """The highest sequence up to which ``entries`` continue ``low`` without a gap.

    Sequence numbers are handed out under a row lock and committed in order,
    so a gap means a damaged log; the marker then stops before it.
    """
    reached = low
    for entry in entries:
        if entry.sequence != reached + 1:
            break
        reached = entry.sequence
    return reached
