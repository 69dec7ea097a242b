"""intake writes a request in one statement: dsr_submit_request()

A request used to be written in four round trips (BEGIN; the subject lock; the check and the
inserts; COMMIT). This function does the same work in one call, so the data subject's intake
runs it on an autocommit connection in a single round trip (the staff intake calls it inside
its unit of work):

1. claims the Idempotency-Key, when one is given and not claimed before (``p_claim_new``);
   a key still held by an earlier call answers ``key_used`` and writes nothing;
2. takes the subject lock on every identifier of the request, in sorted order (two intakes
   never deadlock);
3. looks for an open request of the same type, in a statement of its own, so that it sees the
   request an intake holding the lock has just committed (READ COMMITTED takes a snapshot per
   statement): if there is one it answers ``duplicate`` with its id, and the claim is undone
   (the lookup goes through the GIN index on ``subject_indexes``, now without ``fastupdate``);
4. else inserts the request, its history events, audit entries, outbox rows, restrictions or
   suspensions, and stores the idempotent answer, and answers ``created``.

What each row holds is computed by the caller (``app/requests/intake.py``): the function only
writes it. The history events, audit entries, outbox rows, restrictions and suspensions come as
one JSON document (``p_rows``; byte strings in base64): as some thirty arrays they cost the
driver more to encode than the rest of the intake. A change to these tables' columns must
change the function in a new migration.

Revision ID: 0024
Revises: 0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBMIT_REQUEST = """
CREATE OR REPLACE FUNCTION dsr_submit_request(
    p_id uuid,
    p_type text,
    p_open_statuses text[],
    p_indexes varchar[],
    p_identifier_ids uuid[],
    p_notice_identifier_id uuid,
    p_notice_channel text,
    p_intake_channel text,
    p_verification_method text,
    p_verification text,
    p_locale text,
    p_scope text,
    p_body_encrypted bytea,
    p_created_by text,
    p_now timestamptz,
    p_due_at timestamptz,
    p_rows jsonb,
    p_answer text,
    p_claim_id uuid,
    p_claim_new bool,
    p_claim_principal text,
    p_claim_key text,
    p_claim_fingerprint text,
    p_claim_expires_at timestamptz
) RETURNS TABLE (outcome text, open_request_id uuid)
LANGUAGE plpgsql
-- Its plans are cached per connection, the first ones often on an empty table: a sequential
-- scan planned then would read every request on every call until autovacuum's first ANALYZE
-- (up to a minute of a busy start). Nothing here needs one: each statement has its index.
SET enable_seqscan = off
AS $fn$
DECLARE
    v_open uuid;
