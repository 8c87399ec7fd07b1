"""Short-lived conversation state and delivery dedupe: Redis when configured, else in-process.

`StateStore.put/get/pop` hold what a person is in the middle of (waiting for a reply text, a
transfer note …). `first_time(key, ttl)` answers True once per key within the TTL: the shared
dedupe of redelivered updates across processes.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

import redis


class StateStore(Protocol):
    def put(self, key: str, value: dict[str, Any], ttl: int = 3600) -> None: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
    def pop(self, key: str) -> dict[str, Any] | None: ...
    def first_time(self, key: str, ttl: int) -> bool: ...
    def ping(self) -> None: ...


class MemoryStateStore:
    def __init__(self) -> None:
        self._data: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

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

    def ping(self) -> None:
        return None


class RedisStateStore:
    """State in Redis, shared by every process; keys live under `prefix`."""

    def __init__(self, url: str, prefix: str = "griddesk") -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix

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

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
