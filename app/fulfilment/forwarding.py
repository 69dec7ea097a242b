"""Data another controller supplied: its correction or deletion is passed on to that controller.

Enforcement Decree Art. 43(2): a controller that registered personal data received from another
controller, asked to correct or delete it, corrects or deletes it, or tells the supplying
controller without delay, and acts on the result. qx-dsr does both: it changes its own copy
(the request's deadline is its own) and, in the transaction that completes the request, queues
``personal_data.correction_requested`` / ``personal_data.deletion_requested`` to each supplying
controller (a ``controller`` party in the registry, over its channel) with only the records that
controller supplied. Its answer (``applied`` / ``rejected`` with a reason) is recorded like any
acknowledgement and shown in the request's staff view.

Which records a controller supplied comes from the data map's ``origin`` (docs/datamap.md).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from app.datamap.connectors import SubjectRecord
from app.datamap.schema import CollectionSpec

CORRECTION_REQUESTED = "personal_data.correction_requested"
DELETION_REQUESTED = "personal_data.deletion_requested"


def supplier_of(spec: CollectionSpec, record: SubjectRecord) -> dict[str, str] | None:
    """The controller that supplied this record and its reference for it; None if none did."""
    origin, controller = spec.record_origin(record.role, record.supplier)
    if origin != "controller" or not controller:
        return None
    return {"controller": controller, "reference": record.supplier_reference or str(record.key)}


def controller_notices(records: list[dict[str, Any]], *, event_type: str) -> list[dict[str, Any]]:
    """One notice per supplying controller with only its records (``records``: plan entries
    holding ``supplier`` and ``items``: new values for a correction, item codes for a deletion)."""
    per_controller: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        supplier = record.get("supplier")
        if not supplier or not record.get("items"):
            continue
        per_controller[supplier["controller"]].append(
            {"reference": supplier["reference"], "items": record["items"]}
        )
    return [
        {
            "processor": code,
            "event_type": event_type,
            "data": {"records": sorted(entries, key=lambda entry: entry["reference"])},
        }
        for code, entries in sorted(per_controller.items())
    ]
