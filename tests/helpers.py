"""Helpers for API tests: the local mailbox, queued jobs, logging in."""

from __future__ import annotations

import ast
import email
import email.policy
import importlib
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from procrastinate import JobContext
from procrastinate.jobs import Job
from sqlalchemy import Connection, text

from vmcloud.core import jobs

SRC = Path(jobs.__file__).resolve().parents[1]


def _parse_sources() -> dict[Path, ast.Module]:
    return {
        path: ast.parse(path.read_text(), str(path))
        for path in sorted(SRC.rglob("*.py"))
        if "migrations" not in path.parts
    }


# Parsed once, when the test modules are collected: Python 3.11's ``ast.parse`` is not safe
# while another thread of the process converts an AST (it raises "AST constructor recursion
# depth mismatch"), and collection runs before any test starts a thread.
SOURCE_TREES: dict[Path, ast.Module] = _parse_sources()

TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_\-]+)")


class Mailbox:
    """The ``.eml`` files the mailbox mailer wrote, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def messages(self) -> list[EmailMessage]:
        if not self.directory.exists():
            return []
        found = []
        for path in sorted(self.directory.glob("*.eml")):
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if m["To"] == address]

    def last_token(self, address: str) -> str:
        messages = self.to(address)
        assert messages, f"no mail to {address}"
        body = messages[-1].get_content()
        match = TOKEN_IN_LINK.search(body)
        assert match, body
        return match.group(1)


@dataclass
class JobRunner:
    """Runs the jobs queued in the test's transaction the way a worker would: the registered
    task body, with the job runtime bound to the test's session."""

    connection: Connection

    attempts: int = 0  # what the job context reports (set high to test a last attempt)

    def pending(self, task_prefix: str = "") -> list[tuple[int, str, dict[str, Any], str]]:
        rows = self.connection.execute(
            text(
                "SELECT id, task_name, args, queue_name FROM procrastinate_jobs"
                " WHERE status = 'todo' AND task_name LIKE :prefix ORDER BY id"
            ),
            {"prefix": f"{task_prefix}%"},
        ).all()
        return [(int(r[0]), str(r[1]), dict(r[2]), str(r[3])) for r in rows]

    def _call(self, job_id: int, task_name: str, args: dict[str, Any], queue: str) -> None:
        task = jobs.app.tasks[task_name]
        if task.pass_context:
            job = Job(
                id=job_id,
                queue=queue,
                lock=None,
                queueing_lock=None,
                task_name=task_name,
                task_kwargs=args,
                attempts=self.attempts,
            )
            context = JobContext(
                app=jobs.app, job=job, start_timestamp=time.time(), abort_reason=lambda: None
            )
            task.func(context, **args)
        else:
            task.func(**args)

    def run(self, task_prefix: str = "") -> int:
        """Run queued jobs (and the jobs they queue) until none is left; returns how many."""
        for module in jobs.TASK_MODULES:
            importlib.import_module(module)
        ran = 0
        while batch := self.pending(task_prefix):
            for job_id, task_name, args, queue in batch:
                self.connection.execute(
                    text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
                )
                self._call(job_id, task_name, args, queue)
                ran += 1
        return ran


def login(client: TestClient, login: str, password: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/api/v1/auth/login", json={"login": login, "password": password, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
