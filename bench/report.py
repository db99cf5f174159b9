"""What every benchmark reports: rows of *measure, goal, measured*, printed as a table.

Each benchmark module ``bench/<name>.py`` has ``run(tiny: bool = False) -> list[Row]`` and ends
with ``if __name__ == "__main__": report.main(run)``, so it runs alone
(``.venv/bin/python -m bench.<name> [--tiny]``) or from the harness (``python -m bench``).
``tiny`` runs the same code on a data set small enough for ``./test`` (seconds), so a benchmark
cannot rot unnoticed; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vmcloud.core.logging import configure_logging


@dataclass(frozen=True)
class Row:
    measure: str  # what was measured, e.g. "GET /api/v1/instances, a customer's first page"
    goal: str  # the goal as written in docs/performance.md, e.g. ">= 40 % of bare asyncpg"
    measured: str  # the figures, e.g. "1,020 req/s, p99 21 ms (44 % of 2,311 req/s)"
    met: bool | None  # None when the row has no pass/fail goal (a reference figure)
    note: str = ""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min), {os.cpu_count()} cores"


def render(rows: Sequence[Row]) -> str:
    lines = ["| measure | goal | measured | met |", "|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: "—"}[row.met]
        measured = f"{row.measured} ({row.note})" if row.note else row.measured
        lines.append(f"| {row.measure} | {row.goal} | {measured} | {met} |")
    return "\n".join(lines)


def quiet() -> None:
    """Warnings and errors only: the platform's one line per request would bury the table."""
    configure_logging("warning", "console")


def main(run: Callable[..., list[Row]], argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args(argv)
    quiet()
    print(f"before: {load()}")
    rows = run(tiny=args.tiny)
    print(render(rows))
    print(f"after: {load()}")
