"""The statements intake sends (see ``intake``): few round trips, each doing all it can.

A request is written by one call of ``dsr_submit_request`` (migration 0024 says what it does:
claim the Idempotency-Key, lock the subject, check for an open request of the same type, then
insert the request with its history events, audit entries, outbox rows, restrictions or
suspensions and the idempotent answer). The data subject's intake runs it on an autocommit
connection, so with the identifier lookup before it a request costs two round trips; the staff
intake runs it inside its unit of work.
"""

# The identifiers a subject token proved, with what the "received" notice is sent to.
IDENTIFIERS = """
SELECT id, kind, blind_index, value_encrypted FROM subject_identifier
WHERE blind_index = ANY($1::varchar(64)[])
"""

SUBMIT_REQUEST = (
    "SELECT outcome, open_request_id FROM dsr_submit_request("
    + ", ".join(f"${n}" for n in range(1, 25))
    + ")"
)
