"""SCORM 1.2 run-time data model: the element table and what a snapshot means for the attempt.

Source: SCORM 1.2 Run-Time Environment, section 3.4 (data model). Mirrored in player.js
(`MODEL_12`); keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.scorm.runtime.cmi import (
    AttemptFields,
    CmiError,
    Rule,
    cmi_time,
    cmi_timespan,
    format_cmi_timespan,
    format_decimal,
    identifier,
    parse_cmi_timespan,
    parse_real,
    real,
    real_value,
    restorable,
    scale_score,
    sinteger,
    string_max,
    vocabulary,
)

LESSON_STATUSES = ("passed", "completed", "failed", "incomplete", "browsed", "not attempted")

_score = real(0, 100, blank=True)  # CMIDecimal or CMIBlank, 0..100
_feedback = string_max(255)  # CMIFeedback; its shape depends on the type and is not enforced


def _result(value: str) -> str | None:
    if value in ("correct", "wrong", "unanticipated", "neutral") or parse_real(value) is not None:
        return None
    return 'must be "correct", "wrong", "unanticipated", "neutral" or a decimal number'


ELEMENTS: dict[str, Rule] = {
    "cmi.core.student_id": Rule("ro"),
    "cmi.core.student_name": Rule("ro"),
    "cmi.core.lesson_location": Rule("rw", string_max(255)),
    "cmi.core.credit": Rule("ro"),
    # "not attempted" is the LMS's starting value; content may not set it back.
    "cmi.core.lesson_status": Rule("rw", vocabulary(*LESSON_STATUSES[:-1])),
    "cmi.core.entry": Rule("ro"),
    "cmi.core.score.raw": Rule("rw", _score),
    "cmi.core.score.max": Rule("rw", _score),
    "cmi.core.score.min": Rule("rw", _score),
    "cmi.core.total_time": Rule("ro"),
    "cmi.core.lesson_mode": Rule("ro"),
    "cmi.core.exit": Rule("wo", vocabulary("time-out", "suspend", "logout", "")),
    "cmi.core.session_time": Rule("wo", cmi_timespan),
    "cmi.suspend_data": Rule("rw", string_max(4096)),
    "cmi.launch_data": Rule("ro"),
    "cmi.comments": Rule("rw", string_max(4096)),
    "cmi.comments_from_lms": Rule("ro"),
    "cmi.objectives.#.id": Rule("rw", identifier(255)),
    "cmi.objectives.#.score.raw": Rule("rw", _score),
    "cmi.objectives.#.score.max": Rule("rw", _score),
    "cmi.objectives.#.score.min": Rule("rw", _score),
    "cmi.objectives.#.status": Rule("rw", vocabulary(*LESSON_STATUSES)),
    "cmi.student_data.mastery_score": Rule("ro"),
    "cmi.student_data.max_time_allowed": Rule("ro"),
    "cmi.student_data.time_limit_action": Rule("ro"),
    "cmi.student_preference.audio": Rule("rw", sinteger(-1, 100)),
    "cmi.student_preference.language": Rule("rw", string_max(255)),
    "cmi.student_preference.speed": Rule("rw", sinteger(-100, 100)),
    "cmi.student_preference.text": Rule("rw", sinteger(-1, 1)),
    "cmi.interactions.#.id": Rule("wo", identifier(255)),
    "cmi.interactions.#.objectives.#.id": Rule("wo", identifier(255)),
    "cmi.interactions.#.time": Rule("wo", cmi_time),
    "cmi.interactions.#.type": Rule(
        "wo",
        vocabulary("true-false", "choice", "fill-in", "matching", "performance", "sequencing", "likert", "numeric"),
    ),
    "cmi.interactions.#.correct_responses.#.pattern": Rule("wo", _feedback),
    "cmi.interactions.#.weighting": Rule("wo", real()),
    "cmi.interactions.#.student_response": Rule("wo", _feedback),
    "cmi.interactions.#.result": Rule("wo", _result),
    "cmi.interactions.#.latency": Rule("wo", cmi_timespan),
}

# Per session: a new launch starts without them.
PER_SESSION = {"cmi.core.session_time", "cmi.core.exit"}

# lesson_status -> (completion_status, success_status) in SCORM 2004 words.
_OUTCOMES: dict[str, tuple[str | None, str | None]] = {
    "passed": ("completed", "passed"),
    "failed": ("completed", "failed"),
    "completed": ("completed", None),
    "incomplete": ("incomplete", None),
    "browsed": (None, None),
    "not attempted": ("not attempted", None),
}


def check_structure(cmi: Mapping[str, str]) -> None:
    """1.2 has no rules between elements beyond the array order checked for both standards."""


def derive(
    cmi: Mapping[str, str],
    *,
    mastery_score: float | None,
    scaled_passing_score: float | None,  # a 2004 notion
    completion_threshold: float | None,  # a 2004 notion
) -> AttemptFields:
    """Attempt fields from a 1.2 snapshot.

    The mastery score decides (RTE 3.4.4, cmi.core.lesson_status) when the SCO reported a raw
    score but did not itself say passed or failed: raw >= mastery -> passed, else failed.
    """
    lesson_status = cmi.get("cmi.core.lesson_status", "not attempted")
    if lesson_status not in _OUTCOMES:
        raise CmiError(f"cmi.core.lesson_status: {lesson_status!r} is not a SCORM 1.2 lesson status")
    raw = real_value(cmi, "cmi.core.score.raw")
    if mastery_score is not None and raw is not None and lesson_status not in ("passed", "failed"):
        lesson_status = "passed" if raw >= mastery_score else "failed"
    completion, success = _OUTCOMES[lesson_status]
    scaled = None
    if raw is not None:
        minimum = real_value(cmi, "cmi.core.score.min")
        maximum = real_value(cmi, "cmi.core.score.max")
        scaled = scale_score(raw, minimum, maximum)
    session_time = cmi.get("cmi.core.session_time")
    return AttemptFields(
        status=lesson_status.replace(" ", "_"),
        completion_status=completion,
        success_status=success,
        score_raw=raw,
        score_scaled=scaled,
        passed={"passed": True, "failed": False}.get(lesson_status),
        session_time_seconds=parse_cmi_timespan(session_time) if session_time is not None else None,
        location=cmi.get("cmi.core.lesson_location"),
        suspend_data=cmi.get("cmi.suspend_data"),
        exit=cmi.get("cmi.core.exit"),
    )


def initial(
    *,
    learner_id: str,
    learner_name: str,
    suspend_data: str | None,
    location: str | None,
    mastery_score: float | None,
    scaled_passing_score: float | None,  # a 2004 notion
    launch_data: str | None,
    credit: bool,
    mode: str,
    completion_threshold: float | None,  # a 2004 notion
    total_time_seconds: float,
    objective_ids: tuple[str, ...],  # 1.2 manifests declare no objectives
    saved: dict[str, str],
    time_limit_action: str | None = None,
    max_time_allowed: str | None = None,
) -> dict[str, str]:
    values = restorable(saved, ELEMENTS, PER_SESSION)
    if location is not None:
        values["cmi.core.lesson_location"] = location
    if suspend_data is not None:
        values["cmi.suspend_data"] = suspend_data
    # Resume when there is suspend data (contract) or the last session was suspended (RTE 3.4.4).
    resumed = bool(values.get("cmi.suspend_data")) or saved.get("cmi.core.exit") == "suspend"
    values.update(
        {
            "cmi.core.student_id": learner_id,
            "cmi.core.student_name": learner_name,
            "cmi.core.credit": "credit" if credit else "no-credit",
            "cmi.core.lesson_mode": mode,
            "cmi.core.entry": "resume" if resumed else "ab-initio",
            "cmi.core.total_time": format_cmi_timespan(total_time_seconds),
        }
    )
    if launch_data is not None:
        values["cmi.launch_data"] = launch_data
    if mastery_score is not None:
        values["cmi.student_data.mastery_score"] = format_decimal(mastery_score)
    if time_limit_action is not None:  # the manifest's adlcp:timelimitaction / maxtimeallowed
        values["cmi.student_data.time_limit_action"] = time_limit_action
    if max_time_allowed is not None:
        values["cmi.student_data.max_time_allowed"] = max_time_allowed
    return values
