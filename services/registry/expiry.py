"""The expiry monitor: warnings for certificates whose chain is about to expire.

Each frontdoor has warning windows (``FrontdoorSettings.alerts``, by default
30, 14, 7 and 1 days); the platform root, which belongs to no frontdoor, has
the default ones. A chain expires at its earliest notAfter, so a client
certificate warns as its own expiry or its intermediate's or the root's
comes near, whichever is first. Only active certificates warn: superseded
(replaced by a renewal), revoked, held, expired and deleted ones do not.

One leased pass at a time (DESIGN, "Where state lives") looks for
certificates inside a window and claims one notification per certificate
and window in ``expiry_notifications``; the unique constraint on
(certificate, window) makes the claim exactly once, across passes, restarts
and replicas. Only the narrowest window reached is claimed: a certificate
first seen five days before expiry warns once, for the 7-day window, and
the wider windows it skipped never warn.

The sinks, in order:

- the log: one line per notification, right after the claim committed,
  never repeated (at most once: a crash between the commit and the line
  loses the line);
- the webhook: a signed JSON POST, retried with exponential backoff, then a
  dead letter. A claimed notification stays "pending" until the webhook
  accepts it or it is dead-lettered, and later passes deliver pending ones
  again (at least once: a crash after the receiver accepted but before the
  row said so sends it again, with the same ``notification_id``, which
  receivers use to drop the repeat). A pass delivers only after every new
  notification is recorded and logged, four at a time and for a limited
  time, leaving the rest pending for the next pass; stop() abandons the
  deliveries in flight, which stay pending;
- Prometheus: seconds to expiry per certificate inside its largest window,
  counts per frontdoor by window, and counters of the deliveries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import aiohttp
import sqlalchemy as sa
import tenacity
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.common import certificate_facts as facts
from services.common import metrics
from services.common.clock import Clock
from services.common.config import ConfigError, RegistryConfig
from services.common.database import Database
from services.common.errors import InvalidArgument
from services.common.frontdoors import DEFAULT_ALERT_WINDOWS
from services.common.jobs import PeriodicJob
from services.common.leases import Lease
from services.common.logging import get_logger, redact_text
from services.registry.models import (
    CA_KINDS,
    PUBLIC_KINDS,
    ROOT_KINDS,
    CertificateRow,
    ExpiryNotificationRow,
    FrontdoorRow,
    WebhookDeadLetterRow,
)
from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2

LEASE_NAME = "registry.expiry_scan"
SIGNATURE_HEADER = "X-Tessera-Signature"
TIMESTAMP_HEADER = "X-Tessera-Timestamp"
EVENT_TYPE = "tessera.certificate.expiring"
MIN_SECRET_LENGTH = 16
# Longest pause between two webhook attempts.
MAX_BACKOFF_SECONDS = 60.0
# Webhook deliveries in flight at once.
DELIVERY_CONCURRENCY = 4
# How often a pass delivering webhooks looks whether the monitor stops.
_STOP_POLL_SECONDS = 0.1
# The deepest chain followed: root, intermediates, client.
_MAX_CHAIN_DEPTH = 8
# Existing notifications are looked up this many certificates at a time.
_LOOKUP_BATCH = 500
# Expiry warnings claimed in one write transaction.
_CLAIM_BATCH = 500
_DAY = dt.timedelta(days=1)

_log = get_logger(__name__)


# Chains ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ChainExpiry:
    """When a certificate's chain expires and whose notAfter that is."""

    not_valid_after: dt.datetime
    limited_by: str


def chain_expiry(session: Session, row: CertificateRow) -> ChainExpiry:
    """The earliest notAfter of ``row`` and the CA certificates above it.

    Where several recorded CA certificates share the issuing key (a CA
    certificate re-issued for the same key), the chain can be built through
    any of them, so the one valid longest counts. Each CA's chain is looked
    up once per session, so a page of records costs a query per CA, not per
    record.
    """
    own = ChainExpiry(row.not_valid_after, row.fingerprint)
    if row.kind in ROOT_KINDS or row.issuer_key_id == row.subject_key_id:
        return own
    above = _issuer_chain(session, row.issuer_key_id, _MAX_CHAIN_DEPTH)
    if above is not None and above.not_valid_after < own.not_valid_after:
        return above
    return own


