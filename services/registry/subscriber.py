"""Following the registry's revocation stream from the outside: what
validators, proxies, sidecars and ``tessera revocations watch`` do.

A ``RevocationSubscriber`` calls WatchRevocations from its position, hands
every entry to a listener in sequence order, and after any break (registry
restarted, stream cut off as too slow, network lost, nothing heard for a few
heartbeat intervals) calls again from the last sequence it handed over, so
the listener sees each entry once and none is missed.

Reconnecting is left to libraries: gRPC waits for the channel to be ready
(``wait_for_ready``, with the channel's own reconnect backoff), and tenacity
spaces out attempts that fail again at once. A stream that stayed up for a
while resumes straight away, with the backoff started afresh.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Protocol

import grpc
import tenacity

from tessera.common.v1 import common_pb2
from tessera.registry.v1 import registry_pb2, registry_pb2_grpc

# Silence allowed before the first heartbeat tells the registry's interval.
_DEFAULT_SILENCE = dt.timedelta(seconds=15)
# Heartbeat intervals of silence after which a stream counts as dead.
_SILENT_INTERVALS = 3
# A stream that lived this long resumes at once when it breaks.
_HEALTHY_AFTER = dt.timedelta(seconds=5)


class RevocationListener(Protocol):
    """What a subscriber tells its owner."""

    def revocation(self, revocation: common_pb2.Revocation, live: bool) -> None:
        """One log entry, in sequence order. ``live`` is False while the
        subscriber replays the log it found at its first start."""

    def heartbeat(self, heartbeat: registry_pb2.WatchHeartbeat) -> None:
        """The stream is alive and every entry up to the log's end was handed
        over."""

    def stream_broken(self, error: grpc.RpcError | None, resume_from: int) -> None:
        """The stream ended (``error`` None: the registry closed it cleanly);
        the subscriber calls again from ``resume_from``."""


class _Broken(Exception):
    """A stream broke soon after it started; the next call waits first."""


class RevocationSubscriber:
    """Follows WatchRevocations on a channel, resuming after every break."""

    def __init__(
        self,
        channel: grpc.Channel,
        listener: RevocationListener,
        from_sequence: int = 0,
        max_backoff: dt.timedelta = dt.timedelta(seconds=5),
        start_behind: int | None = None,
    ) -> None:
        """Follow from ``from_sequence``; with ``start_behind``, the first call
        starts that many entries before the log's end instead (when that is
        later), for subscribers that need recent entries only."""
        if from_sequence < 0:
            raise ValueError("from_sequence must be 0 or a sequence number")
        if start_behind is not None and start_behind < 0:
            raise ValueError("start_behind must be 0 or more entries")
        self._start_behind = start_behind
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)
        self._listener = listener
        self._max_backoff = max_backoff.total_seconds()
        self._position = from_sequence
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._silence = _DEFAULT_SILENCE.total_seconds()
        self._last_heard = time.monotonic()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    @property
    def position(self) -> int:
        """The last sequence handed to the listener (or the starting point)."""
        with self._lock:
            return self._position

    def wait_caught_up(self, timeout: float) -> bool:
        """Whether the subscriber reached the log's end once within ``timeout``."""
        return self._caught_up.wait(timeout)

    def start(self) -> None:
        """Follow the stream in background threads until ``stop``."""
        self._thread = threading.Thread(
            target=self.run, name="revocation-subscriber", daemon=True
        )
        self._watchdog = threading.Thread(
            target=self._watch_silence, name="revocation-silence", daemon=True
        )
        self._thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        """Cancel the stream and end the threads."""
        self._stop.set()
        self._cancel_call()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout=5)

    def run(self) -> None:
        """Follow the stream in this thread until ``stop``."""
        while not self._stop.is_set():
            retrying = tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Broken),
                wait=tenacity.wait_exponential_jitter(
                    multiplier=0.05, max=self._max_backoff, jitter=0.1
                ),
                stop=tenacity.stop_when_event_set(self._stop),
                sleep=self._pause,
                reraise=True,
            )
            try:
                retrying(self._follow)
            except _Broken:
                return  # stopped while waiting to call again

    def _pause(self, seconds: float) -> None:
        """tenacity's sleep, cut short by ``stop``."""
        self._stop.wait(seconds)

    def _follow(self) -> None:
        """One call of WatchRevocations, until it ends."""
        started = time.monotonic()
        if self._start_behind is not None:
            self._skip_to_recent(self._start_behind)
            self._start_behind = None
        request = registry_pb2.WatchRevocationsRequest(from_sequence=self.position)
        call = self._stub.WatchRevocations(request, wait_for_ready=True)
        with self._lock:
            self._call = call
            self._last_heard = time.monotonic()
        if self._stop.is_set():
            call.cancel()
        error: grpc.RpcError | None = None
        try:
            for event in call:
                self._heard()
                self._handle(event)
        except grpc.RpcError as failure:
            error = failure
        except _OutOfOrder:
            call.cancel()
        finally:
            with self._lock:
                self._call = None
        if self._stop.is_set():
            return
        self._listener.stream_broken(error, self.position)
        if time.monotonic() - started < _HEALTHY_AFTER.total_seconds():
            raise _Broken()

    def _skip_to_recent(self, behind: int) -> None:
        try:
            page = self._stub.ListRevocations(
                registry_pb2.ListRevocationsRequest(limit=1),
                wait_for_ready=True,
                timeout=_DEFAULT_SILENCE.total_seconds(),
            )
        except grpc.RpcError as error:
            if self._stop.is_set():
                return
            self._listener.stream_broken(error, self.position)
            raise _Broken() from None
        with self._lock:
            self._position = max(self._position, page.last_sequence - behind)

    def _handle(self, event: registry_pb2.RevocationEvent) -> None:
        if event.HasField("heartbeat"):
            interval = event.heartbeat.interval.ToTimedelta().total_seconds()
            with self._lock:
                if interval > 0:
                    self._silence = interval * _SILENT_INTERVALS
            self._caught_up.set()
            self._listener.heartbeat(event.heartbeat)
            return
        if not event.HasField("revocation"):
            return
        revocation = event.revocation
        with self._lock:
            expected = self._position + 1
        if revocation.sequence < expected:
            return  # already handed over; the registry never sends it twice
        if revocation.sequence > expected:
            # The registry never skips; should it, ask again from here
            # rather than hand over a log with a hole.
            raise _OutOfOrder(
                f"the registry sent entry {revocation.sequence} after {expected - 1}"
            )
        self._listener.revocation(revocation, live=self._caught_up.is_set())
        with self._lock:
            self._position = revocation.sequence

    def _heard(self) -> None:
        with self._lock:
            self._last_heard = time.monotonic()

    def _cancel_call(self) -> None:
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def _watch_silence(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                silent = time.monotonic() - self._last_heard
                limit = self._silence
                call = self._call
            if call is not None and silent > limit:
                call.cancel()


class _OutOfOrder(Exception):
    """The registry broke its promise of order; treated as a broken stream."""
