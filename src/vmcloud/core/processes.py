"""Child processes of one ``vmcloud`` command (``up``, ``serve --workers N --worker``).

:class:`SupervisedChild` keeps one child running (the job worker): when it dies without being
asked to, it says so at ERROR and starts it again after a pause growing from 1 s to 10 s
(reset after it ran for a while). Leaving the block stops it with SIGTERM (SIGKILL after a
grace period) and waits for it, so no child outlives the command.

:func:`stop_when_orphaned` is the other half: a child started by a supervisor watches its
parent and stops itself, gracefully, when the parent is gone (killed with SIGKILL, which no
handler sees). The supervisor's pid reaches its children in :data:`SUPERVISOR_PID_ENV`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from vmcloud.core.logging import get_logger

log = get_logger(__name__)

SUPERVISOR_PID_ENV = "VMCLOUD_SUPERVISOR_PID"
FIRST_PAUSE = 1.0
MAX_PAUSE = 10.0
# A signal meant for the whole process group (Ctrl-C) reaches the child and the supervisor at
# once; the child may be gone before the supervisor's handler has said "stopping". A death
# within this grace of a stop is not reported as a crash.
STOP_GRACE = 1.0


class SupervisedChild:
    """Run ``argv`` as a child process until the block ends, restarting it when it dies.

    ``stopping`` may be set by the caller as soon as it decides to shut down (its signal
    handler), before leaving the block; a child that dies then is not restarted."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stopping: threading.Event | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.stopping = stopping or threading.Event()
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name=f"supervise-{name}", daemon=True)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None else None

    def __enter__(self) -> SupervisedChild:
        self._start()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self) -> None:
        with self._lock:
            if self.stopping.is_set():
                return
            self._process = subprocess.Popen(self.argv, env=self.env)  # noqa: S603  (our own argv)
            log.info("process.started", name=self.name, child_pid=self._process.pid)

    def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            with self._lock:
                process = self._process
            if process is None:
                return
            started = time.monotonic()
            returncode = process.wait()
            if self.stopping.wait(STOP_GRACE):
                return
            if time.monotonic() - started > 2 * MAX_PAUSE:  # it ran for a while: a new failure
                pause = FIRST_PAUSE
            self.restarts += 1
            log.error(
                "process.died",
                name=self.name,
                child_pid=process.pid,
                returncode=returncode,
                signal=_signal_name(returncode),
                restarts=self.restarts,
                restart_in_seconds=pause,
            )
            if self.stopping.wait(pause):
                return
            self._start()
            pause = min(pause * 2, MAX_PAUSE)

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``stop_timeout``) and wait for it."""
        with self._lock:
            self.stopping.set()
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("process.killed", name=self.name, child_pid=process.pid)
                process.kill()
                process.wait()
            log.info("process.stopped", name=self.name, child_pid=process.pid)
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_GRACE + 5)


def _signal_name(returncode: int) -> str | None:
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return None


def supervisor_pid() -> int | None:
    """The pid of the supervisor that started this process, if one did."""
    value = os.environ.get(SUPERVISOR_PID_ENV, "")
    return int(value) if value.isdigit() else None


def stop_when_orphaned(stop: Callable[[], object], *, interval: float = 0.5) -> None:
    """When this process was started by a supervisor, call ``stop`` (once) as soon as that
    supervisor is no longer its parent. Does nothing otherwise."""
    parent = supervisor_pid()
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("process.orphaned", supervisor_pid=parent)
        stop()

    threading.Thread(target=watch, name="watch-supervisor", daemon=True).start()
