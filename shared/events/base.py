from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, PlainSerializer

# Decimals travel as JSON numbers, never strings.
Number = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class EventModel(BaseModel):
    """Base of every payload: unknown fields are kept (forward compatible), docs come from field descriptions."""

    model_config = ConfigDict(extra="allow", frozen=True)

    #: the event type this payload travels as (``enrollment.completed``); empty on parts and bases
    event_type: ClassVar[str] = ""


class Credit(EventModel):
    hours: Number | None = None
    kind: str | None = None
    expires_after_months: int | None = None


__all__ = ["Credit", "EventModel", "Number", "datetime"]
