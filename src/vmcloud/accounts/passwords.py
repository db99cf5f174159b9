"""Password hashing with argon2id at or above OWASP's minimum (m = 19 MiB, t = 2, p = 1).

Every hash and verification runs in a small pool of threads of its own (:class:`HashPool`),
never on the caller's thread: at most ``VMCLOUD_PASSWORD_HASH_WORKERS`` computations at once
per process, so a burst of logins takes at most that many cores and the other requests keep
theirs. argon2-cffi releases the GIL while it computes, so the pool's threads run beside the
request threads. Callers wait for the result (they are request threads of the threadpool or
jobs, never the event loop: :func:`hash_password` refuses to run there). The pool's threads
run at a lower CPU priority (``HASH_NICE``), so under load requests go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

T = TypeVar("T")

# The hash threads' nice value: when cores are short, request threads and PostgreSQL go first
# and logins wait; idle cores still go to hashing.
HASH_NICE = 10


def default_workers() -> int:
    """Half the cores (at least one): on two cores, logins take one and the API keeps one."""
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class PoolStats:
    size: int
    calls: int  # computations finished or running since the pool started
    running: int  # computing now
    waiting: int  # submitted, not started yet
    peak: int  # the most computations ever running at once


class HashPool:
    """At most ``size`` argon2 computations at once; the rest wait their turn in order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a hash pool needs at least one thread")
        self.size = size
        self._executor = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._lock = threading.Lock()
        self._calls = self._running = self._waiting = self._peak = 0

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on one of the pool's threads; the caller waits for the result."""
        if _on_event_loop():
            raise RuntimeError("password hashing must not wait on the event loop")
        with self._lock:
            self._waiting += 1
        return self._executor.submit(self._counted, fn, *args).result()

    def _counted(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            self._waiting -= 1
            self._running += 1
            self._calls += 1
            self._peak = max(self._peak, self._running)
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self.size, self._calls, self._running, self._waiting, self._peak)

    def shutdown(self) -> None:
        """Finish what was submitted, in the background; accept nothing more."""
        self._executor.shutdown(wait=False)


def _lower_priority() -> None:
    """Linux keeps a nice value per thread: this pool's threads yield to the others."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + HASH_NICE))


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_pool_lock = threading.Lock()
_pool: HashPool | None = None


def pool() -> HashPool:
    """This process's hash pool (of :func:`default_workers` threads until :func:`configure`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = HashPool(default_workers())
        return _pool


def configure(workers: int | None) -> HashPool:
    """Size this process's pool (``None``: the default). A pool of another size is replaced;
    what it was computing finishes."""
    global _pool
    size = workers or default_workers()
    with _pool_lock:
        old = _pool
        if old is not None and old.size == size:
            return old
        _pool = HashPool(size)
    if old is not None:
        old.shutdown()
    return _pool


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    return pool().run(_hasher.hash, password)


def verify_password(password_hash: str, password: str) -> bool:
    return pool().run(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_password() -> str:
    """A random password for accounts created by operators (about 144 bits)."""
    return secrets.token_urlsafe(18)


MIN_LENGTH = 10
# Long passphrases are welcome and never truncated; the cap only stops multi-megabyte bodies
# from becoming hashing work.
MAX_LENGTH = 1024

# Verified against when the account does not exist, so that a wrong email costs the same time
# as a wrong password and timing says nothing about which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(32))


def burn_verification_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)
