"""Real HTTP load for the benches: server processes on 127.0.0.1 and wrk as the load generator."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(command: list[str], *, env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server process, wait for /healthz, yield its base URL, stop it."""
    log = open(Path(tempfile.gettempdir()) / f"dsr-bench-server-{port}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited: {' '.join(command)} (see {log.name})")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready: {' '.join(command)}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def python() -> str:
    return sys.executable


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk(
    url: str,
    *,
    tokens: Path,
    body: str,
    duration: float,
    connections: int,
    threads: int = 2,
) -> dict[str, float]:
    """One wrk run (``--latency``); requests/s, p50/p90/p99 in ms, non-2xx count."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "wrk_tokens.lua"),
            url,
            "--",
            str(tokens),
            str(threads),
            body,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non2xx": 0.0,
    }
    for label in ("50", "90", "99"):
        match = re.search(rf"^\s+{label}%\s+(\S+)", out, re.MULTILINE)
        result[f"p{label}"] = _ms(match.group(1)) if match else float("nan")
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if non:
        result["non2xx"] = float(non.group(1))
    if errors:
        result["socket_errors"] = 1.0
    return result
