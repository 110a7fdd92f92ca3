"""SCORM 2004 run-time data model: the element table, its cross-element rules and the attempt.

Source: SCORM 2004 4th edition Run-Time Environment, section 4.2 (data model). Mirrored in
player.js (`MODEL_2004`); keep the two in step.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping

from services.scorm.runtime.cmi import (
    ID_CHAR,
    AttemptFields,
    CmiError,
    Rule,
    format_decimal,
    format_iso8601_duration,
    identifier,
    iso8601_duration,
    language,
    localized,
    parse_element,
    parse_iso8601_duration,
    parse_real,
    real,
    real_value,
    restorable,
    scale_score,
    short_identifier,
    string_max,
    timestamp,
    vocabulary,
)

COMPLETION_STATUSES = ("completed", "incomplete", "not attempted", "unknown")
SUCCESS_STATUSES = ("passed", "failed", "unknown")
INTERACTION_TYPES = (
    "true-false", "choice", "fill-in", "long-fill-in", "matching",
    "performance", "sequencing", "likert", "numeric", "other",
)  # fmt: skip
NAV_REQUESTS = ("continue", "previous", "exit", "exitAll", "abandon", "abandonAll", "suspendAll", "_none_")
_NAV_TARGET = re.compile(r"\{target=" + ID_CHAR + r"{1,4000}\}(?:choice|jump)")

_long_identifier = identifier(4000)
_score = real()
_scaled = real(-1, 1)
_measure = real(0, 1)


def _result(value: str) -> str | None:
    if value in ("correct", "incorrect", "unanticipated", "neutral") or parse_real(value) is not None:
        return None
    return 'must be "correct", "incorrect", "unanticipated", "neutral" or a decimal number'


def _nav_request(value: str) -> str | None:
    if value in NAV_REQUESTS or _NAV_TARGET.fullmatch(value):
        return None
    return "must be a navigation request (continue, previous, exit, ..., {target=ID}choice)"


ELEMENTS: dict[str, Rule] = {
    "cmi.comments_from_learner.#.comment": Rule("rw", localized(4000)),
    "cmi.comments_from_learner.#.location": Rule("rw", string_max(250)),
    "cmi.comments_from_learner.#.timestamp": Rule("rw", timestamp),
    "cmi.comments_from_lms.#.comment": Rule("ro"),
    "cmi.comments_from_lms.#.location": Rule("ro"),
    "cmi.comments_from_lms.#.timestamp": Rule("ro"),
    "cmi.completion_status": Rule("rw", vocabulary(*COMPLETION_STATUSES)),
    "cmi.completion_threshold": Rule("ro"),
    "cmi.credit": Rule("ro"),
    "cmi.entry": Rule("ro"),
    "cmi.exit": Rule("wo", vocabulary("time-out", "suspend", "logout", "normal", "")),
    "cmi.interactions.#.id": Rule("rw", _long_identifier),
    "cmi.interactions.#.type": Rule("rw", vocabulary(*INTERACTION_TYPES)),
    "cmi.interactions.#.objectives.#.id": Rule("rw", _long_identifier),
    "cmi.interactions.#.timestamp": Rule("rw", timestamp),
    # Responses are checked against the interaction's type in check_structure.
    "cmi.interactions.#.correct_responses.#.pattern": Rule("rw"),
    "cmi.interactions.#.weighting": Rule("rw", _score),
    "cmi.interactions.#.learner_response": Rule("rw"),
    "cmi.interactions.#.result": Rule("rw", _result),
    "cmi.interactions.#.latency": Rule("rw", iso8601_duration),
    "cmi.interactions.#.description": Rule("rw", localized(250)),
    "cmi.launch_data": Rule("ro"),
    "cmi.learner_id": Rule("ro"),
    "cmi.learner_name": Rule("ro"),
    "cmi.learner_preference.audio_level": Rule("rw", real(0)),
    "cmi.learner_preference.language": Rule("rw", language),
    "cmi.learner_preference.delivery_speed": Rule("rw", real(0)),
    "cmi.learner_preference.audio_captioning": Rule("rw", vocabulary("-1", "0", "1")),
    "cmi.location": Rule("rw", string_max(1000)),
    "cmi.max_time_allowed": Rule("ro"),
    "cmi.mode": Rule("ro"),
    "cmi.objectives.#.id": Rule("rw", _long_identifier),
    "cmi.objectives.#.score.scaled": Rule("rw", _scaled),
    "cmi.objectives.#.score.raw": Rule("rw", _score),
    "cmi.objectives.#.score.min": Rule("rw", _score),
    "cmi.objectives.#.score.max": Rule("rw", _score),
    "cmi.objectives.#.success_status": Rule("rw", vocabulary(*SUCCESS_STATUSES)),
    "cmi.objectives.#.completion_status": Rule("rw", vocabulary(*COMPLETION_STATUSES)),
    "cmi.objectives.#.progress_measure": Rule("rw", _measure),
    "cmi.objectives.#.description": Rule("rw", localized(250)),
    "cmi.progress_measure": Rule("rw", _measure),
    "cmi.scaled_passing_score": Rule("ro"),
    "cmi.score.scaled": Rule("rw", _scaled),
    "cmi.score.raw": Rule("rw", _score),
    "cmi.score.min": Rule("rw", _score),
    "cmi.score.max": Rule("rw", _score),
    "cmi.session_time": Rule("wo", iso8601_duration),
    "cmi.success_status": Rule("rw", vocabulary(*SUCCESS_STATUSES)),
    "cmi.suspend_data": Rule("rw", string_max(64000)),
    "cmi.time_limit_action": Rule("ro"),
    "cmi.total_time": Rule("ro"),
    "adl.nav.request": Rule("rw", _nav_request),
    "adl.nav.request_valid.continue": Rule("ro"),
    "adl.nav.request_valid.previous": Rule("ro"),
}

PER_SESSION = {"cmi.session_time", "cmi.exit", "adl.nav.request"}

# --- interaction responses (RTE 4.2.9) ----------------------------------------------------

# Types whose interactions have a single correct response.
CORRECT_RESPONSE_LIMITS = {"true-false": 1, "likert": 1, "numeric": 1, "other": 1}
_FLAG = re.compile(r"\{(case_matters|order_matters)=(?:true|false)\}")
_localized_250 = localized(250)
_localized_4000 = localized(4000)


def _strip_flags(value: str, allowed: tuple[str, ...]) -> str:
    """Drop the leading {case_matters=..}{order_matters=..} a pattern may start with."""
    seen: set[str] = set()
    while (match := _FLAG.match(value)) and match.group(1) in allowed and match.group(1) not in seen:
        seen.add(match.group(1))
        value = value[match.end() :]
    return value


def _items(value: str) -> list[str]:
    return [] if value == "" else value.split("[,]")


def _identifiers(value: str, *, unique: bool) -> str | None:
    items = _items(value)
    if len(items) > 36:
        return "more than 36 identifiers"
    if any(short_identifier(item) for item in items):
        return "expected identifiers separated by [,]"
    if unique and len(set(items)) != len(items):
        return "an identifier is repeated"
    return None


def _pairs(value: str, limit: int) -> list[list[str]] | str:
    items = _items(value)
    if len(items) > limit:
        return f"more than {limit} items"
    pairs = [item.split("[.]") for item in items]
    if any(len(pair) != 2 for pair in pairs):
        return "expected items of the form a[.]b separated by [,]"
    return pairs


def _matching(value: str) -> str | None:
    pairs = _pairs(value, 36)
    if isinstance(pairs, str):
        return pairs
    if any(short_identifier(part) for pair in pairs for part in pair):
        return "expected source[.]target identifier pairs"
    return None


def _performance(value: str) -> str | None:
    pairs = _pairs(value, 125)
    if isinstance(pairs, str):
        return pairs
    for name, answer in pairs:
        if (name == "" and answer == "") or (name and short_identifier(name)) or len(answer) > 250:
            return "expected step[.]answer items (step an identifier, answer up to 250 characters)"
    return None


def _numeric_range(value: str) -> str | None:
    bounds = value.split("[:]")
    if len(bounds) > 2 or any(b != "" and parse_real(b) is None for b in bounds):
        return "expected a number or a range min[:]max"
    if len(bounds) == 1 and bounds[0] == "":
        return "expected a number or a range min[:]max"
    if len(bounds) == 2 and "" not in bounds and float(bounds[0]) > float(bounds[1]):
        return "the range's min is greater than its max"
    return None


def response_problem(interaction_type: str, value: str, *, pattern: bool) -> str | None:
    """Why `value` is not a learner response (or, with pattern=True, a correct-response
    pattern) of an interaction of this type; None when it is fine."""
    if interaction_type == "true-false":
        return None if value in ("true", "false") else 'must be "true" or "false"'
    if interaction_type in ("choice", "sequencing"):
        return _identifiers(value, unique=interaction_type == "choice")
    if interaction_type == "fill-in":
        items = _items(_strip_flags(value, ("case_matters", "order_matters")) if pattern else value)
        if len(items) > 10:
            return "more than 10 strings"
        return next((problem for item in items if (problem := _localized_250(item))), None)
    if interaction_type == "long-fill-in":
        return _localized_4000(_strip_flags(value, ("case_matters",)) if pattern else value)
    if interaction_type == "likert":
        return short_identifier(value)
    if interaction_type == "matching":
        return _matching(value)
    if interaction_type == "performance":
        return _performance(_strip_flags(value, ("order_matters",)) if pattern else value)
    if interaction_type == "numeric":
        if pattern:
            return _numeric_range(value)
        return None if parse_real(value) is not None else "not a decimal number"
    return None if len(value) <= 4000 else "longer than 4000 characters"  # other


# --- snapshot rules -------------------------------------------------------------------------


def check_structure(cmi: Mapping[str, str]) -> None:
    """The rules between elements (RTE 4.2.7, 4.2.9, 4.2.17): an objective or interaction
    exists once its id is set, ids are unique where the RTE says so, responses need a type."""
    by_pattern: dict[str, list[tuple[tuple[int, ...], str, str]]] = defaultdict(list)
    for name, value in cmi.items():
        parsed = parse_element(name)
        if parsed and parsed[1]:
            by_pattern[parsed[0]].append((parsed[1], name, value))

    for array in ("cmi.objectives", "cmi.interactions"):
        used = {indices[0] for pattern, rows in by_pattern.items() if pattern.startswith(array + ".#")
                for indices, _, _ in rows}  # fmt: skip
        for index in sorted(used):
            if f"{array}.{index}.id" not in cmi:
                raise CmiError(f"{array}.{index} has elements but no {array}.{index}.id; the id comes first")

    _unique_ids("cmi.objectives", [(i[0], v) for i, _, v in by_pattern["cmi.objectives.#.id"]])
    per_interaction: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for indices, _, value in by_pattern["cmi.interactions.#.objectives.#.id"]:
        per_interaction[indices[0]].append((indices[1], value))
    for interaction, ids in per_interaction.items():
        _unique_ids(f"cmi.interactions.{interaction}.objectives", ids)

    responses = by_pattern["cmi.interactions.#.learner_response"]
    patterns = by_pattern["cmi.interactions.#.correct_responses.#.pattern"]
    for indices, name, value in responses + patterns:
        type_name = f"cmi.interactions.{indices[0]}.type"
        interaction_type = cmi.get(type_name)
        if interaction_type is None:
            raise CmiError(f"{name} needs {type_name}: the type decides the response format")
        problem = response_problem(interaction_type, value, pattern=len(indices) == 2)
        if problem:
            raise CmiError(f"{name}: {problem} for a {interaction_type} interaction")
        limit = CORRECT_RESPONSE_LIMITS.get(interaction_type)
        if len(indices) == 2 and limit is not None and indices[1] >= limit:
            raise CmiError(f"{name}: a {interaction_type} interaction has at most {limit} correct response")


def _unique_ids(array: str, ids: list[tuple[int, str]]) -> None:
    first: dict[str, int] = {}
    for index, value in sorted(ids):
        if value in first:
            raise CmiError(f"{array}.{index}.id repeats the id of {array}.{first[value]} ({value!r})")
        first[value] = index


# --- attempt ---------------------------------------------------------------------------------


def evaluated_completion(cmi: Mapping[str, str], completion_threshold: float | None) -> str:
    """cmi.completion_status as the LMS reports it (RTE 4.2.4.1): with a completion threshold,
    the progress measure decides (unknown without one); otherwise the content's word."""
    if completion_threshold is None:
        return cmi.get("cmi.completion_status", "unknown")
    progress = real_value(cmi, "cmi.progress_measure")
    if progress is None:
        return "unknown"
    return "completed" if progress >= completion_threshold else "incomplete"


