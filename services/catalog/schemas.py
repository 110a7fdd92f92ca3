"""Request bodies the catalog accepts (the commands' fields). Unknown fields are rejected; types are strict (no "5"
for 5). What a body's ``changes()`` refuses raises the domain errors of ``domain.py``."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from services.catalog.domain import ACTIVITY_KINDS, COMPLETION_RULES, InvalidArgument, MissingField

SLUG_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
# BCP 47 in the shape used in practice: a 2-3 letter language, then subtags (script, region, variants).
LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")

INT32_MAX = 2_147_483_647
ID_MAX = 9_223_372_036_854_775_807


def _decimal(places: int, upper: Decimal) -> Any:
    def parse(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        number = Decimal(str(value))
        if not number.is_finite():
            raise ValueError("must be a finite number")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -places:
            raise ValueError(f"must have at most {places} decimal places")
        if number > upper:
            raise ValueError(f"must be at most {upper}")
        return number

    return BeforeValidator(parse)


CreditHours = Annotated[Decimal, _decimal(4, Decimal("99999999")), Field(ge=0)]
ScaledScore = Annotated[Decimal, _decimal(4, Decimal(1)), Field(ge=0, le=1)]
Position = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
ForeignId = Annotated[StrictInt, Field(ge=1, le=ID_MAX)]
Title = Annotated[StrictStr, Field(max_length=300)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CourseFields(_Body):
    """Every course field a client may set; shared by create and update."""

    slug: StrictStr | None = None
    title: Title | None = None
    subtitle: Annotated[StrictStr, Field(max_length=500)] | None = None
    summary: Annotated[StrictStr, Field(max_length=20_000)] | None = None
    language: StrictStr | None = None
    completion_rule: StrictStr | None = None
    estimated_minutes: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    credit_hours: CreditHours | None = None
    credit_kind: Annotated[StrictStr, Field(max_length=64)] | None = None
    credit_expires_after_months: Annotated[StrictInt, Field(ge=1, le=1200)] | None = None
    certificate_template_id: ForeignId | None = None

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        # Blank is left to the required-field check (400 missing_field).
        if value is None or not value.strip():
            return value
        if len(value) > 100:
            raise ValueError("must be at most 100 characters")
        if not SLUG_RE.fullmatch(value):
            raise ValueError("must be lowercase letters and digits in words joined by single hyphens "
                             "(e.g. 'intro-to-mobieus')")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 35 or not LANGUAGE_RE.fullmatch(value):
            raise ValueError("must be a BCP 47 language tag such as 'en' or 'pt-BR'")
        return value

    @field_validator("completion_rule")
    @classmethod
    def _completion_rule(cls, value: str | None) -> str | None:
        if value is not None and value not in COMPLETION_RULES:
            raise ValueError(f"must be one of {', '.join(COMPLETION_RULES)}")
        return value

    @field_validator("credit_kind")
    @classmethod
    def _credit_kind(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank (send null to clear it)")
        return value

    @field_validator("title", "subtitle", "summary")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None


class CourseCreate(CourseFields):
    slug: StrictStr
    title: Title


class CourseUpdate(CourseFields):
    def changes(self) -> dict[str, Any]:
        """The fields the client sent (``null`` included: it clears); slug and title cannot be cleared."""
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        for required in ("slug", "title"):
            if required in sent and (sent[required] is None or not str(sent[required]).strip()):
                raise MissingField(required)
        return sent


class NodeCreate(_Body):
    """A module or a lesson."""

    title: Title
    position: Position | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return value.strip()


class NodeUpdate(_Body):
    title: Title | None = None
    position: Position | None = None

    def changes(self) -> dict[str, Any]:
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        if "title" in sent and (sent["title"] is None or not sent["title"].strip()):
            raise MissingField("title")
        if "position" in sent and sent["position"] is None:
            raise InvalidArgument("'position' must be a positive integer.")
        if "title" in sent:
            sent["title"] = sent["title"].strip()
        return sent


class ActivityFields(_Body):
    title: Title | None = None
    kind: StrictStr | None = None
    required: StrictBool | None = None
    position: Position | None = None
    scorm_package_id: ForeignId | None = None
    sco_identifier: Annotated[StrictStr, Field(max_length=255)] | None = None
    passing_score_scaled: ScaledScore | None = None
    #: scorm activities: whether launching an untracked item (an asset) completes the attempt (null: yes)
    complete_on_launch: StrictBool | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value not in ACTIVITY_KINDS:
            raise ValueError(f"must be one of {', '.join(ACTIVITY_KINDS)}")
        return value


class ActivityCreate(ActivityFields):
    title: Title
    kind: StrictStr


class ActivityUpdate(ActivityFields):
    def changes(self) -> dict[str, Any]:
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        for required in ("title", "kind"):
            if required in sent and (sent[required] is None or not sent[required].strip()):
                raise MissingField(required)
        for not_nullable in ("required", "position"):
            if not_nullable in sent and sent[not_nullable] is None:
                raise InvalidArgument(f"'{not_nullable}' cannot be null.")
        if "title" in sent:
            sent["title"] = sent["title"].strip()
        return sent


class Reorder(_Body):
    ids: list[ForeignId]
