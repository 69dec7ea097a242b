"""A tiny run of bench/bench_export.py: the benchmark still runs and counts every row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_export.py"


async def test_the_export_benchmark_runs_at_a_tiny_size(
    admin_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = await bench.run(admin_database_url, 300)
    assert figures["baseline"][0] == 300
    assert figures["plain"][0][0] == 300 and figures["personal"][0][0] == 300
    bench.report(300, figures)
    assert "CSV export of 300 requests" in capsys.readouterr().out