def _issuer_chain(session: Session, key_id: str, depth: int) -> ChainExpiry | None:
    """The chain expiry of the CA with ``key_id``; None when none is recorded."""
    known: dict[str, ChainExpiry | None] = session.info.setdefault(
        "tessera.ca_chain_expiry", {}
    )
    if key_id in known:
        return known[key_id]
    # A cycle of cross-signed CAs, or a chain deeper than any Tessera makes,
    # ends here.
    known[key_id] = None
    if depth == 0:
        return None
    issuer = session.scalar(
        sa.select(CertificateRow)
        .where(CertificateRow.subject_key_id == key_id)
        .where(CertificateRow.kind.in_(CA_KINDS))
        .order_by(CertificateRow.not_valid_after.desc())
        .limit(1)
    )
    if issuer is None:
        return None
    earliest = ChainExpiry(issuer.not_valid_after, issuer.fingerprint)
    if issuer.kind not in ROOT_KINDS and issuer.issuer_key_id != key_id:
        above = _issuer_chain(session, issuer.issuer_key_id, depth - 1)
        if above is not None and above.not_valid_after < earliest.not_valid_after:
            earliest = above
    known[key_id] = earliest
    return earliest


def _ca_chain_expiries(session: Session) -> dict[str, ChainExpiry]:
    """Every recorded CA key id with the expiry of the chain through it."""
    rows = session.scalars(
        sa.select(CertificateRow).where(CertificateRow.kind.in_(CA_KINDS))
    ).all()
    by_key: dict[str, CertificateRow] = {}
    for row in rows:
        known = by_key.get(row.subject_key_id)
        if known is None or row.not_valid_after > known.not_valid_after:
            by_key[row.subject_key_id] = row

    expiries: dict[str, ChainExpiry] = {}
    for key_id, row in by_key.items():
        earliest = ChainExpiry(row.not_valid_after, row.fingerprint)
        current = row
        for _ in range(_MAX_CHAIN_DEPTH):
            if current.kind in ROOT_KINDS or current.issuer_key_id == key_id:
                break
            issuer = by_key.get(current.issuer_key_id)
            if issuer is None or issuer is current:
                break
            if issuer.not_valid_after < earliest.not_valid_after:
                earliest = ChainExpiry(issuer.not_valid_after, issuer.fingerprint)
            current = issuer
        expiries[key_id] = earliest
    return expiries


# Webhook ---------------------------------------------------------------------