BEGIN
    IF p_claim_new THEN
        DELETE FROM idempotency_record AS r
        WHERE r.principal = p_claim_principal AND r.key = p_claim_key
            AND r.expires_at <= p_now;
        INSERT INTO idempotency_record AS r (
            id, principal, key, fingerprint, created_at, expires_at
        )
        VALUES (
            p_claim_id, p_claim_principal, p_claim_key, p_claim_fingerprint, p_now,
            p_claim_expires_at
        )
        ON CONFLICT ON CONSTRAINT uq_idempotency_record_key DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'key_used'::text, NULL::uuid;
            RETURN;
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('dsr:' || keys.k, 0))
    FROM (SELECT DISTINCT unnest(p_indexes)::text AS k ORDER BY 1) AS keys;

    -- Through the GIN index on subject_indexes whatever the table holds: the plan of this
    -- statement is cached for the connection, and a generic plan once read every open request
    -- of the type (by the type's index, LIMIT 1 making a long scan look cheap). Type and status
    -- are therefore not indexable here (`|| ''`), there is no LIMIT, and no sequential scan.
    SELECT r.id INTO v_open FROM dsr_request AS r
    WHERE r.subject_indexes && p_indexes::varchar(64)[]
        AND r.type || '' = p_type AND r.status || '' = ANY(p_open_statuses);
    IF FOUND THEN
        IF p_claim_new THEN
            DELETE FROM idempotency_record AS r WHERE r.id = p_claim_id;
        END IF;
        RETURN QUERY SELECT 'duplicate'::text, v_open;
        RETURN;
    END IF;

    WITH new_request AS (
        INSERT INTO dsr_request (
            id, type, status, subject_index, subject_indexes, identifier_ids,
            notice_identifier_id, notice_channel, intake_channel, verification_method,
            verification, locale, scope, body_encrypted, created_by, received_at, due_at,
            original_due_at, extensions, round, refusals, fulfilment_attempts, updated_at
        )
        VALUES (
            p_id, p_type, 'received', p_indexes[1], p_indexes::varchar(64)[],
            p_identifier_ids, p_notice_identifier_id, p_notice_channel, p_intake_channel,
            p_verification_method, p_verification::jsonb, p_locale, p_scope::jsonb,
            p_body_encrypted, p_created_by, p_now, p_due_at, p_due_at, 0, 1, '[]', 0, p_now
        )
        RETURNING id
    ), events AS (
        INSERT INTO dsr_request_event (
            request_id, at, actor, role, action, from_status, to_status, details
        )
        SELECT new_request.id, p_now, e.doc->>'actor', e.doc->>'role', e.doc->>'action',
            e.doc->>'from_status', e.doc->>'to_status', e.doc->'details'
        FROM new_request, jsonb_array_elements(p_rows->'events') WITH ORDINALITY AS e(doc, n)
        ORDER BY e.n
    ), audit AS (
        INSERT INTO audit_entry (
            at, actor, role, action, target_type, target_id, client_ip, client_ip_encrypted,
            details
        )
        SELECT p_now, a.doc->>'actor', a.doc->>'role', a.doc->>'action', 'request',
            new_request.id::text, a.doc->>'client_ip',
            decode(a.doc->>'client_ip_encrypted', 'base64'), (a.doc->>'details')::jsonb
        FROM new_request, jsonb_array_elements(p_rows->'audit') WITH ORDINALITY AS a(doc, n)
        ORDER BY a.n
    ), outbox AS (
        INSERT INTO outbox_message (
            id, kind, topic, target, payload, status, attempts, max_attempts, next_attempt_at,
            created_at, updated_at, request_ref, dedupe_key
        )
        SELECT (o.doc->>'id')::uuid, o.doc->>'kind', o.doc->>'topic', o.doc->>'target',
            decode(o.doc->>'payload', 'base64'), 'pending', 0, (o.doc->>'max_attempts')::int,
            (o.doc->>'next_attempt_at')::timestamptz, p_now, p_now, new_request.id,
            o.doc->>'dedupe_key'
        FROM new_request, jsonb_array_elements(p_rows->'outbox') AS o(doc)
    ), restricted AS (
        INSERT INTO processing_restriction (
            id, subject_key, item, role, record_ref, request_id, created_at
        )
        SELECT (r.doc->>'id')::uuid, r.doc->>'subject_key', r.doc->>'item', r.doc->>'role',
            r.doc->>'record_ref', new_request.id, p_now
        FROM new_request, jsonb_array_elements(p_rows->'restrictions') AS r(doc)
        ON CONFLICT DO NOTHING
    ), suspended AS (
        INSERT INTO processing_suspension (
            id, subject_key, purpose, request_id, consent_withdrawal, since
        )
        SELECT (s.doc->>'id')::uuid, s.doc->>'subject_key', s.doc->>'purpose', new_request.id,
            (s.doc->>'consent_withdrawal')::bool, p_now
        FROM new_request, jsonb_array_elements(p_rows->'suspensions') AS s(doc)
        ON CONFLICT DO NOTHING
    )
    UPDATE idempotency_record AS r SET status_code = 201, response = p_answer::jsonb
    FROM new_request
    WHERE r.id = p_claim_id;

    RETURN QUERY SELECT 'created'::text, NULL::uuid;
END
$fn$
"""


def upgrade() -> None:
    op.execute(SUBMIT_REQUEST)
    # Every intake looks its subject up in this index: with the pending list of ``fastupdate``
    # each lookup read every entry added since the last vacuum (70 pages after 6,000 intakes).
    op.execute("ALTER INDEX ix_dsr_request_subject_indexes SET (fastupdate = off)")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_dsr_request_subject_indexes RESET (fastupdate)")
    op.execute("DROP FUNCTION IF EXISTS dsr_submit_request")
