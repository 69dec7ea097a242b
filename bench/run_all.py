"""Run every bench at full size, one after another, and write their sections of
docs/BENCHMARKS.md (each script measures its own baseline in the same run).

    DSR_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/run_all.py [--only intake_http wakeup ...] [--quick]

``--quick`` runs the staff queue at 1 M only (loading 10 M takes about half an hour on two
shared cores). The access report and webhook benches print their tables (their sections of
the doc are written by hand from that output); the others write their sections themselves.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

RUNS: dict[str, list[str]] = {
    "intake_http": ["bench_intake_http.py"],
    "intake": ["bench_intake.py"],
    "usage_check": ["bench_usage_check.py"],
    "wakeup": ["bench_wakeup.py"],
    "staff_queue": ["bench_staff_queue.py"],
    "webhooks": ["bench_webhooks.py"],
    "access_report": ["bench_access_report.py"],
    "purge": ["bench_purge.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    for name in args.only or list(RUNS):
        command = [sys.executable, str(BENCH / RUNS[name][0]), *RUNS[name][1:]]
        if name == "staff_queue" and args.quick:
            command += ["--sizes", "1000000"]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        done = subprocess.run(command, cwd=BENCH.parent, check=False)
        print(f"=== {name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