class WebhookSecret:
    """The HMAC key of the webhook; its repr never shows it."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def sign(self, timestamp: int, body: bytes) -> str:
        """The signature header's value for ``body`` sent at ``timestamp``."""
        return "sha256=" + signature(self._value, timestamp, body)

    def __repr__(self) -> str:
        return "WebhookSecret([redacted])"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256, hex, over ``<timestamp>.<body>``.

    The timestamp is signed with the body so that a recorded request cannot
    be replayed later: receivers refuse timestamps more than a few minutes
    from their own clock.
    """
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def load_webhook_secret(
    config: RegistryConfig, environ: Mapping[str, str]
) -> WebhookSecret:
    """The webhook key from its file (first line) or environment variable."""
    if config.expiry_webhook_secret_file is not None:
        path = Path(config.expiry_webhook_secret_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"expiry_webhook_secret_file {path} cannot be read "
                f"({type(error).__name__}); it holds the webhook's signing key on "
                "its first line"
            ) from None
        value = lines[0].strip() if lines else ""
        where = f"the first line of {path}"
    else:
        name = config.expiry_webhook_secret_env or ""
        value = environ.get(name, "").strip()
        where = f"the environment variable {name}"
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"the webhook signing key in {where} is missing or shorter than "
            f"{MIN_SECRET_LENGTH} characters; write a long random value there, for "
            "example from `openssl rand -hex 32`"
        )
    return WebhookSecret(value.encode("utf-8"))


class DeliveryFailed(Exception):
    """Every attempt to deliver a notification failed."""

    def __init__(self, last_error: str, attempts: int) -> None:
        super().__init__(last_error)
        self.last_error = last_error
        self.attempts = attempts


class _AttemptFailed(Exception):
    """One delivery attempt failed; tenacity decides whether to try again."""


@dataclasses.dataclass(frozen=True)
class WebhookPolicy:
    """How hard the webhook sink tries."""

    timeout: dt.timedelta = dt.timedelta(seconds=10)
    attempts: int = 5
    backoff: dt.timedelta = dt.timedelta(seconds=1)


class WebhookSink:
    """POSTs notifications as signed JSON to one URL."""

    def __init__(
        self,
        url: str,
        secret: WebhookSecret,
        clock: Clock,
        policy: WebhookPolicy = WebhookPolicy(),
    ) -> None:
        self.url = url
        # What dead letters and logs show: never a password in the URL.
        self.shown_url = redact_text(url)
        self._secret = secret
        self._clock = clock
        self._policy = policy

    @property
    def worst_case(self) -> dt.timedelta:
        """The longest one delivery can take, every attempt and pause included."""
        pauses = sum(
            min(self._policy.backoff.total_seconds() * 2**attempt, MAX_BACKOFF_SECONDS)
            for attempt in range(self._policy.attempts - 1)
        )
        return self._policy.timeout * self._policy.attempts + dt.timedelta(
            seconds=pauses
        )

    async def deliver(self, session: aiohttp.ClientSession, body: str) -> int:
        """Deliver ``body``; the number of attempts it took, or DeliveryFailed."""
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self._policy.attempts),
            wait=tenacity.wait_exponential(
                multiplier=self._policy.backoff.total_seconds(),
                max=MAX_BACKOFF_SECONDS,
            ),
            retry=tenacity.retry_if_exception_type(_AttemptFailed),
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._attempt(session, body)
        except _AttemptFailed as error:
            raise DeliveryFailed(str(error), attempts) from None
        return attempts

    async def _attempt(self, session: aiohttp.ClientSession, body: str) -> None:
        encoded = body.encode("utf-8")
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: self._secret.sign(timestamp, encoded),
        }
        try:
            async with session.post(
                self.url,
                data=encoded,
                headers=headers,
                # A redirect would carry the signed body somewhere else.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=self._policy.timeout.total_seconds()
                ),
            ) as response:
                if not 200 <= response.status < 300:
                    raise _AttemptFailed(f"the webhook answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as error:
            metrics.EXPIRY_NOTIFICATIONS.labels(sink="webhook", outcome="failed").inc()
            raise _AttemptFailed(
                redact_text(
                    f"the webhook could not be reached ({type(error).__name__}"
                    f": {error})"
                )
            ) from None
        except _AttemptFailed:
            metrics.EXPIRY_NOTIFICATIONS.labels(sink="webhook", outcome="failed").inc()
            raise


# The monitor ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Candidate:
    certificate_id: int
    fingerprint: str
    serial_number: str
    issuer_key_id: str
    frontdoor: str
    kind: str
    name: str
    subject: str
    not_valid_after: dt.datetime
    chain: ChainExpiry


@dataclasses.dataclass(frozen=True)
class ScanReport:
    """What one pass found and did."""

    # Certificates inside at least one of their windows.
    inside_windows: int
    # Notifications claimed by this pass: (fingerprint, window_days).
    claimed: tuple[tuple[str, int], ...] = ()
    delivered: int = 0
    dead_lettered: int = 0


class ExpiryMonitor:
    """Finds certificates entering their warning windows and notifies once."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        lease: Lease,
        webhook: WebhookSink | None = None,
        delivery_budget: dt.timedelta | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._lease = lease
        self._webhook = webhook
        # How long a pass keeps starting webhook deliveries; None: until
        # every pending notification was tried.
        self._delivery_budget = delivery_budget
        # Set by stop(): deliveries in flight are abandoned (they stay
        # pending for the next process) and no new one starts.
        self._stopping = threading.Event()
        self._job: PeriodicJob | None = None
        # The background job and a caller of run_once share one lease
        # holder, so the lease alone would let them overlap.
        self._running = threading.Lock()
        self._expiry_series: set[tuple[str, str]] = set()
        self._count_series: set[tuple[str, str]] = set()

    # One pass -------------------------------------------------------------

    def run_once(self) -> ScanReport | None:
        """One pass; None when another replica holds the lease."""
        with self._running:
            if not self._lease.acquire():
                self._clear_series()
                return None
            return self._scan()

    def _scan(self) -> ScanReport:
        now = self._clock.now()

        # Step 1: the windows of every frontdoor, and the candidates.
        with self._database.reading() as session:
            windows = _frontdoor_windows(session)
            candidates = _candidates(session, now, windows)
            notified = _notified(session, [c.certificate_id for c in candidates])

        # Step 2: the narrowest window each certificate reached.
        due: list[tuple[_Candidate, int]] = []
        inside: list[tuple[_Candidate, int]] = []
        for candidate in candidates:
            remaining = candidate.chain.not_valid_after - now
            if remaining <= dt.timedelta(0):
                continue
            frontdoor_windows = windows.get(candidate.frontdoor)
            if frontdoor_windows is None:
                # Registered after this pass read the windows (PostgreSQL
                # reads each statement's own snapshot); the next pass has it.
                continue
            reached = [days for days in frontdoor_windows if remaining <= days * _DAY]
            if not reached:
                continue
            narrowest = min(reached)
            inside.append((candidate, narrowest))
            if narrowest not in notified.get(candidate.certificate_id, ()):
                due.append((candidate, narrowest))
        self._report_metrics(inside, windows, now)

        # Step 3: claim, then log; the claim is what makes it exactly once.
        # Claims are written a batch to a transaction, each batch logged once
        # it is committed: one commit a warning made a first pass over a
        # million records take minutes on PostgreSQL.
        claimed: list[tuple[str, int]] = []
        for start in range(0, len(due), _CLAIM_BATCH):
            for candidate, window_days, notification in self._claim(
                due[start : start + _CLAIM_BATCH], now
            ):
                claimed.append((candidate.fingerprint, window_days))
                _log.warning(
                    "certificate chain expires within its warning window",
                    notification_id=notification,
                    fingerprint=candidate.fingerprint,
                    frontdoor=candidate.frontdoor,
                    kind=candidate.kind,
                    name=candidate.name,
                    subject=candidate.subject,
                    window_days=window_days,
                    not_valid_after=candidate.not_valid_after.isoformat(),
                    chain_not_valid_after=candidate.chain.not_valid_after.isoformat(),
                    limited_by=candidate.chain.limited_by,
                )
                metrics.EXPIRY_NOTIFICATIONS.labels(sink="log", outcome="sent").inc()

        # Step 4: the webhook, for the notifications still pending, once
        # every new one above is recorded and logged, so a receiver that
        # hangs delays deliveries but never the detection.
        delivered = dead_lettered = 0
        if self._webhook is not None and not self._stopping.is_set():
            delivered, dead_lettered = asyncio.run(self._deliver_pending(self._webhook))
        return ScanReport(
            inside_windows=len(inside),
            claimed=tuple(claimed),
            delivered=delivered,
            dead_lettered=dead_lettered,
        )

    def _claim(
        self, due: list[tuple[_Candidate, int]], now: dt.datetime
    ) -> list[tuple[_Candidate, int, int]]:
        """Write the notifications of ``due`` in one transaction; those
        written, with their ids. One claimed before (by a replica that took
        the lease over) is left out: the unique constraint on certificate
        and window turns its insert into nothing."""
        if not due:
            return []
        pending = self._webhook is not None
        table = cast(sa.Table, ExpiryNotificationRow.__table__)
        with self._database.writing() as session:
            written = session.execute(
                _insert_ignoring_conflicts(session)(table)
                .on_conflict_do_nothing(
                    index_elements=["certificate_id", "window_days"]
                )
                .returning(table.c.id, table.c.certificate_id, table.c.window_days),
                [
                    {
                        "certificate_id": candidate.certificate_id,
                        "window_days": window_days,
                        "chain_not_valid_after": candidate.chain.not_valid_after,
                        "state": "pending" if pending else "delivered",
                        "payload": "",
                        "created_at": now,
                        "delivered_at": None if pending else now,
                    }
                    for candidate, window_days in due
                ],
            ).all()
            ids = {(row.certificate_id, row.window_days): row.id for row in written}
            claimed = [
                (candidate, window_days, ids[candidate.certificate_id, window_days])
                for candidate, window_days in due
                if (candidate.certificate_id, window_days) in ids
            ]
            if claimed:
                # The body names the notification, so it is written once
                # the id is known.
                session.execute(
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("notification"))
                    .values(payload=sa.bindparam("body")),
                    [
                        {
                            "notification": notification,
                            "body": _payload(notification, candidate, window_days, now),
                        }
                        for candidate, window_days, notification in claimed
                    ],
                )
        return claimed

    async def _deliver_pending(self, webhook: WebhookSink) -> tuple[int, int]:
        """Deliver pending notifications, oldest first, a few at a time.

        New deliveries start until the pass's delivery budget is spent; the
        ones in flight then finish (each within the webhook's worst case)
        and the rest stay pending for the next pass. stop() abandons the
        ones in flight: they stay pending too, for the next process.
        """
        with self._database.reading() as session:
            pending = session.execute(
                sa.select(ExpiryNotificationRow.id, ExpiryNotificationRow.payload)
                .where(ExpiryNotificationRow.state == "pending")
                .order_by(ExpiryNotificationRow.id)
            ).all()
        if not pending:
            return 0, 0
        loop = asyncio.get_running_loop()
        deadline = (
            None
            if self._delivery_budget is None
            else loop.time() + self._delivery_budget.total_seconds()
        )
        queue = iter(pending)
        outcomes = {"delivered": 0, "dead_lettered": 0}

        async def deliver_some(client: aiohttp.ClientSession) -> None:
            # The workers share one iterator, so each notification is taken once.
            for notification_id, payload in queue:
                if self._stopping.is_set():
                    return
                if deadline is not None and loop.time() >= deadline:
                    return
                # Renewed before each delivery, so that no other replica
                # takes over and sends the same notification meanwhile.
                if not self._lease.acquire():
                    return
                try:
                    await webhook.deliver(client, payload)
                except DeliveryFailed as failure:
                    self._dead_letter(notification_id, payload, webhook, failure)
                    outcomes["dead_lettered"] += 1
                    continue
                self._mark_delivered(notification_id)
                outcomes["delivered"] += 1

        async with aiohttp.ClientSession() as client:
            workers = [
                asyncio.create_task(deliver_some(client))
                for _ in range(min(DELIVERY_CONCURRENCY, len(pending)))
            ]
            running: set[asyncio.Task[None]] = set(workers)
            while running:
                _, running = await asyncio.wait(running, timeout=_STOP_POLL_SECONDS)
                if running and self._stopping.is_set():
                    for worker in running:
                        worker.cancel()
                    await asyncio.wait(running)
                    break
            for worker in workers:
                if not worker.cancelled():
                    # A database failure fails the pass; the next one retries.
                    worker.result()
        return outcomes["delivered"], outcomes["dead_lettered"]

    def _mark_delivered(self, notification_id: int) -> None:
        with self._database.writing() as session:
            session.execute(
                sa.update(ExpiryNotificationRow)
                .where(ExpiryNotificationRow.id == notification_id)
                .values(state="delivered", delivered_at=self._clock.now())
            )
        metrics.EXPIRY_NOTIFICATIONS.labels(sink="webhook", outcome="sent").inc()

    def _dead_letter(
        self,
        notification_id: int,
        payload: str,
        webhook: WebhookSink,
        failure: DeliveryFailed,
    ) -> None:
        with self._database.writing() as session:
            session.add(
                WebhookDeadLetterRow(
                    notification_id=notification_id,
                    url=webhook.shown_url,
                    payload=payload,
                    last_error=failure.last_error,
                    attempts=failure.attempts,
                    created_at=self._clock.now(),
                )
            )
            session.execute(
                sa.update(ExpiryNotificationRow)
                .where(ExpiryNotificationRow.id == notification_id)
                .values(state="dead_lettered")
            )
        metrics.EXPIRY_NOTIFICATIONS.labels(
            sink="webhook", outcome="dead_lettered"
        ).inc()
        _log.error(
            "expiry notification dead-lettered after its last webhook attempt",
            notification_id=notification_id,
            url=webhook.shown_url,
            attempts=failure.attempts,
            error=failure.last_error,
        )

    # Metrics --------------------------------------------------------------

    def _report_metrics(
        self,
        inside: list[tuple[_Candidate, int]],
        windows: Mapping[str, tuple[int, ...]],
        now: dt.datetime,
    ) -> None:
        expiry_series: set[tuple[str, str]] = set()
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for frontdoor, frontdoor_windows in windows.items():
            for days in frontdoor_windows:
                counts[(frontdoor, str(days))] = 0
        for candidate, window_days in inside:
            labels = (candidate.fingerprint, candidate.frontdoor)
            expiry_series.add(labels)
            metrics.CERTIFICATE_EXPIRY_SECONDS.labels(*labels).set(
                (candidate.chain.not_valid_after - now).total_seconds()
            )
            counts[(candidate.frontdoor, str(window_days))] += 1
        for labels in self._expiry_series - expiry_series:
            metrics.CERTIFICATE_EXPIRY_SECONDS.remove(*labels)
        for labels, count in counts.items():
            metrics.EXPIRING_CERTIFICATES.labels(*labels).set(count)
        for labels in self._count_series - set(counts):
            metrics.EXPIRING_CERTIFICATES.remove(*labels)
        self._expiry_series = expiry_series
        self._count_series = set(counts)

    def _clear_series(self) -> None:
        """Drop this process's series: the lease holder reports them now."""
        for labels in self._expiry_series:
            metrics.CERTIFICATE_EXPIRY_SECONDS.remove(*labels)
        for labels in self._count_series:
            metrics.EXPIRING_CERTIFICATES.remove(*labels)
        self._expiry_series = set()
        self._count_series = set()

    # Background loop ----------------------------------------------------

    def start(self, interval: dt.timedelta) -> None:
        """Run a pass every ``interval``."""
        self._stopping.clear()
        self._job = PeriodicJob("expiry-scan", interval, self._pass, _pass_failed)
        self._job.start()

    def stop(self) -> None:
        """End the job, then hand the lease on so a replica continues at once.

        Webhook deliveries in progress are abandoned; their notifications
        stay pending and the next lease holder delivers them.
        """
        self._stopping.set()
        if self._job is not None:
            self._job.stop(timeout_seconds=30)
        with self._running:
            self._clear_series()
            self._lease.release()

    def _pass(self) -> None:
        report = self.run_once()
        if report is not None and report.dead_lettered:
            _log.warning(
                "expiry notifications could not be delivered to the webhook",
                dead_lettered=report.dead_lettered,
            )


