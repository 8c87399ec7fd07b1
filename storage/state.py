"""Short-lived conversation state and delivery dedupe: Redis when configured, else in-process.

`StateStore.put/get/pop` hold what a person is in the middle of (waiting for a reply text, a
transfer note …). `first_time(key, ttl)` answers True once per key within the TTL: the shared
dedupe of redelivered updates across processes. `lock(key)` is held while one message of an
address is served, so the next one waits for it, in every process that shares the store.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

import redis

# How long a message may hold its address's lock: longer than serving any message takes (a
# photo download is bounded at about a minute). A process that dies holding the lock frees it
# when the lease runs out, so one crash cannot silence an address.
LOCK_LEASE_SECONDS = 120.0
# How long the next message waits for it before giving up with LockTimeout.
LOCK_WAIT_SECONDS = 150.0


class LockTimeout(Exception):
    """An address stayed locked longer than LOCK_WAIT_SECONDS."""


class StateStore(Protocol):
    def put(self, key: str, value: dict[str, Any], ttl: int = 3600) -> None: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
    def pop(self, key: str) -> dict[str, Any] | None: ...
    def first_time(self, key: str, ttl: int) -> bool: ...
    def lock(self, key: str) -> contextlib.AbstractContextManager[None]: ...
    def ping(self) -> None: ...


class LocalLocks:
    """One lock per key, kept only while someone holds or awaits it: an address that writes once
    does not cost memory for the life of the process."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    @contextlib.contextmanager
    def hold(self, key: str, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        lock = self.get(key)
        if not lock.acquire(timeout=wait):
            raise LockTimeout(key)
        try:
            yield
        finally:
            lock.release()

    def __len__(self) -> int:
        return len(self._locks)


class MemoryStateStore:
    def __init__(self, *, wait: float = LOCK_WAIT_SECONDS) -> None:
        self._data: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()
        self.locks = LocalLocks()
        self.lock_wait = wait

    def _live(self, key: str) -> tuple[float, dict[str, Any] | None] | None:
        item = self._data.get(key)
        if item is not None and item[0] < time.monotonic():
            del self._data[key]
            return None
        return item

    def put(self, key: str, value: dict[str, Any], ttl: int = 3600) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._live(key)
            return item[1] if item else None

    def pop(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._live(key)
            self._data.pop(key, None)
            return item[1] if item else None

    def first_time(self, key: str, ttl: int) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._data[key] = (time.monotonic() + ttl, None)
            return True

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self.locks.hold(key, self.lock_wait)

    def ping(self) -> None:
        return None


class RedisStateStore:
    """State in Redis, shared by every process; keys live under `prefix`."""

    def __init__(self, url: str, prefix: str = "griddesk", *,
                 lease: float = LOCK_LEASE_SECONDS, wait: float = LOCK_WAIT_SECONDS) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._lease, self.lock_wait = lease, wait
        self.locks = LocalLocks()

    def _k(self, key: str) -> str:
        return f"{self._prefix}:{key}"

    def put(self, key: str, value: dict[str, Any], ttl: int = 3600) -> None:
        self._redis.set(self._k(key), json.dumps(value, ensure_ascii=False), ex=ttl)

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._k(key))
        return json.loads(raw) if raw else None

    def pop(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.getdel(self._k(key))
        return json.loads(raw) if raw else None

    def first_time(self, key: str, ttl: int) -> bool:
        return bool(self._redis.set(self._k(key), "1", nx=True, ex=ttl))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """This process's lock first, so its own threads queue without polling Redis; then
        redis-py's lock (a token under the key, with a lease), which the other processes see."""
        started = time.monotonic()
        with self.locks.hold(key, self.lock_wait):
            left = max(self.lock_wait - (time.monotonic() - started), 0.01)
            shared = self._redis.lock(self._k(f"lock:{key}"), timeout=self._lease, sleep=0.02,
                                      blocking_timeout=left)
            # Our own token: redis-py's default, a time-based UUID, goes through libuuid's
            # clock, whose cost showed in profiles of a busy process.
            if not shared.acquire(token=secrets.token_hex(16)):
                raise LockTimeout(key)
            try:
                yield
            finally:
                # The lease may have run out (and another process taken the lock): not ours to free.
                with contextlib.suppress(redis.exceptions.LockNotOwnedError):
                    shared.release()

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
