"""WatchRevocations: the revocation log as a stream that subscribers resume
without gaps (DESIGN, "Revocation, end to end", step 4).

A stream first replays the log after the subscriber's ``from_sequence`` from
the database, in batches, then delivers new entries from the revocation bus.
It subscribes to the bus *before* it reads the backlog, so an entry that
commits meanwhile is in the backlog, in the bus buffer, or both. From then
on the stream's position is the last sequence it sent: an entry at or below
it is a duplicate and dropped; an entry beyond the next one makes the stream
read the missing entries from the database first. Nothing is skipped, so a
subscriber that resumes from the last sequence it applied misses nothing.

Heartbeats tell a quiet log from a dead stream. One follows the backlog, and
another whenever nothing was sent for the heartbeat interval; before each,
the stream reads the log's end and sends what the bus did not bring (a
message lost while Redis was away, or an entry committed by a registry that
crashed before it published).

The registry never buffers without bound for a subscriber. Each stream's bus
buffer has a fixed size. While the backlog is replayed an overflow costs
nothing (the entries are in the database, and the stream re-reads them);
once the stream is live, an overflow means the subscriber reads more slowly
than revocations arrive, and the stream ends with RESOURCE_EXHAUSTED naming
the sequence to resume from. A subscriber that stopped reading altogether
leaves the stream blocked in a send; it is cancelled after a grace period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Protocol

from google.protobuf import duration_pb2

from services.common import metrics
from services.common.certificate_facts import timestamp
from services.common.clock import Clock
from services.common.errors import (
    ErrorKind,
    InvalidArgument,
    ResourceExhausted,
    TesseraError,
    Unavailable,
)
from services.registry.revocation_bus import (
    RevocationBus,
    Subscription,
    TooManySubscribers,
)
from services.registry.store import MAX_SEQUENCE, RegistryStore
from tessera.registry.v1 import registry_pb2

_Events = Generator[registry_pb2.RevocationEvent, None, int]


class StreamContext(Protocol):
    """What a stream needs from its RPC (grpc.ServicerContext has it)."""

    def is_active(self) -> bool: ...

    def add_callback(self, callback: Callable[[], None]) -> bool: ...

    def cancel(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class WatchLimits:
    """How streams behave; ``services.common.config.RegistryConfig`` sets them."""

    # Longest silence on a stream; a heartbeat fills it.
    heartbeat: dt.timedelta = dt.timedelta(seconds=5)
    # New entries buffered per stream before a live stream is cut off.
    max_pending: int = 10_000
    # How long a cut-off stream may stay blocked sending to a subscriber
    # that stopped reading before the RPC is cancelled.
    stall_grace: dt.timedelta = dt.timedelta(seconds=10)
    # Entries read from the database at a time.
    batch_size: int = 500


class DamagedLog(TesseraError):
    """The log lacks an entry below one it holds; sequences are gap-free by
    construction, so the database was damaged or edited."""

    kind = ErrorKind.INTERNAL


class RevocationWatch:
    """Serves WatchRevocations streams from the log and the bus."""

    def __init__(
        self,
        store: RegistryStore,
        bus: RevocationBus,
        clock: Clock,
        limits: WatchLimits | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._limits = limits or WatchLimits()

    def stream(
        self, from_sequence: int, context: StreamContext
    ) -> Iterator[registry_pb2.RevocationEvent]:
        """Entries after ``from_sequence``, then new ones, with heartbeats."""
        if from_sequence < 0:
            raise InvalidArgument(
                f"from_sequence {from_sequence} is negative; send 0 for the whole log "
                "or the last sequence you applied"
            )
        if from_sequence > MAX_SEQUENCE:
            raise InvalidArgument(
                f"from_sequence {from_sequence} is larger than any sequence the log "
                f"can reach ({MAX_SEQUENCE}); send 0 for the whole log or the last "
                "sequence you applied"
            )

        state = _StreamState(context, self._limits.stall_grace)
        try:
            subscription = self._bus.subscribe(
                self._limits.max_pending, state.on_overflow
            )
        except TooManySubscribers as error:
            raise ResourceExhausted(
                f"{error}; connect to another registry replica, try again later, or "
                "raise registry.watch_max_subscribers"
            ) from None
        context.add_callback(subscription.close)
        metrics.REVOCATION_WATCHERS.inc()
        try:
            yield from self._serve(from_sequence, subscription, state)
        finally:
            state.finished.set()
            self._bus.unsubscribe(subscription)
            metrics.REVOCATION_WATCHERS.dec()

    def _serve(
        self, cursor: int, subscription: Subscription, state: _StreamState
    ) -> Iterator[registry_pb2.RevocationEvent]:
        # Step 1: the backlog. The bus buffer may overflow meanwhile; its
        # entries are in the log, so read the log again until it did not.
        cursor = yield from self._replay(cursor)
        while subscription.overflowed:
            subscription.reset()
            cursor = yield from self._replay(cursor)
        cursor = yield from self._heartbeat(cursor)
        state.live = True

        # Step 2: live entries from the bus, in order, without repeats.
        interval = self._limits.heartbeat.total_seconds()
        quiet_until = time.monotonic() + interval
        while True:
            revocation = subscription.take(quiet_until - time.monotonic())
            if subscription.closed_by is not None:
                if not state.context.is_active():
                    return
                raise Unavailable(
                    f"{subscription.closed_by}; reconnect with from_sequence={cursor} "
                    "to resume"
                )
            if subscription.overflowed:
                raise ResourceExhausted(
                    f"this subscriber fell more than {self._limits.max_pending} "
                    "revocations behind; reconnect with "
                    f"from_sequence={cursor} to resume"
                )
            if revocation is None:
                cursor = yield from self._heartbeat(cursor)
            elif revocation.sequence <= cursor:
                continue
            elif revocation.sequence == cursor + 1:
                yield registry_pb2.RevocationEvent(revocation=revocation)
                cursor = revocation.sequence
            else:
                cursor = yield from self._replay(cursor, up_to=revocation.sequence)
            quiet_until = time.monotonic() + interval

    def _replay(self, cursor: int, up_to: int | None = None) -> _Events:
        """Send the log's entries after ``cursor`` (up to ``up_to``, else to
        the end); the new position."""
        while True:
            batch = self._store.revocations_after(
                cursor, self._limits.batch_size, up_to
            )
            for revocation in batch:
                if revocation.sequence != cursor + 1:
                    raise DamagedLog(
                        f"the revocation log has no entry {cursor + 1} although it "
                        f"has entry {revocation.sequence}; the registry's database "
                        "was damaged or edited"
                    )
                yield registry_pb2.RevocationEvent(revocation=revocation)
                cursor = revocation.sequence
            if len(batch) < self._limits.batch_size:
                return cursor

    def _heartbeat(self, cursor: int) -> _Events:
        """Catch up with the log's end, then say so."""
        last = self._store.last_sequence()
        if last > cursor:
            cursor = yield from self._replay(cursor, up_to=last)
        interval = duration_pb2.Duration()
        interval.FromTimedelta(self._limits.heartbeat)
        yield registry_pb2.RevocationEvent(
            heartbeat=registry_pb2.WatchHeartbeat(
                last_sequence=last,
                interval=interval,
                sent_at=timestamp(self._clock.now()),
            )
        )
        return cursor


class _StreamState:
    """A stream's phase, and the stall watchdog of its live phase."""

    def __init__(self, context: StreamContext, stall_grace: dt.timedelta) -> None:
        self.context = context
        self.live = False
        self.finished = threading.Event()
        self._stall_grace = stall_grace.total_seconds()

    def on_overflow(self) -> None:
        """Called by the bus when the buffer first overflows."""
        if not self.live:
            return
        watchdog = threading.Thread(
            target=self._cancel_if_stalled, name="watch-stall", daemon=True
        )
        watchdog.start()

    def _cancel_if_stalled(self) -> None:
        # A stream that can still send ends itself with RESOURCE_EXHAUSTED;
        # one stuck in a send to a subscriber that stopped reading cannot.
        if not self.finished.wait(self._stall_grace):
            self.context.cancel()
