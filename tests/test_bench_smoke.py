"""Every bench script still runs: each at a tiny size, printing its table, writing nothing.

The figures mean nothing at these sizes; `bench/run_all.py` runs them at full size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE: dict[str, list[str]] = {
    "bench_usage_check.py": ["--requests", "30", "--subjects", "200", "--rounds", "1"],
    "bench_intake.py": ["--requests", "30", "--concurrency", "4"],
    "bench_intake_http.py": [
        *("--duration", "1", "--rounds", "1", "--per-run", "200", "--connections", "4"),
        *("--types", "access", "--workers", "1"),
    ],
    "bench_staff_queue.py": ["--sizes", "2000", "--runs", "2"],
    "bench_wakeup.py": ["--samples", "2"],
    "bench_purge.py": ["--records", "200", "--batch", "100", "--rounds", "1"],
    "bench_access_report.py": ["--records", "500"],
    "bench_webhooks.py": [
        *("--notices", "30", "--baseline", "20", "--processors", "2", "--receivers", "1"),
        *("--workers", "1", "--timeout", "90"),
    ],
}
NO_WRITE = {"bench_access_report.py", "bench_webhooks.py"}  # these never write the doc


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_bench_script_runs_at_a_tiny_size(script: str) -> None:
    if script == "bench_intake_http.py" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    before = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    command = [sys.executable, str(ROOT / "bench" / script), *SMOKE[script]]
    if script not in NO_WRITE:
        command.append("--no-write")
    done = subprocess.run(
        command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip()  # printed its figures
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == before
