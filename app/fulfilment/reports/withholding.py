"""What an access report withholds under PIPA Art. 35(4): a decision's refusals, as withholdings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.vocabulary import (
    GROUNDS,
    REFUSAL_TO_WITHHOLDING_GROUND,
    WITHHOLDING_GROUNDS,
    Text,
)


@dataclass(frozen=True)
class Withholding:
    """Withhold matching items from one report under PIPA Art. 35(4) (a decision for this
    request, on top of what the data map withholds). None matches anything. ``ground`` is a
    withholding ground, or the refusal ground of the decision when it has no such counterpart
    (``policy_6_2``)."""

    ground: str
    item: str | None = None
    collection: str | None = None
    role: str | None = None
    explanation: Text | None = None

    def __post_init__(self) -> None:
        if self.ground not in WITHHOLDING_GROUNDS and (
            self.ground not in GROUNDS or "access" not in GROUNDS[self.ground].applies_to
        ):
            raise ValueError(f"unknown withholding ground {self.ground!r}")

    @classmethod
    def decided(cls, *, item: str, ground: str, explanation: str | None) -> Withholding:
        """The reviewer's refusal of one access item, as a withholding of it everywhere."""
        text = Text(ko=explanation, en=explanation) if explanation else None
        return cls(
            ground=REFUSAL_TO_WITHHOLDING_GROUND.get(ground, ground),
            item=item,
            explanation=text,
        )

    def matches(self, collection: str, role: str, item: str) -> bool:
        return (
            (self.item is None or self.item == item)
            and (self.collection is None or self.collection == collection)
            and (self.role is None or self.role == role)
        )

    def as_payload(self) -> dict[str, Any]:
        return {
            "ground": self.ground,
            "item": self.item,
            "collection": self.collection,
            "role": self.role,
            "explanation": self.explanation.model_dump() if self.explanation else None,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Withholding:
        explanation = data.get("explanation")
        return cls(
            ground=data["ground"],
            item=data.get("item"),
            collection=data.get("collection"),
            role=data.get("role"),
            explanation=Text(**explanation) if explanation else None,
        )
