"""Every benchmark of the harness runs once at its tiny size, so none can rot unnoticed: a
benchmark that raises (a refused create, a run that bills the wrong number of hours, a guest
that never boots) fails here. Only the shape of the rows is checked; the figures of a tiny run
mean nothing and speed is never asserted in a test."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from bench import report
from bench.__main__ import BENCHMARKS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_tiny_run_reports_well_formed_rows(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    rows = module.run(tiny=True)
    assert isinstance(rows, list)
    assert rows, f"bench.{name} reported no rows"
    for row in rows:
        assert isinstance(row, report.Row)
        for field in (row.measure, row.goal, row.measured):
            assert isinstance(field, str)
            assert field.strip(), f"bench.{name} left a field empty: {row}"
        assert row.met is None or isinstance(row.met, bool)
        assert isinstance(row.note, str)


def test_every_benchmark_module_is_in_the_harness() -> None:
    # A benchmark is a module that runs alone through report.main; helpers (data generators,
    # the harness, the load tools) do not.
    folder = Path(report.__file__).parent
    hook = re.compile(r"^\s+report\.main\(run\)$", re.MULTILINE)
    benchmarks = {path.stem for path in folder.glob("*.py") if hook.search(path.read_text())}
    assert {"throughput", "boot_time", "billing_run"} <= benchmarks
    assert benchmarks - set(BENCHMARKS) == set(), "run by neither the harness nor this test"
