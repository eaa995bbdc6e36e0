"""Fan-out of new revocation-log entries to the registry's WatchRevocations
streams (DESIGN, "Revocation, end to end", step 4).

The registry process that commits a revocation publishes the entry; every
registry process hands it to the streams it serves. With Redis the entries
travel over a pub/sub channel, so the subscribers of every replica hear about
a revocation that any replica committed; without Redis (the embedded default,
one process) the bus is in-process.

The bus is the fast path, not the record. A published entry may be lost
(Redis down, a crash between commit and publish) or overtaken (two commits
published in the other order), so streams de-duplicate by sequence, fill
gaps from the database and look at the log's end on every heartbeat
(``services.registry.watch``).

Each stream reads from its own bounded buffer. The bus never waits for a
stream: when a buffer is full it is marked overflowed and further entries
for it are dropped, and the stream decides what that means.
"""

from __future__ import annotations

import abc
import collections
import threading
from collections.abc import Callable

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from services.common.errors import Unavailable
from services.common.logging import get_logger
from tessera.common.v1 import common_pb2

# One channel per installation (per Redis database); the messages are
# serialized tessera.common.v1.Revocation entries.
REVOCATION_LOG_CHANNEL = "tessera:events:revocation-log"
_LISTEN_POLL_SECONDS = 0.25
_log = get_logger(__name__)


class BusUnavailable(Unavailable):
    """The bus cannot carry an entry now; streams find it in the log later."""


