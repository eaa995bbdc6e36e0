"""The fast-path revocation cache shared by issuer, registry and validator.

DESIGN, "Revocation, end to end": per issuing CA one hash holds the revoked
serial numbers of that CA *and* the completeness marker "complete up to N"
(N a revocation-log sequence number). Because both live in one hash, Redis
eviction or a flush removes them together; a missing marker therefore means
"this cache proves nothing", never "not revoked".

Writers:

- the issuer adds an entry right after the registry committed a revocation
  (fast path; it never touches the marker);
- the registry's cache sync is the only writer of the marker. It advances it
  with a compare-and-set over a contiguous run of log entries, or rebuilds a
  hash whose marker vanished under a token that a flush would also remove.

Readers (the validator) get the entry and the marker in one round trip.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import secrets
import threading
from collections.abc import Iterable, Mapping

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from services.common.errors import Unavailable

# Hash fields that are not serial numbers start with "~", which hex never does.
MARKER_FIELD = "~complete"
REBUILD_FIELD = "~rebuild"
KEY_PREFIX = "tessera:revocations:"


class CacheUnavailable(Unavailable):
    """The cache cannot be reached; callers fall back to the registry."""


@dataclasses.dataclass(frozen=True)
class CachedRevocation:
    """What the cache keeps about one revoked certificate."""

    sequence: int
    # RFC 5280 CRLReason code.
    reason: int
    revocation_date: dt.datetime
    invalidity_date: dt.datetime | None = None

    def encode(self) -> str:
        invalidity = (
            "" if self.invalidity_date is None else str(_epoch(self.invalidity_date))
        )
        return (
            f"{self.sequence}:{self.reason}:{_epoch(self.revocation_date)}:{invalidity}"
        )

    @classmethod
    def decode(cls, text: str) -> CachedRevocation:
        sequence, reason, revoked, invalidity = text.split(":")
        return cls(
            sequence=int(sequence),
            reason=int(reason),
            revocation_date=dt.datetime.fromtimestamp(int(revoked), dt.UTC),
            invalidity_date=(
                dt.datetime.fromtimestamp(int(invalidity), dt.UTC)
                if invalidity
                else None
            ),
        )


@dataclasses.dataclass(frozen=True)
class CacheAnswer:
    """The cache's answer for one certificate."""

    revocation: CachedRevocation | None
    # The completeness marker of the issuer's hash; None when absent.
    complete_to: int | None

    @property
    def proves_not_revoked(self) -> bool:
        """True only when the marker covers the answer."""
        return self.revocation is None and self.complete_to is not None


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


class RevocationCache(abc.ABC):
    """Revocation status per (issuing CA key id, serial number)."""

    @abc.abstractmethod
    def lookup(self, issuer_key_id: str, serial_number: str) -> CacheAnswer:
        """The entry for one certificate and the issuer's marker, read together."""

    @abc.abstractmethod
    def put_fast_path(
        self, issuer_key_id: str, serial_number: str, revocation: CachedRevocation
    ) -> None:
        """Record a committed revocation at once; the marker is left alone.

        The event that tells other processes (DESIGN step 2) is published by
        the registry right after the commit, on the revocation bus.
        """

    @abc.abstractmethod
    def markers(self, issuer_key_ids: Iterable[str]) -> dict[str, int | None]:
        """The completeness marker of each issuer's hash (None when absent)."""

    @abc.abstractmethod
    def advance(
        self,
        issuer_key_id: str,
        expected_marker: int,
        entries: Mapping[str, CachedRevocation],
        new_marker: int,
    ) -> bool:
        """Add entries and move the marker, only if it still reads expected."""

    @abc.abstractmethod
    def discard(self, issuer_key_id: str) -> None:
        """Drop an issuer's hash, entries and marker together."""

    @abc.abstractmethod
    def begin_rebuild(self, issuer_key_id: str) -> str | None:
        """Start refilling a hash without marker; None when it has one again."""

    @abc.abstractmethod
    def rebuild_chunk(
        self, issuer_key_id: str, token: str, entries: Mapping[str, CachedRevocation]
    ) -> bool:
        """Add entries to a rebuild; False when the hash was lost meanwhile."""

    @abc.abstractmethod
    def finish_rebuild(self, issuer_key_id: str, token: str, marker: int) -> bool:
        """Set the marker of a rebuilt hash; False when it was lost meanwhile."""

    def close(self) -> None:  # noqa: B027 (the in-process cache holds nothing)
        """Release connections."""


