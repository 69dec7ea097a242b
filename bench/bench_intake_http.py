"""Intake over real HTTP, as a new user would run it.

`dsr serve --no-worker` (one process, and `--workers 2`) and the bare one-INSERT app
(`bench/baseline_app.py`) run as uvicorn processes side by side on one PostgreSQL
(DSR_TEST_DATABASE_URL's server when set, else embedded; a scratch database either way); wrk
(`-t2 -c32`) loads each in turn from its own process, interleaved rounds. Every intake request
is a different subject (a verified phone and its token), so none is a duplicate.

    .venv/bin/python bench/bench_intake_http.py [--duration 10] [--rounds 3] [--connections 32]

Targets: intake ≥ 0.25 × baseline with p99 ≤ 100 ms; `--workers 2` ≥ 1.6 × one process.
Prints a table and writes it to docs/BENCHMARKS.md, section "Intake over HTTP".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_usage_check import bench_database, measured_on, write_section  # noqa: E402
from httpload import free_port, python, server, wrk  # noqa: E402

from app.config import KEY_FIELDS, Settings, new_key  # noqa: E402
from app.crypto import Crypto  # noqa: E402
from app.db import plain_url  # noqa: E402
from app.security import TokenService  # noqa: E402

SECTION = "Intake over HTTP"
BODIES = {
    "access": {"type": "access"},
    "correction": {
        "type": "correction",
        "corrections": [{"item": "address", "new_value": "서울특별시 강서구 공항대로 247"}],
    },
}


async def make_tokens(url: str, settings: Settings, path: Path, count: int, offset: int) -> None:
    """``count`` verified phones (COPY) and a subject token for each, one per line of ``path``."""
    crypto, tokens = Crypto.from_settings(settings), TokenService(settings)
    now = datetime.now(UTC)
    rows, lines = [], []
    for n in range(offset, offset + count):
        value = f"+8210{n:08d}"
        index = crypto.blind_index("phone", value)
        rows.append(
            (
                uuid.uuid4(),
                "phone",
                index,
                crypto.encrypt(value, context=f"identifier:{index}"),
                now,
            )
        )
        lines.append(
            tokens.issue_subject_token(
                blind_index=index, identifier_kinds=["phone"], now=now, ttl=timedelta(hours=4)
            )
        )
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.copy_records_to_table(
            "subject_identifier",
            records=rows,
            columns=["id", "kind", "blind_index", "value_encrypted", "created_at"],
        )
    finally:
        await conn.close()
    path.write_text("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="dsr-bench-http-") as tmp:
        root = Path(tmp)

        async def body() -> None:
            async with bench_database() as url:
                keys = {name: new_key() for name in KEY_FIELDS}
                settings = Settings(env="test", database_url=url, **keys)  # type: ignore[arg-type]
                env = {
                    "DSR_ENV": "dev",
                    "DSR_DATABASE_URL": url,
                    "DSR_DATA_DIR": str(root / "data"),
                    "DSR_LOG_LEVEL": "WARNING",
                    "DSR_DB_POOL_SIZE": str(args.pool),
                    **{f"DSR_{name.upper()}": value for name, value in keys.items()},
                }
                plan: list[tuple[str, str, int]] = [("baseline", "access", 1)]
                plan += [("intake", kind, 1) for kind in args.types]
                plan += [("intake", "access", workers) for workers in args.workers if workers > 1]
                offset = 0
                files: dict[tuple[int, int], Path] = {}
                for round_no in range(args.rounds):
                    for step, (name, _kind, _workers) in enumerate(plan):
                        if name == "intake":
                            path = root / f"tokens-{round_no}-{step}.txt"
                            await make_tokens(url, settings, path, args.per_run, offset)
                            offset += args.per_run
                            files[(round_no, step)] = path
                dummy = root / "tokens-baseline.txt"
                dummy.write_text("unused\n" * 64)
                ports = {w: free_port() for w in {1, *args.workers}}
                base_port = free_port()
                serve = [python(), "-m", "app.cli", "serve", "--no-worker", "--host", "127.0.0.1"]
                from contextlib import ExitStack

                with ExitStack() as stack:
                    base = stack.enter_context(
                        server(
                            [
                                python(),
                                "bench/baseline_app.py",
                                "--dsn",
                                plain_url(url),
                                "--port",
                                str(base_port),
                                "--pool",
                                str(args.pool),
                            ],
                            env={},
                            port=base_port,
                        )
                    )
                    urls = {
                        w: stack.enter_context(
                            server(
                                [*serve, "--port", str(ports[w]), "--workers", str(w)],
                                env=env,
                                port=ports[w],
                            )
                        )
                        for w in sorted(ports)
                    }
                    for round_no in range(args.rounds):
                        for step, (name, kind, workers) in enumerate(plan):
                            if name == "baseline":
                                target, tokens = f"{base}/baseline/insert", dummy
                            else:
                                target, tokens = (
                                    f"{urls[workers]}/v1/requests",
                                    files[(round_no, step)],
                                )
                            result = wrk(
                                target,
                                tokens=tokens,
                                body=json.dumps(BODIES[kind], ensure_ascii=False),
                                duration=args.duration,
                                connections=args.connections,
                            )
                            if result["requests"] > args.per_run and name == "intake":
                                print("warning: more requests than subjects; raise --per-run")
                            key = f"{name}:{kind}:{workers}"
                            results.setdefault(key, []).append(result)
                            print(
                                f"round {round_no + 1} {key}: {result['rps']:,.0f}/s "
                                f"p50 {result['p50']:.1f} ms p99 {result['p99']:.1f} ms "
                                f"non-2xx {result['non2xx']:.0f}",
                                flush=True,
                            )

        asyncio.run(body())
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    base_key = "baseline:access:1"
    base_rps = median(base_key, "rps")
    one_rps = median("intake:access:1", "rps")
    table = [
        "| endpoint | processes | requests/s (median) | rounds | p50 ms | p99 ms | non-2xx |"
        " × baseline |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    labels = {
        "baseline": "baseline: bare FastAPI, one asyncpg INSERT (`bench/baseline_app.py`)",
        "intake": "`POST /v1/requests`",
    }
    for key, runs in results.items():
        name, kind, workers = key.split(":")
        label = labels[name] + (f" ({kind})" if name == "intake" else "")
        rounds = ", ".join(f"{r['rps']:,.0f}" for r in runs)
        table.append(
            f"| {label} | {workers} | {median(key, 'rps'):,.0f} | {rounds} | "
            f"{median(key, 'p50'):.1f} | {median(key, 'p99'):.1f} | "
            f"{sum(r['non2xx'] for r in runs):.0f} | {median(key, 'rps') / base_rps:.2f} |"
        )
    lines = [
        f"Intake (access) / baseline: **{one_rps / base_rps:.2f} ×** "
        f"(target ≥ 0.25, p99 ≤ 100 ms: p99 {median('intake:access:1', 'p99'):.0f} ms)."
    ]
    for workers in args.workers:
        key = f"intake:access:{workers}"
        if workers > 1 and key in results:
            lines.append(
                f"`--workers {workers}` / one process: **{median(key, 'rps') / one_rps:.2f} ×** "
                "(target ≥ 1.6 on 2 cores)."
            )
    text = "\n".join(
        [
            f"## {SECTION}",
            "",
            "`python bench/bench_intake_http.py` — `dsr serve --no-worker` and the bare",
            "one-INSERT app, each a uvicorn process on 127.0.0.1, same PostgreSQL; wrk "
            f"`-t2 -c{args.connections} -d{args.duration:g}s` from its own process,",
            f"{args.rounds} interleaved rounds; every intake request a different subject.",
            "",
            *table,
            "",
            *lines,
            "",
            measured_on(),
        ]
    )
    print("\n".join([*table, "", *lines]))
    if args.write:
        print(f"wrote {write_section(SECTION, text)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--per-run", type=int, default=20_000, help="subjects per intake run")
    parser.add_argument("--types", nargs="+", default=["access", "correction"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-write", dest="write", action="store_false")
    run(parser.parse_args())