def _pass_failed(error: Exception) -> None:
    # Claimed notifications stay pending; the next pass delivers them.
    _log.error("expiry scan pass failed", exc_info=error)


def lease_duration(interval: dt.timedelta, webhook: WebhookSink | None) -> dt.timedelta:
    """A lease that outlasts the gap between passes and one whole delivery."""
    longest = max(interval * 3, dt.timedelta(minutes=1))
    if webhook is not None:
        longest = max(longest, webhook.worst_case * 2)
    return longest


def open_monitor(
    database: Database,
    clock: Clock,
    config: RegistryConfig,
    environ: Mapping[str, str] | None = None,
) -> ExpiryMonitor:
    """The monitor the configuration describes; ConfigError for a bad secret."""
    webhook = None
    if config.expiry_webhook_url:
        secret = load_webhook_secret(config, os.environ if environ is None else environ)
        webhook = WebhookSink(
            config.expiry_webhook_url,
            secret,
            clock,
            WebhookPolicy(
                timeout=dt.timedelta(seconds=config.expiry_webhook_timeout_seconds),
                attempts=config.expiry_webhook_attempts,
                backoff=dt.timedelta(seconds=config.expiry_webhook_backoff_seconds),
            ),
        )
    interval = dt.timedelta(seconds=config.expiry_scan_seconds)
    lease = Lease(database, LEASE_NAME, clock, lease_duration(interval, webhook))
    budget = interval / 2
    if config.expiry_webhook_budget_seconds is not None:
        budget = min(budget, dt.timedelta(seconds=config.expiry_webhook_budget_seconds))
    return ExpiryMonitor(database, clock, lease, webhook, budget)


