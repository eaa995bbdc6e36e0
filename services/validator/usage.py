"""The validator's usage reports: which certificates it accepted at which
frontdoor, and when last, sent to the registry in batches.

The hot path only notes an accepted certificate in a dictionary keyed by
(fingerprint, frontdoor) that keeps the latest time; a background job sends
its contents every ``validator.usage_report_seconds`` and once more at
shutdown. Memory is bounded: at most ``validator.usage_max_entries`` pairs
are held, and a pair that finds the dictionary full is dropped and counted
(``tessera_usage_entries_dropped_total``). A registry that cannot be reached
never slows validation: the report fails in the background and its entries
go back into the dictionary (within the same bound) for the next one.
"""

from __future__ import annotations

import datetime as dt
import threading

from services.common import metrics
from services.common.certificate_facts import timestamp
from services.common.clock import Clock
from services.common.errors import InvalidArgument, TesseraError
from services.common.jobs import PeriodicJob
from services.common.logging import get_logger
from services.registry.client import RegistryClient
from services.registry.usage import MAX_USAGE_BATCH
from tessera.registry.v1 import registry_pb2

_log = get_logger(__name__)
_Key = tuple[str, str]


class UsageReporter:
    """Collects accepted certificates and reports them to the registry."""

    def __init__(
        self,
        registry: RegistryClient,
        clock: Clock,
        max_entries: int,
        timeout_seconds: float = 5.0,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._registry = registry
        self._clock = clock
        self._max_entries = max_entries
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        # Serialises flushes (the job's and the one at shutdown).
        self._flushing = threading.Lock()
        self._pending: dict[_Key, dt.datetime] = {}
        self._job: PeriodicJob | None = None
        metrics.USAGE_ENTRIES_PENDING.set_function(lambda: len(self._pending))

    @property
    def pending(self) -> int:
        """Entries waiting for the next report."""
        return len(self._pending)

    def seen(self, fingerprint: str, frontdoor: str) -> None:
        """Note that ``frontdoor`` accepted the certificate now."""
        now = self._clock.now()
        key = (fingerprint, frontdoor)
        with self._lock:
            known = self._pending.get(key)
            if known is not None:
                if now > known:
                    self._pending[key] = now
                return
            if len(self._pending) < self._max_entries:
                self._pending[key] = now
                return
        metrics.USAGE_ENTRIES_DROPPED.inc()

    def flush(self) -> int:
        """Send every pending entry and return how many were delivered.

        A report the registry cannot take now puts its entries and every
        later one back for the next flush and raises the error; one it
        refuses as malformed is dropped (sending it again would not help).
        """
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            entries = list(taken.items())
            delivered = 0
            for start in range(0, len(entries), MAX_USAGE_BATCH):
                batch = entries[start : start + MAX_USAGE_BATCH]
                try:
                    self._registry.report_usage(
                        [_message(key, seen) for key, seen in batch],
                        timeout=self._timeout,
                    )
                except InvalidArgument as error:
                    metrics.USAGE_REPORTS.labels(outcome="failed").inc()
                    metrics.USAGE_ENTRIES_DROPPED.inc(len(batch))
                    _log.error(
                        "the registry refused a usage report; its entries are dropped",
                        entries=len(batch),
                        error=error.message,
                    )
                    continue
                except Exception:
                    # Unreachable, overloaded or failing: keep the entries.
                    metrics.USAGE_REPORTS.labels(outcome="failed").inc()
                    self._put_back(entries[start:])
                    raise
                metrics.USAGE_REPORTS.labels(outcome="sent").inc()
                metrics.USAGE_ENTRIES_REPORTED.inc(len(batch))
                delivered += len(batch)
            return delivered

    def start(self, interval: dt.timedelta) -> None:
        """Flush every ``interval`` in a background thread."""
        self._job = PeriodicJob(
            "usage-reports",
            interval,
            self._flush_quietly,
            self._report_failure,
            first_pass_at_once=False,
        )
        self._job.start()

    def stop(self) -> None:
        """End the background job, then send what is left once."""
        if self._job is not None:
            self._job.stop()
            self._job = None
        try:
            self.flush()
        except TesseraError as error:
            _log.warning(
                "usage entries not reported at shutdown; the registry could not "
                "take them",
                entries=self.pending,
                error=error.message,
            )

    def _flush_quietly(self) -> None:
        self.flush()

    def _report_failure(self, error: Exception) -> None:
        _log.warning(
            "usage report failed; its entries wait for the next one",
            entries=self.pending,
            error=error.message if isinstance(error, TesseraError) else repr(error),
        )

    def _put_back(self, entries: list[tuple[_Key, dt.datetime]]) -> None:
        """Merge unsent entries into the pending ones, within the bound.

        The lock is taken per slice, so validations waiting to note a
        certificate never wait for the whole merge."""
        dropped = 0
        for start in range(0, len(entries), MAX_USAGE_BATCH):
            with self._lock:
                for key, seen in entries[start : start + MAX_USAGE_BATCH]:
                    known = self._pending.get(key)
                    if known is not None:
                        if seen > known:
                            self._pending[key] = seen
                    elif len(self._pending) < self._max_entries:
                        self._pending[key] = seen
                    else:
                        dropped += 1
        if dropped:
            metrics.USAGE_ENTRIES_DROPPED.inc(dropped)


def _message(key: _Key, seen: dt.datetime) -> registry_pb2.CertificateUsage:
    fingerprint, frontdoor = key
    return registry_pb2.CertificateUsage(
        fingerprint_sha256=fingerprint,
        frontdoor=frontdoor,
        last_seen_at=timestamp(seen),
    )