def evaluated_success(cmi: Mapping[str, str], scaled_passing_score: float | None) -> str:
    """cmi.success_status as the LMS reports it (RTE 4.2.22): with a scaled passing score,
    cmi.score.scaled decides (unknown without one); otherwise the content's word."""
    if scaled_passing_score is None:
        return cmi.get("cmi.success_status", "unknown")
    scaled = real_value(cmi, "cmi.score.scaled")
    if scaled is None:
        return "unknown"
    return "passed" if scaled >= scaled_passing_score else "failed"


_OBJECTIVE_ID = re.compile(r"cmi\.objectives\.[0-9]+\.id")
_STATUS_FROM_COMPLETION = {"completed": "completed", "incomplete": "incomplete"}


def derive(
    cmi: Mapping[str, str],
    *,
    mastery_score: float | None,  # a 1.2 notion
    scaled_passing_score: float | None,
    completion_threshold: float | None,
) -> AttemptFields:
    """Attempt fields from a 2004 snapshot: passed/failed when success is known, else the
    completion (completed, incomplete; not_attempted for "not attempted" and "unknown").

    score_scaled is cmi.score.scaled; when the content only gave raw with min and max, it is
    (raw - min) / (max - min).
    """
    completion = evaluated_completion(cmi, completion_threshold)
    success = evaluated_success(cmi, scaled_passing_score)
    if success in ("passed", "failed"):
        status = success
    else:
        status = _STATUS_FROM_COMPLETION.get(completion, "not_attempted")
    raw = real_value(cmi, "cmi.score.raw")
    scaled = real_value(cmi, "cmi.score.scaled")
    if scaled is None and raw is not None:
        minimum = real_value(cmi, "cmi.score.min")
        maximum = real_value(cmi, "cmi.score.max")
        if minimum is not None and maximum is not None and maximum > minimum:
            scaled = scale_score(raw, minimum, maximum)
    session_time = cmi.get("cmi.session_time")
    return AttemptFields(
        status=status,
        completion_status=None if completion == "unknown" else completion,
        success_status=None if success == "unknown" else success,
        score_raw=raw,
        score_scaled=scaled,
        passed={"passed": True, "failed": False}.get(success),
        session_time_seconds=parse_iso8601_duration(session_time) if session_time is not None else None,
        location=cmi.get("cmi.location"),
        suspend_data=cmi.get("cmi.suspend_data"),
        exit=cmi.get("cmi.exit"),
    )