def _insert_ignoring_conflicts(session: Session) -> Any:
    """The INSERT construct of the session's database, whose
    ``on_conflict_do_nothing`` SQLite and PostgreSQL both have."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def _frontdoor_windows(session: Session) -> dict[str, tuple[int, ...]]:
    """Each frontdoor's windows, widest first; "" (the root) has the defaults."""
    windows: dict[str, tuple[int, ...]] = {"": DEFAULT_ALERT_WINDOWS}
    for name, settings in session.execute(
        sa.select(FrontdoorRow.name, FrontdoorRow.settings)
    ):
        alerts = common_pb2.FrontdoorSettings.FromString(settings).alerts
        chosen = tuple(alerts.window_days) or DEFAULT_ALERT_WINDOWS
        windows[name] = tuple(sorted(chosen, reverse=True))
    return windows


def _candidates(
    session: Session, now: dt.datetime, windows: Mapping[str, tuple[int, ...]]
) -> list[_Candidate]:
    """Active certificates whose chain expires within the widest window of any
    frontdoor; each is checked against its own frontdoor's windows later."""
    horizon = now + max(max(days) for days in windows.values()) * _DAY
    ca_expiries = _ca_chain_expiries(session)
    near_cas = [
        key_id
        for key_id, expiry in ca_expiries.items()
        if expiry.not_valid_after <= horizon
    ]
    names: dict[int, str] = dict(
        session.execute(sa.select(FrontdoorRow.id, FrontdoorRow.name)).all()
    )
    near = CertificateRow.not_valid_after <= horizon
    if near_cas:
        near = sa.or_(near, CertificateRow.issuer_key_id.in_(near_cas))
    rows = session.scalars(
        sa.select(CertificateRow)
        .where(CertificateRow.status == "active")
        .where(CertificateRow.not_valid_after > now)
        # Only revoked or expired certificates can be deleted, but the rule
        # lives in the inventory; a deleted one never warns, whatever its
        # status or the clock says.
        .where(CertificateRow.deleted_at.is_(None))
        .where(near)
        .order_by(CertificateRow.id)
    )
    found = []
    for row in rows:
        chain = ChainExpiry(row.not_valid_after, row.fingerprint)
        issuer = ca_expiries.get(row.issuer_key_id)
        if (
            row.kind not in ROOT_KINDS
            and issuer is not None
            and issuer.not_valid_after < chain.not_valid_after
        ):
            chain = issuer
        if row.kind in CA_KINDS and row.subject_key_id in ca_expiries:
            own = ca_expiries[row.subject_key_id]
            if own.not_valid_after < chain.not_valid_after:
                chain = own
        found.append(
            _Candidate(
                certificate_id=row.id,
                fingerprint=row.fingerprint,
                serial_number=row.serial_number,
                issuer_key_id=row.issuer_key_id,
                frontdoor=names.get(row.frontdoor_id, "") if row.frontdoor_id else "",
                kind=PUBLIC_KINDS[row.kind],
                name=row.name,
                subject=row.subject,
                not_valid_after=row.not_valid_after,
                chain=chain,
            )
        )
    return found


