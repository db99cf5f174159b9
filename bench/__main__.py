"""The benchmark harness: every benchmark in turn, each row as goal vs. measured.

Run: ``.venv/bin/python -m bench [--tiny] [name ...]`` (names from :data:`BENCHMARKS`).
Results, with the machine's load, go in ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import importlib
import time

from bench import report

# In the order of the table in docs/performance.md.
BENCHMARKS = [
    "lists",  # GET /instances and /admin/instances vs bare asyncpg; a 2,000-instance customer
    "history",  # generating 10M audit rows and 10M ledger entries (for the next two)
    "filters",  # audit-log and ledger filters at 10M rows vs 10k
    "login_load",  # p99 of /products and /instances while clients hammer login
    "ip_allocation",  # one allocation with many used addresses
    "ledger_verify",  # incremental `billing verify` at 10M ledger entries
    "billing_run",  # the hourly billing run, 100k subscriptions, vs hand-written SQL
    "boot_time",  # POST -> running / guest ready on real libvirt
    "throughput",  # creates per minute, in-memory driver
    "processes",  # an authenticated GET: h11 vs httptools, one API process vs two
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run of each")
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    if unknown := set(args.names) - set(BENCHMARKS):
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    report.quiet()
    rows: list[report.Row] = []
    print(f"before: {report.load()}")
    for name in args.names or BENCHMARKS:
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        rows += module.run(tiny=args.tiny)
        print(f"{name}: {time.monotonic() - started:.0f} s; {report.load()}", flush=True)
    print(report.render(rows))
    print(f"after: {report.load()}")


if __name__ == "__main__":
    main()
