"""The drill holds every table still for its fingerprints; a writer holding one table and
then wanting another must not deadlock with it: the drill backs off and tries again."""

from __future__ import annotations

import threading
import time

import psycopg

from vmcloud.backup import drill
from vmcloud.core.jobs import libpq_url


def test_the_drill_backs_off_instead_of_deadlocking_a_writer(fresh_database_url: str) -> None:
    conninfo = libpq_url(fresh_database_url)
    outcome: dict[str, str] = {}

    def fingerprint() -> None:
        try:
            drill._fingerprint_and_mark(conninfo, "drill-lock-test")
            outcome["drill"] = "ok"
        except Exception as exc:
            outcome["drill"] = f"{type(exc).__name__}: {exc}"

    with psycopg.connect(conninfo) as writer:
        writer.execute("LOCK TABLE users IN ROW EXCLUSIVE MODE")  # as an UPDATE users would
        thread = threading.Thread(target=fingerprint)
        thread.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        writer.execute("LOCK TABLE audit_logs IN ROW EXCLUSIVE MODE")  # then its audit row
        writer.commit()
        waited = time.monotonic() - t0
    thread.join(30)
    assert outcome == {"drill": "ok"}
    assert waited < 2