def _notified(session: Session, certificate_ids: Iterable[int]) -> dict[int, set[int]]:
    """The windows already claimed for each of these certificates."""
    ids = list(certificate_ids)
    claimed: dict[int, set[int]] = defaultdict(set)
    for start in range(0, len(ids), _LOOKUP_BATCH):
        batch = ids[start : start + _LOOKUP_BATCH]
        for certificate_id, window_days in session.execute(
            sa.select(
                ExpiryNotificationRow.certificate_id, ExpiryNotificationRow.window_days
            ).where(ExpiryNotificationRow.certificate_id.in_(batch))
        ):
            claimed[certificate_id].add(window_days)
    return claimed


def _payload(
    notification_id: int, candidate: _Candidate, window_days: int, now: dt.datetime
) -> str:
    """The JSON body receivers get; fixed at the claim, so redeliveries match."""
    return json.dumps(
        {
            "type": EVENT_TYPE,
            "notification_id": notification_id,
            "fingerprint_sha256": candidate.fingerprint,
            "serial_number": candidate.serial_number,
            "issuer_key_id": candidate.issuer_key_id,
            "frontdoor": candidate.frontdoor,
            "kind": candidate.kind,
            "name": candidate.name,
            "subject": candidate.subject,
            "window_days": window_days,
            "not_valid_after": candidate.not_valid_after.isoformat(),
            "chain_not_valid_after": candidate.chain.not_valid_after.isoformat(),
            "limited_by": candidate.chain.limited_by,
            "detected_at": now.isoformat(),
        },
        sort_keys=True,
    )