class MemoryRevocationCache(RevocationCache):
    """The in-process cache of the embedded default (one process, no Redis)."""

    def __init__(self) -> None:
        self._hashes: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def lookup(self, issuer_key_id: str, serial_number: str) -> CacheAnswer:
        with self._lock:
            fields = self._hashes.get(issuer_key_id, {})
            entry = fields.get(serial_number)
            marker = fields.get(MARKER_FIELD)
        return CacheAnswer(
            revocation=CachedRevocation.decode(entry) if entry else None,
            complete_to=int(marker) if marker is not None else None,
        )

    def put_fast_path(
        self, issuer_key_id: str, serial_number: str, revocation: CachedRevocation
    ) -> None:
        with self._lock:
            self._hashes.setdefault(issuer_key_id, {})[serial_number] = (
                revocation.encode()
            )

    def markers(self, issuer_key_ids: Iterable[str]) -> dict[str, int | None]:
        with self._lock:
            result: dict[str, int | None] = {}
            for key_id in issuer_key_ids:
                marker = self._hashes.get(key_id, {}).get(MARKER_FIELD)
                result[key_id] = int(marker) if marker is not None else None
            return result

    def advance(
        self,
        issuer_key_id: str,
        expected_marker: int,
        entries: Mapping[str, CachedRevocation],
        new_marker: int,
    ) -> bool:
        with self._lock:
            fields = self._hashes.get(issuer_key_id)
            if fields is None or fields.get(MARKER_FIELD) != str(expected_marker):
                return False
            fields.update({serial: entry.encode() for serial, entry in entries.items()})
            fields[MARKER_FIELD] = str(new_marker)
            return True

    def discard(self, issuer_key_id: str) -> None:
        with self._lock:
            self._hashes.pop(issuer_key_id, None)

    def begin_rebuild(self, issuer_key_id: str) -> str | None:
        with self._lock:
            fields = self._hashes.setdefault(issuer_key_id, {})
            if MARKER_FIELD in fields:
                return None
            token = secrets.token_hex(8)
            fields[REBUILD_FIELD] = token
            return token

    def rebuild_chunk(
        self, issuer_key_id: str, token: str, entries: Mapping[str, CachedRevocation]
    ) -> bool:
        with self._lock:
            fields = self._hashes.get(issuer_key_id)
            if fields is None or fields.get(REBUILD_FIELD) != token:
                return False
            fields.update({serial: entry.encode() for serial, entry in entries.items()})
            return True

    def finish_rebuild(self, issuer_key_id: str, token: str, marker: int) -> bool:
        with self._lock:
            fields = self._hashes.get(issuer_key_id)
            if fields is None or fields.get(REBUILD_FIELD) != token:
                return False
            del fields[REBUILD_FIELD]
            fields[MARKER_FIELD] = str(marker)
            return True

    def flush(self) -> None:
        """Forget everything, as a Redis FLUSHALL would (for tests and drills)."""
        with self._lock:
            self._hashes.clear()


_ADVANCE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

_BEGIN_REBUILD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return ARGV[3]
"""

_REBUILD_CHUNK = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

_FINISH_REBUILD = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
"""


