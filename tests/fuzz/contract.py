"""Contract fuzz: schemathesis against a running `dsr serve`, from the published openapi.yaml.

    python -m tests.fuzz.contract            # CI profile: bounded, a few minutes
    python -m tests.fuzz.contract --long     # long profile: many more cases per operation

On a fresh database (``DSR_TEST_DATABASE_URL``'s server, else an embedded one), seeded first
through the API with requests in every state, objections, verifications, processors and
delivered notices (``tests/fuzz/seed.py``), whose ids the hooks put in the generated paths.
Fails on any 5xx, undocumented status, response not matching its schema or content type,
schema-violating input accepted, or a 405 without a complete ``Allow``. Extra arguments go to
``schemathesis run``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.config import KEY_FIELDS, Settings, new_key
from tests.fuzz.seed import seed
from tests.support.database import fresh_database, server_url
from tests.support.servers import RecordingServer, closed_port

ROOT = Path(__file__).resolve().parents[2]
PROFILES = {
    # 5,000-8,000 cases over the 51 operations, as many as the 200 s budget allows.
    "ci": ["--max-examples", os.environ.get("DSR_FUZZ_MAX_EXAMPLES", "10"), "--max-time", "200"],
    "long": ["--max-examples", os.environ.get("DSR_FUZZ_MAX_EXAMPLES", "1000")],
}
CHECKS = "all"
# Random ids find nothing (404), and a fresh subject has nothing to withdraw: a valid request
# need not succeed here. Stateful checks need links the contract does not declare.
EXCLUDED_CHECKS = "positive_data_acceptance,use_after_free,ensure_resource_availability"


def main(argv: list[str]) -> int:
    profile = "long" if "--long" in argv else "ci"
    extra = [arg for arg in argv if arg != "--long"]
    with tempfile.TemporaryDirectory(prefix="dsr-fuzz-") as root:
        admin_url, embedded = server_url(Path(root))
        try:
            return asyncio.run(_run(admin_url, Path(root), profile, extra))
        finally:
            if embedded is not None:
                embedded.cleanup()  # type: ignore[attr-defined]


async def _run(admin_url: str, root: Path, profile: str, extra: list[str]) -> int:
    async with fresh_database(admin_url) as url:
        keys = {name: new_key() for name in KEY_FIELDS}
        env = {k: v for k, v in os.environ.items() if not k.startswith("DSR_")} | {
            "DSR_ENV": "test",
            "DSR_DATABASE_URL": url,
            "DSR_DATA_DIR": str(root / "data"),
            "DSR_RUN_WORKER": "false",
            "DSR_ALLOW_PRIVATE_WEBHOOKS": "true",  # no DNS for the URLs it makes up
            "DSR_LOG_LEVEL": "WARNING",
            **{f"DSR_{name.upper()}": value for name, value in keys.items()},
        }
        settings = Settings(
            env="test",
            database_url=url,
            data_dir=root / "seeding",
            allow_private_webhooks=True,
            webhook_processor_cache_seconds=0,
            **keys,
        )
        port = closed_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port)],
            env=env,
            cwd=ROOT,
        )
        receiver = RecordingServer().start()  # the processors' webhook endpoint
        try:
            await _ready(port, server)
            made = await seed(
                f"http://127.0.0.1:{port}", settings, receiver.url, root / "seed.json"
            )
            print(
                f"fuzz seed: {len(made.requests)} requests, {len(made.objections)} objections, "
                f"{len(made.verifications)} verifications, {len(made.deliveries)} deliveries",
                flush=True,
            )
            command = [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                str(ROOT / "openapi.yaml"),
                "--url",
                f"http://127.0.0.1:{port}",
                "--checks",
                CHECKS,
                "--exclude-checks",
                EXCLUDED_CHECKS,
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                os.environ.get("DSR_FUZZ_SEED", "12"),
                "--generation-database",
                "none",
                # One worker: hypothesis' source cache is not thread-safe (spurious runtime errors).
                "--workers",
                "1",
                "--no-color",
                *PROFILES[profile],
                *extra,
            ]
            hooks_env = env | {
                "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
                "PYTHONPATH": str(ROOT),
                "DSR_FUZZ_SEED": str(root / "seed.json"),
            }
            result = await asyncio.to_thread(subprocess.run, command, env=hooks_env, cwd=ROOT)
            return result.returncode
        finally:
            receiver.stop()
            server.terminate()
            server.wait(timeout=60)


async def _ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"dsr serve exited with {server.returncode}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("dsr serve did not become ready")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