class Subscription:
    """New log entries for one stream, in a buffer of bounded size."""

    def __init__(
        self, capacity: int, on_overflow: Callable[[], None] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("a subscription must hold at least one entry")
        self._capacity = capacity
        self._on_overflow = on_overflow
        self._entries: collections.deque[common_pb2.Revocation] = collections.deque()
        self._ready = threading.Condition()
        self._overflowed = False
        self._nudged = False
        self.closed_by: str | None = None

    @property
    def overflowed(self) -> bool:
        """Whether an entry was dropped because the buffer was full."""
        with self._ready:
            return self._overflowed

    def offer(self, revocation: common_pb2.Revocation) -> None:
        """Buffer an entry; never blocks, drops it when the buffer is full."""
        with self._ready:
            if self.closed_by is not None:
                return
            if len(self._entries) >= self._capacity:
                first = not self._overflowed
                self._overflowed = True
                self._ready.notify_all()
            else:
                first = False
                self._entries.append(revocation)
                self._ready.notify_all()
        if first and self._on_overflow is not None:
            self._on_overflow()

    def nudge(self) -> None:
        """Ask the stream to compare its position with the log's end now."""
        with self._ready:
            self._nudged = True
            self._ready.notify_all()

    def take(self, timeout: float) -> common_pb2.Revocation | None:
        """The next buffered entry; None after ``timeout`` seconds, on a nudge,
        on overflow and once closed."""
        with self._ready:
            self._ready.wait_for(
                lambda: (
                    bool(self._entries)
                    or self._nudged
                    or self._overflowed
                    or self.closed_by is not None
                ),
                timeout=max(timeout, 0.0),
            )
            self._nudged = False
            if self._overflowed or self.closed_by is not None or not self._entries:
                return None
            return self._entries.popleft()

    def reset(self) -> None:
        """Forget buffered entries and an overflow, before re-reading the log."""
        with self._ready:
            self._entries.clear()
            self._overflowed = False

    def close(self, reason: str = "the stream ended") -> None:
        """Stop buffering and wake the stream; the first reason given stays."""
        with self._ready:
            if self.closed_by is None:
                self.closed_by = reason
            self._entries.clear()
            self._ready.notify_all()


class TooManySubscribers(Exception):
    """The bus already feeds as many streams as it may."""


class RevocationBus(abc.ABC):
    """Delivers published log entries to every subscription of this process."""

    def __init__(self, max_subscriptions: int) -> None:
        self._max_subscriptions = max_subscriptions
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()
        self._closed = False

    def subscribe(
        self, capacity: int, on_overflow: Callable[[], None] | None = None
    ) -> Subscription:
        """A new subscription; TooManySubscribers when the bus is full."""
        subscription = Subscription(capacity, on_overflow)
        with self._lock:
            if self._closed:
                subscription.close(_CLOSING)
                return subscription
            if len(self._subscriptions) >= self._max_subscriptions:
                raise TooManySubscribers(
                    f"this registry already serves {self._max_subscriptions} "
                    "revocation watchers"
                )
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to a subscription."""
        subscription.close()
        with self._lock:
            self._subscriptions.discard(subscription)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    @abc.abstractmethod
    def publish(self, revocation: common_pb2.Revocation) -> None:
        """Announce a committed entry to the streams of every registry process."""

    def close(self) -> None:
        """Close every subscription, telling its stream the registry stops."""
        with self._lock:
            self._closed = True
            subscriptions = list(self._subscriptions)
            self._subscriptions.clear()
        for subscription in subscriptions:
            subscription.close(_CLOSING)

    def _deliver(self, revocation: common_pb2.Revocation) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.offer(revocation)

    def _nudge_all(self) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.nudge()


_CLOSING = "the registry is shutting down"


class LocalRevocationBus(RevocationBus):
    """The bus of the embedded default: one process, no Redis."""

    def publish(self, revocation: common_pb2.Revocation) -> None:
        self._deliver(revocation)


class RedisRevocationBus(RevocationBus):
    """The bus over a Redis pub/sub channel, shared by every registry process.

    Entries this process publishes reach its own streams at once as well;
    the copy that comes back over Redis is then a duplicate the streams drop.
    """

    def __init__(
        self, url: str, max_subscriptions: int, timeout_seconds: float = 0.5
    ) -> None:
        super().__init__(max_subscriptions)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.01), retries=2),
        )
        # The listener's connection: reads may wait, and on a lost connection
        # redis-py reconnects with backoff and subscribes again.
        self._listener_client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=5,
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries=5),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, name="revocation-bus", daemon=True
        )
        self._thread.start()

    def publish(self, revocation: common_pb2.Revocation) -> None:
        self._deliver(revocation)
        try:
            self._client.publish(REVOCATION_LOG_CHANNEL, revocation.SerializeToString())
        except redis.RedisError as error:
            raise BusUnavailable(f"Redis cannot be reached: {error}") from error

    def close(self) -> None:
        super().close()
        self._stop.set()
        self._thread.join(timeout=_LISTEN_POLL_SECONDS * 3)
        self._client.close()
        self._listener_client.close()

    def _listen(self) -> None:
        pubsub = self._listener_client.pubsub()
        failing = False
        while not self._stop.is_set():
            try:
                if not pubsub.subscribed:
                    pubsub.subscribe(REVOCATION_LOG_CHANNEL)
                message = pubsub.get_message(timeout=_LISTEN_POLL_SECONDS)
            except (redis.RedisError, OSError) as error:
                # redis-py has retried with backoff; entries published while
                # the channel was lost are in the log, where the streams
                # find them at their next look at the log's end.
                if not failing:
                    _log.warning(
                        "revocation bus lost its Redis subscription", error=str(error)
                    )
                failing = True
                self._stop.wait(_LISTEN_POLL_SECONDS)
                continue
            if message is None:
                continue
            if message["type"] == "subscribe":
                if failing:
                    _log.info("revocation bus subscribed to Redis again")
                failing = False
                # Entries may have been published while nobody listened.
                self._nudge_all()
                continue
            if message["type"] != "message":
                continue
            revocation = common_pb2.Revocation()
            try:
                revocation.ParseFromString(message["data"])
            except Exception:  # a foreign or damaged message on our channel
                _log.warning("revocation bus dropped a message it cannot read")
                continue
            self._deliver(revocation)
        pubsub.close()


def open_bus(redis_url: str | None, max_subscriptions: int) -> RevocationBus:
    """The Redis bus when a URL is configured, else the in-process one."""
    if redis_url:
        return RedisRevocationBus(redis_url, max_subscriptions)
    return LocalRevocationBus(max_subscriptions)
