"""Internal notes on a request (staff only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


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
