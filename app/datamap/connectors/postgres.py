"""The postgres connector: a subject's records in PostgreSQL tables, read with server-side cursors.

Table and column names come from the data map and reach SQL only through ``quote_ident``;
identifiers and new values are always bound parameters. Reads run in a read-only transaction per
collection role and stream through an asyncpg cursor (``prefetch`` rows at a time), so memory
stays flat however many records a subject has. Each change call is one transaction.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.datamap.connectors.base import (
    BATCH_ROWS,
    ApplyResult,
    Connector,
    Erasure,
    FieldUpdate,
    Handover,
    RecordBatch,
    RecordKey,
    RecordRef,
    RowLayout,
    SourceRejected,
    SourceUnavailable,
    SubjectRecord,
    check_update_columns,
)
from app.datamap.identifiers import SubjectIdentifiers, identifier_candidates
from app.datamap.schema import CollectionSpec, RoleSpec, quote_ident

HASHED = re.compile(r"[0-9a-f]{64}")
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


async def connect(url: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    """asyncpg connection from any PostgreSQL URL (also ``?host=/socket/dir`` for local servers)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host or "127.0.0.1"
    return await asyncpg.connect(
        user=parsed.username or "postgres",
        password=parsed.password,
        host=host if isinstance(host, str) else host[0],
        port=parsed.port or 5432,
        database=parsed.database or "postgres",
        timeout=connect_timeout,
    )


