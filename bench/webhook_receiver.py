"""A fast webhook receiver for the benchmark: raw ASGI on uvicorn (uvloop + httptools).

Every POST /<processor code> is verified with ``standardwebhooks.Webhook(secret).verify``.
GET /stats answers counts: valid, invalid, unsigned, distinct webhook-ids, duplicates.
Secrets come as JSON in the environment variable BENCH_SECRETS ({code: secret}).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

import uvicorn
from standardwebhooks import Webhook

VERIFIERS = {
    code: Webhook(secret) for code, secret in json.loads(os.environ["BENCH_SECRETS"]).items()
}
counts: Counter[str] = Counter()
seen: Counter[str] = Counter()


async def _send(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"].strip("/")
    if scope["method"] == "GET" and path == "stats":
        stats = dict(counts, distinct=len(seen), duplicates=sum(n - 1 for n in seen.values()))
        await _send(send, 200, json.dumps(stats).encode())
        return
    if scope["method"] == "POST" and path == "reset":
        counts.clear()
        seen.clear()
        await _send(send, 200, b"{}")
        return
    headers = {key.decode(): value.decode() for key, value in scope["headers"]}
    if "webhook-signature" not in headers:
        counts["unsigned"] += 1
        await _send(send, 400, b'{"error":"unsigned"}')
        return
    verifier = VERIFIERS.get(path)
    try:
        if verifier is None:
            raise ValueError("unknown processor")
        verifier.verify(body, headers)
    except Exception:
        counts["invalid"] += 1
        await _send(send, 400, b'{"error":"invalid signature"}')
        return
    counts["valid"] += 1
    seen[headers["webhook-id"]] += 1
    await _send(send, 200, b'{"ok":true}')


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
