"""A reference internal service implementing the http connector contract (docs/datamap.md).

In-memory records; runs on 127.0.0.1 inside a RecordingServer. ``down = True`` answers 503.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import Received, RecordingServer, Reply


@dataclass
class SourceRecord:
    resource: str
    key: str
    # role -> identifiers that find the subject in that role, e.g. {"customer": {"email": ...}}
    matches: dict[str, dict[str, str]]
    # role -> that role's fields
    fields: dict[str, dict[str, Any]]
    handovers: list[dict[str, Any]] = field(default_factory=list)
    retention_start: str | None = None
    consent: bool | None = None
    restricted: bool = False
    deleted: bool = False


class ReferenceSource:
    """The contract, implemented as plainly as possible: the way an internal team would."""

    def __init__(self, token: str, records: list[SourceRecord] | None = None) -> None:
        self.token = token
        self.records = records or []
        self.down = False
        self.fail_next_change = False
        self._lock = threading.Lock()
        self.server = RecordingServer(self)

    def __enter__(self) -> ReferenceSource:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def __call__(self, request: Received) -> Reply:
        if self.down:
            return Reply(503, {"error": "maintenance"})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": "unauthorized"})
        verb = request.path.rsplit("/", 1)[-1]
        body = request.json() if request.body else {}
        with self._lock:
            handler = getattr(self, f"_{verb}", None)
            if handler is None:
                return Reply(404, {"error": "unknown verb"})
            try:
                result: Reply = handler(body)
            except (KeyError, TypeError):
                return Reply(400, {"error": "bad request"})
            return result

    def _matching(self, body: dict[str, Any]) -> list[tuple[SourceRecord, str]]:
        subject = body["subject"]
        out = []
        for record in self.records:
            if record.deleted or record.resource != body["resource"]:
                continue
            for role, identifiers in record.matches.items():
                if role not in body.get("roles", [role]):
                    continue
                if any(subject.get(kind) == value for kind, value in identifiers.items()):
                    out.append((record, role))
        return out

    def _page(self, body: dict[str, Any]) -> tuple[list[tuple[SourceRecord, str]], str | None]:
        found = self._matching(body)
        start = int(body.get("cursor") or 0)
        limit = int(body.get("limit") or 100)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return page, str(start + limit) if more else None

    def _find(self, body: dict[str, Any]) -> Reply:
        if not body:
            return Reply(400, {"error": "empty"})
        page, cursor = self._page(body)
        return Reply(
            200,
            {"records": [{"key": r.key, "role": role} for r, role in page], "next_cursor": cursor},
        )

    def _export(self, body: dict[str, Any]) -> Reply:
        page, cursor = self._page(body)
        records = [
            {
                "key": r.key,
                "role": role,
                "fields": r.fields.get(role, {}),
                "handovers": r.handovers,
                "retention_start": r.retention_start,
                "consent": r.consent,
                "restricted": r.restricted,
            }
            for r, role in page
        ]
        return Reply(200, {"records": records, "next_cursor": cursor})

    def _target(self, subject: dict[str, str], item: dict[str, Any]) -> SourceRecord | None:
        for record in self.records:
            if record.deleted or record.resource != item["resource"] or record.key != item["key"]:
                continue
            identifiers = record.matches.get(item["role"], {})
            if any(subject.get(kind) == value for kind, value in identifiers.items()):
                return record
        return None

    def _apply(self, body: dict[str, Any], items: list[dict[str, Any]], change: Any) -> Reply:
        """All or nothing: work out every change first, then apply them together."""
        plan = [(item, self._target(body["subject"], item)) for item in items]
        if self.fail_next_change:
            self.fail_next_change = False
            return Reply(500, {"error": "storage failure, nothing applied"})
        applied = []
        for item, record in plan:
            if record is not None:
                change(record, item)
                applied.append(
                    {"resource": item["resource"], "key": item["key"], "role": item["role"]}
                )
        return Reply(200, {"applied": applied})

    def _correct(self, body: dict[str, Any]) -> Reply:
        def change(record: SourceRecord, item: dict[str, Any]) -> None:
            record.fields[item["role"]].update(item["fields"])

        return self._apply(body, body["changes"], change)

    def _erase(self, body: dict[str, Any]) -> Reply:
        def change(record: SourceRecord, item: dict[str, Any]) -> None:
            if item.get("delete_row"):
                record.deleted = True
                return
            values = record.fields[item["role"]]
            for name, how in item["fields"].items():
                if how["strategy"] == "null":
                    values[name] = None
                elif how["strategy"] == "redact":
                    values[name] = how["value"]
                elif values.get(name) is not None:
                    values[name] = hashlib.sha256(str(values[name]).encode()).hexdigest()

        return self._apply(body, body["erasures"], change)

    def _restrict(self, body: dict[str, Any]) -> Reply:
        def change(record: SourceRecord, item: dict[str, Any]) -> None:
            record.restricted = bool(body["restricted"])

        return self._apply(body, body["refs"], change)