def initial(
    *,
    learner_id: str,
    learner_name: str,
    suspend_data: str | None,
    location: str | None,
    mastery_score: float | None,  # a 1.2 notion
    scaled_passing_score: float | None,
    launch_data: str | None,
    credit: bool,
    mode: str,
    completion_threshold: float | None,
    total_time_seconds: float,
    objective_ids: tuple[str, ...],
    saved: dict[str, str],
    time_limit_action: str | None = None,
    max_time_allowed: str | None = None,
) -> dict[str, str]:
    values = restorable(saved, ELEMENTS, PER_SESSION)
    if location is not None:
        values["cmi.location"] = location
    if suspend_data is not None:
        values["cmi.suspend_data"] = suspend_data
    known = {value for name, value in values.items() if _OBJECTIVE_ID.fullmatch(name)}
    count = len({name.split(".")[2] for name in values if name.startswith("cmi.objectives.")})
    for objective_id in objective_ids:
        if objective_id not in known:
            values[f"cmi.objectives.{count}.id"] = objective_id
            known.add(objective_id)
            count += 1
    # Resume when there is suspend data (contract) or the last session was suspended (RTE 4.2.10).
    resumed = bool(values.get("cmi.suspend_data")) or saved.get("cmi.exit") == "suspend"
    values.update(
        {
            "cmi.learner_id": learner_id,
            "cmi.learner_name": learner_name,
            "cmi.credit": "credit" if credit else "no-credit",
            "cmi.mode": mode,
            "cmi.entry": "resume" if resumed else "ab-initio",
            "cmi.total_time": format_iso8601_duration(total_time_seconds),
        }
    )
    if launch_data is not None:
        values["cmi.launch_data"] = launch_data
    if scaled_passing_score is not None:
        values["cmi.scaled_passing_score"] = format_decimal(scaled_passing_score)
    if completion_threshold is not None:
        values["cmi.completion_threshold"] = format_decimal(completion_threshold)
    if time_limit_action is not None:  # adlcp:timeLimitAction / imsss:limitConditions@attemptAbsoluteDurationLimit
        values["cmi.time_limit_action"] = time_limit_action
    if max_time_allowed is not None:
        values["cmi.max_time_allowed"] = max_time_allowed
    return values
