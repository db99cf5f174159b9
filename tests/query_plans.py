"""What the database plans for the statements an endpoint runs.

``captured`` records every statement the engine sends while a block runs; ``keyset_plan``
explains one of them (with its parameters) with sequential scans, bitmap scans and sorts (full
or incremental) priced out, so the plan shows whether an index answers the filter *in the
list's order*: one index scan whose condition holds the filter, no sort. The test tables are
small; on a small table the planner would rightly prefer a sequential scan, which says nothing
about ten million rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event, text


@dataclass
class Captured:
    statements: list[tuple[str, Any]] = field(default_factory=list)

    def last(self, needle: str) -> tuple[str, Any]:
        found = [(sql, params) for sql, params in self.statements if needle in sql]
        assert found, f"no statement containing {needle!r}"
        return found[-1]


@contextmanager
def captured(engine: Engine) -> Iterator[Captured]:
    record = Captured()

    def before(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        record.statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield record
    finally:
        event.remove(engine, "before_cursor_execute", before)


def keyset_plan(connection: Connection, statement: str, params: Any) -> dict[str, Any]:
    """The plan of ``statement`` when neither a sequential scan nor a sort is an option."""
    with connection.begin_nested() as savepoint:
        for knob in (
            "enable_seqscan",
            "enable_bitmapscan",
            "enable_sort",
            "enable_incremental_sort",
        ):
            connection.execute(text(f"SET LOCAL {knob} = off"))
        rows = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params)
        plan: dict[str, Any] = rows.scalar_one()[0]["Plan"]
        savepoint.rollback()
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def assert_page_by_index(plan: dict[str, Any], index: str, *columns: str) -> None:
    """One backward scan of ``index`` whose condition names each of ``columns``; nothing
    sorted, nothing disabled left in the plan."""
    kinds = [node["Node Type"] for node in nodes(plan)]
    assert not {"Sort", "Incremental Sort", "Seq Scan"} & set(kinds), kinds
    scans = [node for node in nodes(plan) if "Index Name" in node]
    assert [node["Index Name"] for node in scans] == [index], kinds
    (scan,) = scans
    assert scan["Scan Direction"] == "Backward", scan
    condition = scan.get("Index Cond", "")
    for column in columns:
        assert column in condition, (column, condition)
