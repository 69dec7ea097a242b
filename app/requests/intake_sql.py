"""The statements intake sends (see ``intake``): few round trips, each doing all it can."""

# A request is written on the session's own connection (so in its transaction) in two
# statements: the subject lock (with, for the app, the identifier and the Idempotency-Key claim);
# then one that checks for an open request of the same type and, only if there is none, inserts
# the request, its history events, audit entries, outbox rows, restrictions or suspensions and
# stores the idempotent answer. The lock and the check are two statements because READ COMMITTED
# takes a snapshot per statement: a check in the statement that waited for the lock would not
# see the request its holder just committed.

# Sorted keys, locked in that order by every intake, so two intakes never deadlock.
LOCK_SUBJECTS = (
    "SELECT pg_advisory_xact_lock(hashtextextended('dsr:' || k, 0)) FROM unnest($1::text[]) AS k"
)

WRITE_REQUEST = """
WITH open_request AS (
    SELECT id FROM dsr_request
    WHERE type = $2 AND status = ANY($3::text[]) AND subject_indexes && $4::varchar(64)[]
    LIMIT 1
), new_request AS (
    INSERT INTO dsr_request (
        id, type, status, subject_index, subject_indexes, identifier_ids, notice_identifier_id,
        notice_channel, intake_channel, verification_method, verification, locale, scope,
        body_encrypted, created_by, received_at, due_at, original_due_at, extensions, round,
        refusals, fulfilment_attempts, updated_at
    )
    SELECT $1, $2, 'received', ($4::varchar(64)[])[1], $4, $5::uuid[], $6, $7, $8, $9,
        $10::text::jsonb, $11, $12::text::jsonb, $13, $14, $15, $16, $16, 0, 1, '[]', 0, $15
    WHERE NOT EXISTS (SELECT FROM open_request)
    RETURNING id
), events AS (
    INSERT INTO dsr_request_event (
        request_id, at, actor, role, action, from_status, to_status, details
    )
    SELECT new_request.id, $15, e.actor, e.role, e.action, e.from_status, e.to_status,
        e.details::jsonb
    FROM new_request,
        unnest($17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[])
        WITH ORDINALITY AS e(actor, role, action, from_status, to_status, details, n)
    ORDER BY e.n
), audit AS (
    INSERT INTO audit_entry (
        at, actor, role, action, target_type, target_id, client_ip, client_ip_encrypted, details
    )
    SELECT $15, a.actor, a.role, a.action, 'request', new_request.id::text, a.client_ip,
        a.client_ip_encrypted, a.details::jsonb
    FROM new_request,
        unnest($23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $47::bytea[])
        WITH ORDINALITY AS a(actor, role, action, client_ip, details, client_ip_encrypted, n)
    ORDER BY a.n
), outbox AS (
    INSERT INTO outbox_message (
        id, kind, topic, target, payload, status, attempts, max_attempts, next_attempt_at,
        created_at, updated_at, request_ref, dedupe_key
    )
    SELECT o.id, o.kind, o.topic, o.target, o.payload, 'pending', 0, o.max_attempts,
        o.next_attempt_at, $15, $15, new_request.id, o.dedupe_key
    FROM new_request,
        unnest($28::uuid[], $29::text[], $30::text[], $31::text[], $32::bytea[], $33::int[],
            $34::timestamptz[], $35::text[])
        AS o(id, kind, topic, target, payload, max_attempts, next_attempt_at, dedupe_key)
), restricted AS (
    INSERT INTO processing_restriction (
        id, subject_key, item, role, record_ref, request_id, created_at
    )
    SELECT r.id, r.subject_key, r.item, r.role, r.record_ref, new_request.id, $15
    FROM new_request,
        unnest($38::uuid[], $39::text[], $40::text[], $41::text[], $42::text[])
        AS r(id, subject_key, item, role, record_ref)
    ON CONFLICT DO NOTHING
), suspended AS (
    INSERT INTO processing_suspension (
        id, subject_key, purpose, request_id, consent_withdrawal, since
    )
    SELECT p.id, p.subject_key, p.purpose, new_request.id, p.consent_withdrawal, $15
    FROM new_request, unnest($43::uuid[], $44::text[], $45::text[], $46::bool[])
        AS p(id, subject_key, purpose, consent_withdrawal)
    ON CONFLICT DO NOTHING
), answer AS (
    UPDATE idempotency_record SET status_code = 201, response = $36::text::jsonb
    WHERE id = $37 AND EXISTS (SELECT FROM new_request)
)
SELECT id FROM open_request
"""


# An app request's first statement: the subject lock (``LOCK_SUBJECTS`` for its one key) and
# the verified identifier, in one round trip (round trips, not SQL, are what intake pays for).
IDENTIFIER = """
SELECT pg_advisory_xact_lock(hashtextextended('dsr:' || $1, 0)) AS locked,
    i.id, i.kind, i.value_encrypted
FROM (VALUES (1)) AS one (n) LEFT JOIN subject_identifier AS i ON i.blind_index = $1
"""
# The same, claiming the Idempotency-Key first (``claimed`` is null when the key was used
# before: an answer to replay, a key reused, or one expired). Claim, then lock, as before.
IDENTIFIER_CLAIMING = """
WITH claimed AS (
    INSERT INTO idempotency_record (id, principal, key, fingerprint, created_at, expires_at)
    VALUES ($2, $3, $4, $5, $6, $7)
    ON CONFLICT ON CONSTRAINT uq_idempotency_record_key DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM claimed) AS claimed,
    pg_advisory_xact_lock(hashtextextended('dsr:' || $1, 0)) AS locked,
    i.id, i.kind, i.value_encrypted
FROM (VALUES (1)) AS one (n) LEFT JOIN subject_identifier AS i ON i.blind_index = $1
"""
