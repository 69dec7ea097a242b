"""The http connector: an internal service that implements the DSR contract (docs/datamap.md).

``POST {base_url}/dsr/find | export | correct | erase | restrict`` with ``Authorization: Bearer
<service token>`` and JSON bodies. Reads are paged (``cursor`` / ``next_cursor``) so a large
subject streams; each change call is one request the service must apply all or nothing.
Only fields the data map gives the role are kept from answers; anything else is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.datamap.connectors.base import (
    ApplyResult,
    Connector,
    Erasure,
    FieldUpdate,
    Handover,
    RecordKey,
    RecordRef,
    SourceRejected,
    SourceUnavailable,
    SubjectRecord,
    check_update_columns,
    json_value,
)
from app.datamap.identifiers import SubjectIdentifiers
from app.datamap.schema import CollectionSpec, HttpSource


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WireRef(_Loose):
    key: str | int
    role: str


class WireHandover(_Loose):
    processor: str = Field(min_length=1, max_length=64)
    at: datetime | None = None
    reference: str | None = None


class WireRecord(_Loose):
    key: str | int
    role: str
    fields: dict[str, Any] = Field(default_factory=dict)
    handovers: list[WireHandover] = Field(default_factory=list)
    retention_start: datetime | None = None
    consent: bool | None = None
    consent_at: datetime | None = None
    restricted: bool | None = None
    in_flight: bool | None = None
    supplier: str | None = Field(default=None, max_length=64)
    supplier_reference: str | None = Field(default=None, max_length=200)


class FindPage(_Loose):
    records: list[WireRef]
    next_cursor: str | None = None


class ExportPage(_Loose):
    records: list[WireRecord]
    next_cursor: str | None = None


class WireApplied(_Loose):
    resource: str
    key: str | int
    role: str


class AppliedAnswer(_Loose):
    applied: list[WireApplied]


class HttpConnector(Connector):
    """An internal service speaking the DSR contract, through the injected HTTP client."""

    def __init__(
        self,
        name: str,
        source: HttpSource,
        *,
        http: httpx.AsyncClient,
        collections: Sequence[CollectionSpec] = (),
    ) -> None:
        self.name = name
        self._source = source
        self._http = http
        self._base = source.base_url.rstrip("/")
        self._token = source.resolve_token()
        self._collections = {spec.name: spec for spec in collections}
        self._by_resource = {spec.resource: spec for spec in collections if spec.resource}

    async def _post(self, verb: str, body: dict[str, Any]) -> Any:
        try:
            response = await self._http.post(
                f"{self._base}/dsr/{verb}",
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._source.timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise SourceUnavailable(self.name, type(exc).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise SourceUnavailable(self.name, f"HTTP {response.status_code}")
        if not response.is_success:
            raise SourceRejected(self.name, f"HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise SourceRejected(self.name, "answer is not JSON") from None

    def _parse(self, model: type[BaseModel], data: Any) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError:
            raise SourceRejected(
                self.name, f"answer does not match the {model.__name__} contract"
            ) from None

    def _read_body(self, spec: CollectionSpec, subject: SubjectIdentifiers) -> dict[str, Any]:
        return {
            "resource": spec.resource,
            "subject": subject.as_payload(),
            "roles": sorted(spec.roles),
            "limit": self._source.page_size,
            "cursor": None,
        }

    async def _pages(
        self, verb: str, model: type[BaseModel], body: dict[str, Any]
    ) -> AsyncIterator[Any]:
        seen: set[str] = set()
        while True:
            page = self._parse(model, await self._post(verb, body))
            yield page
            cursor = page.next_cursor
            if not cursor:
                return
            if cursor in seen:
                raise SourceRejected(self.name, "pagination cursor repeats")
            seen.add(cursor)
            body = {**body, "cursor": cursor}

    async def check(self) -> None:
        """Any answer but a server error counts as up (the contract has no health verb)."""
        try:
            response = await self._http.post(
                f"{self._base}/dsr/find",
                json={},
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._source.timeout_seconds,
            )
        except httpx.TransportError as exc:
            raise SourceUnavailable(self.name, type(exc).__name__) from None
        if response.status_code >= 500:
            raise SourceUnavailable(self.name, f"HTTP {response.status_code}")

    async def find(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[RecordRef]:
        async for page in self._pages("find", FindPage, self._read_body(collection, subject)):
            for ref in page.records:
                if ref.role in collection.roles:
                    yield RecordRef(collection.name, ref.role, ref.key)

    async def export(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[SubjectRecord]:
        async for page in self._pages("export", ExportPage, self._read_body(collection, subject)):
            for wire in page.records:
                role = collection.roles.get(wire.role)
                if role is None:
                    continue
                allowed = {field.column for field in role.fields}
                yield SubjectRecord(
                    collection=collection.name,
                    role=wire.role,
                    key=wire.key,
                    fields={k: v for k, v in wire.fields.items() if k in allowed},
                    handovers=[
                        Handover(processor=h.processor, at=h.at, reference=h.reference)
                        for h in wire.handovers
                    ],
                    retention_start=wire.retention_start,
                    consent=wire.consent,
                    consent_at=wire.consent_at,
                    restricted=wire.restricted,
                    in_flight=wire.in_flight if collection.in_flight else None,
                    supplier=wire.supplier,
                    supplier_reference=wire.supplier_reference,
                )

    def _spec(self, name: str) -> CollectionSpec:
        spec = self._collections.get(name)
        if spec is None:
            raise ValueError(f"collection {name!r} is not in source {self.name!r}")
        return spec

    def _result(self, answer: Any, wanted: list[RecordRef]) -> ApplyResult:
        parsed: AppliedAnswer = self._parse(AppliedAnswer, answer)
        done: set[tuple[str, str, RecordKey]] = set()
        for item in parsed.applied:
            spec = self._by_resource.get(item.resource)
            if spec is not None:
                done.add((spec.name, item.role, item.key))
        missing = tuple(ref for ref in wanted if (ref.collection, ref.role, ref.key) not in done)
        return ApplyResult(len(wanted) - len(missing), missing)

    async def correct(
        self, updates: Sequence[FieldUpdate], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        changes = []
        for update in updates:
            spec = self._spec(update.collection)
            check_update_columns(spec, update.role, list(update.values))
            changes.append(
                {
                    "resource": spec.resource,
                    "key": update.key,
                    "role": update.role,
                    "fields": {k: json_value(v) for k, v in update.values.items()},
                }
            )
        answer = await self._post("correct", {"subject": subject.as_payload(), "changes": changes})
        return self._result(answer, [RecordRef(u.collection, u.role, u.key) for u in updates])

    async def erase(
        self, erasures: Sequence[Erasure], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        items = []
        for erasure in erasures:
            spec = self._spec(erasure.collection)
            if erasure.columns is not None:
                check_update_columns(spec, erasure.role, erasure.columns)
            item: dict[str, Any] = {
                "resource": spec.resource,
                "key": erasure.key,
                "role": erasure.role,
            }
            if erasure.columns is None and spec.erasure == "delete_row":
                item["delete_row"] = True
            else:
                item["fields"] = {
                    field.column: {
                        "strategy": spec.field_erasure(field),
                        **(
                            {"value": field.redact_value}
                            if spec.field_erasure(field) == "redact"
                            else {}
                        ),
                    }
                    for field in spec.roles[erasure.role].fields
                    if erasure.columns is None or field.column in erasure.columns
                }
            items.append(item)
        answer = await self._post("erase", {"subject": subject.as_payload(), "erasures": items})
        return self._result(answer, [RecordRef(e.collection, e.role, e.key) for e in erasures])

    async def restrict(
        self, refs: Sequence[RecordRef], *, subject: SubjectIdentifiers, restricted: bool
    ) -> ApplyResult:
        body = {
            "subject": subject.as_payload(),
            "restricted": restricted,
            "refs": [
                {"resource": self._spec(ref.collection).resource, "key": ref.key, "role": ref.role}
                for ref in refs
            ],
        }
        answer = await self._post("restrict", body)
        return self._result(answer, list(refs))