def _key(value: Any) -> RecordKey:
    if isinstance(value, int | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


@dataclass(frozen=True)
class _Query:
    sql: str
    args: list[Any]


class _Sql:
    """Statements for one collection role, built once from quoted identifiers."""

    def __init__(self, schema: str, spec: CollectionSpec, role_name: str) -> None:
        self.spec = spec
        self.role_name = role_name
        self.role: RoleSpec = spec.roles[role_name]
        table = spec.table or ""
        self.table = f"{quote_ident(spec.schema_name or schema)}.{quote_ident(table)}"
        self.key = quote_ident(spec.record_key)
        self._field_names = [field.column for field in self.role.fields]
        self._field_count = len(self._field_names)
        self.origin = spec.origin_of(role_name)
        self._processor_items = [
            tuple(processor.items) if processor.items else None for processor in spec.processors
        ]
        # The layout of ``select``'s rows, for the report's bulk read.
        meta = 1 + self._field_count + 3 * len(spec.processors)
        self.layout = RowLayout(
            fields=tuple(range(1, 1 + self._field_count)),
            handovers=tuple(
                (1 + self._field_count + 3 * n, 2 + self._field_count + 3 * n, items)
                for n, items in enumerate(self._processor_items)
            ),
            retention_start=meta,
            consent=meta + 1,
            consent_at=meta + 2,
            supplier=meta + 5,
        )

    def match(self, subject: SubjectIdentifiers, first_param: int) -> tuple[str, list[Any]] | None:
        """``(a = ANY($n) OR lower(b) = ANY($m))`` for the identifiers the subject has."""
        parts: list[str] = []
        args: list[Any] = []
        for match in self.role.match:
            value = subject.get(match.identifier)
            if value is None:
                continue
            candidates = identifier_candidates(value, match.identifier, match.format)
            if not candidates:
                continue
            column = quote_ident(match.column)
            param = f"${first_param + len(args)}"
            if match.identifier == "email" and "ci" in match.format:
                parts.append(f"lower({column}::text) = ANY({param}::text[])")
            else:
                parts.append(f"{column} = ANY({param})")
            args.append(candidates)
        if not parts:
            return None
        return "(" + " OR ".join(parts) + ")", args

    def select(self, subject: SubjectIdentifiers) -> _Query | None:
        """The role's fields, then the record's metadata, in the fixed layout ``record`` reads:
        key, fields..., (code, at, reference) per processor, clock, consent, consent_at,
        restricted, in_flight, supplier, supplier_reference. Columns the map does not name are
        selected as NULL."""
        where = self.match(subject, 1)
        if where is None:
            return None

        def column(name: str | None) -> str:
            return quote_ident(name) if name else "NULL"

        exprs = [self.key, *(quote_ident(field.column) for field in self.role.fields)]
        for processor in self.spec.processors:
            exprs += [
                column(processor.column),
                column(processor.at_column),
                column(processor.reference_column),
            ]
        consent = self.spec.consent
        exprs += [
            column(self.spec.retention.clock_column),
            column(consent.column if consent else None),
            column(consent.at_column if consent else None),
            column(self.spec.restriction_column),
            f"({quote_ident(self.spec.in_flight.column)} IS NULL)"
            if self.spec.in_flight
            else "NULL",
            column(self.origin.controller_column),
            column(self.origin.reference_column),
        ]
        condition, args = where
        return _Query(f"SELECT {', '.join(exprs)} FROM {self.table} WHERE {condition}", args)

    def record(self, row: asyncpg.Record) -> SubjectRecord:
        """One row in the layout of ``select`` as the subject's record (hot path: no lookups)."""
        values = tuple(row)
        count = self._field_count
        fields = dict(zip(self._field_names, values[1 : 1 + count], strict=True))
        handovers = []
        position = 1 + count
        for items in self._processor_items:
            code, at, reference = values[position : position + 3]
            position += 3
            if code is not None:
                handovers.append(
                    Handover(
                        processor=str(code),
                        at=at,
                        reference=None if reference is None else str(reference),
                        items=items,
                    )
                )
        clock, consent, consent_at, restricted, in_flight, supplier, supplier_ref = values[
            position : position + 7
        ]
        return SubjectRecord(
            collection=self.spec.name,
            role=self.role_name,
            key=_key(values[0]),
            fields=fields,
            handovers=handovers,
            retention_start=clock,
            consent=None if consent is None else bool(consent),
            consent_at=consent_at,
            restricted=None if restricted is None else bool(restricted),
            in_flight=None if in_flight is None else bool(in_flight),
            supplier=None if supplier is None else str(supplier),
            supplier_reference=None if supplier_ref is None else str(supplier_ref),
        )


class PostgresConnector(Connector):
    """A PostgreSQL source. One connection, opened on first use, closed with the connector."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        schema: str = "public",
        collections: Sequence[CollectionSpec] = (),
        hasher: Callable[[str], str],
        prefetch: int = BATCH_ROWS,
        connect_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._url = url
        self._schema = schema
        self._collections = {spec.name: spec for spec in collections}
        self._hasher = hasher
        self._prefetch = prefetch
        self._connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None
        self._sql: dict[tuple[str, str], _Sql] = {}

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            try:
                self._conn = await connect(self._url, connect_timeout=self._connect_timeout)
            except _UNAVAILABLE as exc:
                raise SourceUnavailable(self.name, type(exc).__name__) from None
            except asyncpg.PostgresError as exc:
                raise SourceRejected(self.name, type(exc).__name__) from None
        return self._conn

    def _failure(self, exc: BaseException) -> Exception:
        if isinstance(exc, _UNAVAILABLE):
            return SourceUnavailable(self.name, type(exc).__name__)
        # Only the class: driver messages can quote bound values.
        return SourceRejected(self.name, type(exc).__name__)

    def _statements(self, spec: CollectionSpec, role: str) -> _Sql:
        key = (spec.name, role)
        if key not in self._sql:
            self._sql[key] = _Sql(self._schema, spec, role)
        return self._sql[key]

    async def check(self) -> None:
        conn = await self._connection()
        try:
            await conn.fetchval("SELECT 1")
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise self._failure(exc) from None

    async def find(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[RecordRef]:
        async for record in self.export(collection, subject=subject):
            yield record.ref

    async def export(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[SubjectRecord]:
        async for batch in self.export_batches(collection, subject=subject):
            statements = self._statements(collection, batch.role)
            for row in batch.rows:
                yield statements.record(row)

    async def export_batches(
        self, collection: CollectionSpec, *, subject: SubjectIdentifiers
    ) -> AsyncIterator[RecordBatch]:
        """Each role's rows, ``prefetch`` per round trip, as asyncpg returns them (no copy)."""
        conn = await self._connection()
        for role in collection.roles:
            statements = self._statements(collection, role)
            query = statements.select(subject)
            if query is None:
                continue
            try:
                async with conn.transaction(readonly=True, isolation="repeatable_read"):
                    cursor = await conn.cursor(query.sql, *query.args)
                    while rows := await cursor.fetch(self._prefetch):
                        yield RecordBatch(collection.name, role, statements.layout, rows)
            except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
                raise self._failure(exc) from None

    def _spec(self, name: str) -> CollectionSpec:
        spec = self._collections.get(name)
        if spec is None:
            raise ValueError(f"collection {name!r} is not in source {self.name!r}")
        return spec

    async def _run(self, work: Callable[[asyncpg.Connection], Any]) -> ApplyResult:
        conn = await self._connection()
        try:
            async with conn.transaction():
                result: ApplyResult = await work(conn)
                return result
        except (asyncpg.PostgresError, *_UNAVAILABLE) as exc:
            raise self._failure(exc) from None

    async def correct(
        self, updates: Sequence[FieldUpdate], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        # Records getting the same new values go in one statement (a phone corrected
        # everywhere is one UPDATE per collection role, not one per record).
        groups: dict[tuple[str, str, tuple[tuple[str, Any], ...]], list[RecordKey]] = defaultdict(
            list
        )
        for update in updates:
            check_update_columns(self._spec(update.collection), update.role, list(update.values))
            values = tuple(sorted(update.values.items()))
            groups[(update.collection, update.role, values)].append(update.key)

        async def work(conn: asyncpg.Connection) -> ApplyResult:
            applied, missing = 0, []
            for (collection, role, values), keys in groups.items():
                sql = self._statements(self._spec(collection), role)
                sets = ", ".join(
                    f"{quote_ident(column)} = ${index}"
                    for index, (column, _) in enumerate(values, 1)
                )
                args: list[Any] = [value for _, value in values]
                done = await self._update(conn, sql, sets, args, keys, subject)
                applied += len(done)
                missing += [RecordRef(collection, role, key) for key in keys if key not in done]
            return ApplyResult(applied, tuple(missing))

        return await self._run(work)

    async def _update(
        self,
        conn: asyncpg.Connection,
        sql: _Sql,
        sets: str,
        args: list[Any],
        keys: list[RecordKey],
        subject: SubjectIdentifiers,
    ) -> set[RecordKey]:
        """UPDATE the given records that still match the subject; the keys actually changed."""
        where = sql.match(subject, len(args) + 2)
        if where is None:
            return set()
        condition, match_args = where
        statement = (
            f"UPDATE {sql.table} SET {sets} WHERE {sql.key} = ANY(${len(args) + 1}) "
            f"AND {condition} RETURNING {sql.key}"
        )
        rows = await conn.fetch(statement, *args, list(keys), *match_args)
        return {_key(row[0]) for row in rows}

    async def erase(
        self, erasures: Sequence[Erasure], *, subject: SubjectIdentifiers
    ) -> ApplyResult:
        groups: dict[tuple[str, str, tuple[str, ...] | None], list[RecordKey]] = defaultdict(list)
        for erasure in erasures:
            spec = self._spec(erasure.collection)
            if erasure.columns is not None:
                check_update_columns(spec, erasure.role, erasure.columns)
            columns = tuple(sorted(erasure.columns)) if erasure.columns is not None else None
            groups[(erasure.collection, erasure.role, columns)].append(erasure.key)

        async def work(conn: asyncpg.Connection) -> ApplyResult:
            applied, missing = 0, []
            for (collection, role, columns), keys in groups.items():
                spec = self._spec(collection)
                sql = self._statements(spec, role)
                done = await self._erase_group(conn, sql, spec, role, columns, keys, subject)
                applied += len(done)
                missing += [RecordRef(collection, role, key) for key in keys if key not in done]
            return ApplyResult(applied, tuple(missing))

        return await self._run(work)

    async def _erase_group(
        self,
        conn: asyncpg.Connection,
        sql: _Sql,
        spec: CollectionSpec,
        role: str,
        columns: tuple[str, ...] | None,
        keys: list[RecordKey],
        subject: SubjectIdentifiers,
    ) -> set[RecordKey]:
        where = sql.match(subject, 2)
        if where is None:
            return set()
        condition, match_args = where
        if columns is None and spec.erasure == "delete_row":
            rows = await conn.fetch(
                f"DELETE FROM {sql.table} WHERE {sql.key} = ANY($1) AND {condition} "
                f"RETURNING {sql.key}",
                list(keys),
                *match_args,
            )
            return {_key(row[0]) for row in rows}
        fields = [f for f in spec.roles[role].fields if columns is None or f.column in columns]
        strategies = {field.column: spec.field_erasure(field) for field in fields}
        if "hash" not in strategies.values():
            sets, args = [], []
            for field in fields:
                if strategies[field.column] == "null":
                    sets.append(f"{quote_ident(field.column)} = NULL")
                else:
                    args.append(field.redact_value)
                    sets.append(f"{quote_ident(field.column)} = ${len(args)}")
            return await self._update(conn, sql, ", ".join(sets), args, keys, subject)
        # Hashing needs each current value: lock the rows, compute, write back.
        names = [quote_ident(field.column) for field in fields]
        rows = await conn.fetch(
            f"SELECT {sql.key}, {', '.join(names)} FROM {sql.table} "
            f"WHERE {sql.key} = ANY($1) AND {condition} FOR UPDATE",
            list(keys),
            *match_args,
        )
        assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(names, 1))
        statement = f"UPDATE {sql.table} SET {assignments} WHERE {sql.key} = ${len(names) + 1}"
        batch = []
        for row in rows:
            values: list[Any] = []
            for index, field in enumerate(fields, 1):
                strategy, current = strategies[field.column], row[index]
                if strategy == "null":
                    values.append(None)
                elif strategy == "redact":
                    values.append(field.redact_value)
                elif current is None or HASHED.fullmatch(str(current)):
                    values.append(current)  # idempotent: already erased
                else:
                    values.append(self._hasher(str(current)))
            batch.append((*values, row[0]))
        if batch:
            await conn.executemany(statement, batch)
        return {_key(row[0]) for row in rows}

    async def restrict(
        self, refs: Sequence[RecordRef], *, subject: SubjectIdentifiers, restricted: bool
    ) -> ApplyResult:
        groups: dict[tuple[str, str], list[RecordKey]] = defaultdict(list)
        for ref in refs:
            spec = self._spec(ref.collection)
            if not spec.restriction_column:
                raise ValueError(f"collection {spec.name!r} has no restriction_column")
            groups[(ref.collection, ref.role)].append(ref.key)

        async def work(conn: asyncpg.Connection) -> ApplyResult:
            applied, missing = 0, []
            for (collection, role), keys in groups.items():
                spec = self._spec(collection)
                sql = self._statements(spec, role)
                sets = f"{quote_ident(spec.restriction_column or '')} = $1"
                done = await self._update(conn, sql, sets, [restricted], keys, subject)
                applied += len(done)
                missing += [RecordRef(collection, role, key) for key in keys if key not in done]
            return ApplyResult(applied, tuple(missing))

        return await self._run(work)
