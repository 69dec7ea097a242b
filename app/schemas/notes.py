"""Internal notes on a request (staff only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.requests.notes import NOTE_MAX


def _stripped(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise ValueError("The note is blank.")
    return stripped


# The documented length holds for the text as sent; it is stripped after (stripping first let
# 4,001 characters through when one was a leading newline: the contract fuzz found it).
NoteText = Annotated[str, Field(min_length=1, max_length=NOTE_MAX), AfterValidator(_stripped)]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NoteText = Field(description="never shown to the subject; stored encrypted")


class NoteOut(BaseModel):
    id: str
    at: datetime
    author: str = Field(description="staff:<user id>")
    role: str
    text: str


class NoteList(BaseModel):
    items: list[NoteOut]