# Operator views ----------------------------------------------------------------

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
_KIND_VALUES = {
    "client": common_pb2.CERTIFICATE_KIND_CLIENT,
    "intermediate": common_pb2.CERTIFICATE_KIND_INTERMEDIATE,
    "root": common_pb2.CERTIFICATE_KIND_ROOT,
}


def _check_limit(limit: int) -> int:
    if limit > MAX_LIST_LIMIT:
        raise InvalidArgument(
            f"limit may be at most {MAX_LIST_LIMIT}; page with before_id"
        )
    return limit or DEFAULT_LIST_LIMIT


class ExpiryRecords:
    """Reads the monitor's tables for operators."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def notifications(
        self, frontdoor: str, limit: int, before_id: int
    ) -> list[registry_pb2.ExpiryNotification]:
        """Notifications, newest first."""
        limit = _check_limit(limit)
        with self._database.reading() as session:
            statement = (
                sa.select(ExpiryNotificationRow, CertificateRow, FrontdoorRow.name)
                .join(
                    CertificateRow,
                    CertificateRow.id == ExpiryNotificationRow.certificate_id,
                )
                .outerjoin(FrontdoorRow, FrontdoorRow.id == CertificateRow.frontdoor_id)
            )
            if frontdoor:
                statement = statement.where(FrontdoorRow.name == frontdoor)
            if before_id:
                statement = statement.where(ExpiryNotificationRow.id < before_id)
            rows = session.execute(
                statement.order_by(ExpiryNotificationRow.id.desc()).limit(limit)
            ).all()
            views = []
            for notification, certificate, name in rows:
                view = registry_pb2.ExpiryNotification(
                    id=notification.id,
                    fingerprint_sha256=certificate.fingerprint,
                    frontdoor=name or "",
                    kind=_KIND_VALUES[PUBLIC_KINDS[certificate.kind]],
                    window_days=notification.window_days,
                    chain_not_valid_after=facts.timestamp(
                        notification.chain_not_valid_after
                    ),
                    state=notification.state,
                    created_at=facts.timestamp(notification.created_at),
                )
                if notification.delivered_at is not None:
                    view.delivered_at.CopyFrom(
                        facts.timestamp(notification.delivered_at)
                    )
                views.append(view)
            return views

    def dead_letters(self, limit: int, before_id: int) -> list[registry_pb2.DeadLetter]:
        """Dead letters, newest first."""
        limit = _check_limit(limit)
        with self._database.reading() as session:
            statement = sa.select(WebhookDeadLetterRow)
            if before_id:
                statement = statement.where(WebhookDeadLetterRow.id < before_id)
            rows = session.scalars(
                statement.order_by(WebhookDeadLetterRow.id.desc()).limit(limit)
            ).all()
            return [
                registry_pb2.DeadLetter(
                    id=row.id,
                    notification_id=row.notification_id,
                    url=row.url,
                    payload=row.payload,
                    last_error=row.last_error,
                    attempts=row.attempts,
                    created_at=facts.timestamp(row.created_at),
                )
                for row in rows
            ]