class RedisRevocationCache(RevocationCache):
    """The cache in Redis, shared by every process of the installation."""

    def __init__(self, url: str, timeout_seconds: float = 0.5) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
            decode_responses=True,
        )
        self._advance = self._client.register_script(_ADVANCE)
        self._begin_rebuild = self._client.register_script(_BEGIN_REBUILD)
        self._rebuild_chunk = self._client.register_script(_REBUILD_CHUNK)
        self._finish_rebuild = self._client.register_script(_FINISH_REBUILD)

    @staticmethod
    def _key(issuer_key_id: str) -> str:
        return KEY_PREFIX + issuer_key_id

    def lookup(self, issuer_key_id: str, serial_number: str) -> CacheAnswer:
        try:
            entry, marker = self._client.hmget(
                self._key(issuer_key_id), [serial_number, MARKER_FIELD]
            )
        except redis.RedisError as error:
            raise CacheUnavailable(f"Redis cannot be reached: {error}") from error
        return CacheAnswer(
            revocation=CachedRevocation.decode(str(entry)) if entry else None,
            complete_to=int(marker) if marker is not None else None,
        )

    def put_fast_path(
        self, issuer_key_id: str, serial_number: str, revocation: CachedRevocation
    ) -> None:
        try:
            self._client.hset(
                self._key(issuer_key_id), serial_number, revocation.encode()
            )
        except redis.RedisError as error:
            raise CacheUnavailable(f"Redis cannot be reached: {error}") from error

    def markers(self, issuer_key_ids: Iterable[str]) -> dict[str, int | None]:
        key_ids = list(issuer_key_ids)
        try:
            with self._client.pipeline(transaction=False) as pipeline:
                for key_id in key_ids:
                    pipeline.hget(self._key(key_id), MARKER_FIELD)
                values = pipeline.execute()
        except redis.RedisError as error:
            raise CacheUnavailable(f"Redis cannot be reached: {error}") from error
        return {
            key_id: int(value) if value is not None else None
            for key_id, value in zip(key_ids, values, strict=True)
        }

    def advance(
        self,
        issuer_key_id: str,
        expected_marker: int,
        entries: Mapping[str, CachedRevocation],
        new_marker: int,
    ) -> bool:
        args: list[str] = [MARKER_FIELD, str(expected_marker), str(new_marker)]
        args += _flatten(entries)
        return bool(self._run(self._advance, issuer_key_id, args))

    def discard(self, issuer_key_id: str) -> None:
        try:
            self._client.delete(self._key(issuer_key_id))
        except redis.RedisError as error:
            raise CacheUnavailable(f"Redis cannot be reached: {error}") from error

    def begin_rebuild(self, issuer_key_id: str) -> str | None:
        token = secrets.token_hex(8)
        result = self._run(
            self._begin_rebuild, issuer_key_id, [MARKER_FIELD, REBUILD_FIELD, token]
        )
        return str(result) if result else None

    def rebuild_chunk(
        self, issuer_key_id: str, token: str, entries: Mapping[str, CachedRevocation]
    ) -> bool:
        args = [REBUILD_FIELD, token, *_flatten(entries)]
        return bool(self._run(self._rebuild_chunk, issuer_key_id, args))

    def finish_rebuild(self, issuer_key_id: str, token: str, marker: int) -> bool:
        args = [REBUILD_FIELD, token, MARKER_FIELD, str(marker)]
        return bool(self._run(self._finish_rebuild, issuer_key_id, args))

    def _run(self, script: object, issuer_key_id: str, args: list[str]) -> object:
        try:
            return script(keys=[self._key(issuer_key_id)], args=args)  # type: ignore[operator]
        except redis.RedisError as error:
            raise CacheUnavailable(f"Redis cannot be reached: {error}") from error

    def close(self) -> None:
        self._client.close()


def _flatten(entries: Mapping[str, CachedRevocation]) -> list[str]:
    flat: list[str] = []
    for serial_number, revocation in entries.items():
        flat += [serial_number, revocation.encode()]
    return flat


def open_cache(redis_url: str | None) -> RevocationCache:
    """The Redis cache when a URL is configured, else the in-process one."""
    if redis_url:
        return RedisRevocationCache(redis_url)
    return MemoryRevocationCache()
