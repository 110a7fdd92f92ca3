"""The server's CMI rules: which commits are accepted, what they mean for the attempt, and the
values a launch starts with (services/scorm/runtime/cmi.py, cmi_12.py, cmi_2004.py)."""

from __future__ import annotations

import re
import time

import pytest

from services.scorm.config import ScormSettings
from services.scorm.runtime.cmi import (
    MAX_ELEMENTS,
    MIN_ITEMS,
    MIN_NESTED_ITEMS,
    SPM_2004,
    AttemptFields,
    CmiError,
    CmiLimits,
    derive_attempt,
    format_cmi_timespan,
    format_iso8601_duration,
    initial_cmi,
    parse_cmi_timespan,
    parse_iso8601_duration,
    validate_commit,
)

# --- attempts: SCORM 1.2 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lesson_status", "status", "completion", "success", "passed"),
    [
        ("passed", "passed", "completed", "passed", True),
        ("failed", "failed", "completed", "failed", False),
        ("completed", "completed", "completed", None, None),
        ("incomplete", "incomplete", "incomplete", None, None),
        ("browsed", "browsed", None, None, None),
        (None, "not_attempted", "not attempted", None, None),
    ],
)
def test_12_lesson_status_maps_to_the_attempt_status(lesson_status, status, completion, success, passed):
    cmi = {} if lesson_status is None else {"cmi.core.lesson_status": lesson_status}
    attempt = derive_attempt("1.2", cmi)
    assert (attempt.status, attempt.completion_status, attempt.success_status, attempt.passed) == (
        status,
        completion,
        success,
        passed,
    )


@pytest.mark.parametrize(
    ("lesson_status", "raw", "mastery", "status"),
    [
        ("completed", "80", 80.0, "passed"),  # raw >= mastery
        ("completed", "79.5", 80.0, "failed"),
        ("incomplete", "95", 80.0, "passed"),
        ("browsed", "10", 80.0, "failed"),
        (None, "90", 80.0, "passed"),
        ("passed", "10", 80.0, "passed"),  # the SCO's own verdict stands
        ("failed", "95", 80.0, "failed"),
        ("completed", None, 80.0, "completed"),  # no score: nothing to compare
        ("completed", "", 80.0, "completed"),  # blank score
        ("completed", "10", None, "completed"),  # no mastery score
    ],
)
def test_12_mastery_score_decides_passed_or_failed_unless_the_sco_did(lesson_status, raw, mastery, status):
    cmi = {}
    if lesson_status is not None:
        cmi["cmi.core.lesson_status"] = lesson_status
    if raw is not None:
        cmi["cmi.core.score.raw"] = raw
    attempt = derive_attempt("1.2", cmi, mastery_score=mastery)
    assert attempt.status == status
    assert attempt.passed == {"passed": True, "failed": False}.get(status)


@pytest.mark.parametrize(
    ("raw", "minimum", "maximum", "scaled"),
    [
        ("85", None, None, 0.85),  # default range 0..100
        ("0", None, None, 0.0),
        ("40", None, "50", 0.8),  # raw / max
        ("30", "20", "70", 0.2),  # (raw - min) / (max - min)
        ("80", "", "", 0.8),  # blank min/max are absent
        ("90", None, "50", 1.0),  # above max: clamped
        ("10", "20", "70", -0.2),
        ("10", None, "0", 0.1),  # max 0 cannot scale: default range
    ],
)
def test_12_raw_score_is_scaled_with_min_and_max(raw, minimum, maximum, scaled):
    cmi = {"cmi.core.score.raw": raw}
    if minimum is not None:
        cmi["cmi.core.score.min"] = minimum
    if maximum is not None:
        cmi["cmi.core.score.max"] = maximum
    attempt = derive_attempt("1.2", cmi)
    assert attempt.score_raw == float(raw)
    assert attempt.score_scaled == pytest.approx(scaled)


def test_12_attempt_carries_time_location_suspend_data_and_exit():
    attempt = derive_attempt(
        "1.2",
        {
            "cmi.core.session_time": "0001:02:03.5",
            "cmi.core.lesson_location": "page-4",
            "cmi.suspend_data": "q1=a",
            "cmi.core.exit": "suspend",
        },
    )
    assert attempt == AttemptFields(
        status="not_attempted",
        completion_status="not attempted",
        success_status=None,
        score_raw=None,
        score_scaled=None,
        passed=None,
        session_time_seconds=3723.5,
        location="page-4",
        suspend_data="q1=a",
        exit="suspend",
    )


def test_12_ignores_the_2004_passing_score():
    attempt = derive_attempt("1.2", {"cmi.core.score.raw": "10"}, scaled_passing_score=0.5)
    assert attempt.status == "not_attempted"


# --- attempts: SCORM 2004 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "success", "status", "passed"),
    [
        ("completed", "passed", "passed", True),
        ("incomplete", "passed", "passed", True),
        ("completed", "failed", "failed", False),
        (None, "failed", "failed", False),
        ("completed", "unknown", "completed", None),
        ("completed", None, "completed", None),
        ("incomplete", None, "incomplete", None),
        ("not attempted", None, "not_attempted", None),
        ("unknown", None, "not_attempted", None),
        (None, None, "not_attempted", None),
    ],
)
def test_2004_success_then_completion_decide_the_attempt_status(completion, success, status, passed):
    cmi = {}
    if completion is not None:
        cmi["cmi.completion_status"] = completion
    if success is not None:
        cmi["cmi.success_status"] = success
    attempt = derive_attempt("2004", cmi)
    assert (attempt.status, attempt.passed) == (status, passed)
    assert attempt.completion_status == (None if completion in (None, "unknown") else completion)
    assert attempt.success_status == (None if success in (None, "unknown") else success)


@pytest.mark.parametrize(
    ("reported", "scaled", "passing", "success"),
    [
        (None, "0.8", 0.8, "passed"),  # equal passes
        (None, "0.79", 0.8, "failed"),
        ("passed", "0.5", 0.8, "failed"),  # the passing score overrides the SCO
        ("failed", "0.9", 0.8, "passed"),
        ("passed", None, 0.8, None),  # passing score but no scaled score: unknown
        ("passed", "0.1", None, "passed"),  # no passing score: the SCO's word
        (None, "-0.5", -0.6, "passed"),
    ],
)
def test_2004_scaled_passing_score_decides_success(reported, scaled, passing, success):
    cmi = {"cmi.completion_status": "completed"}
    if reported is not None:
        cmi["cmi.success_status"] = reported
    if scaled is not None:
        cmi["cmi.score.scaled"] = scaled
    attempt = derive_attempt("2004", cmi, scaled_passing_score=passing)
    assert attempt.success_status == success
    assert attempt.status == (success or "completed")


@pytest.mark.parametrize(
    ("reported", "progress", "threshold", "completion"),
    [
        ("incomplete", "0.75", 0.75, "completed"),
        ("completed", "0.5", 0.75, "incomplete"),
        ("completed", None, 0.75, None),  # threshold but no progress: unknown
        ("completed", "0.1", None, "completed"),
    ],
)
def test_2004_completion_threshold_decides_completion(reported, progress, threshold, completion):
    cmi = {"cmi.completion_status": reported}
    if progress is not None:
        cmi["cmi.progress_measure"] = progress
    attempt = derive_attempt("2004", cmi, completion_threshold=threshold)
    assert attempt.completion_status == completion


@pytest.mark.parametrize(
    ("cmi", "raw", "scaled"),
    [
        ({"cmi.score.scaled": "0.9", "cmi.score.raw": "45"}, 45.0, 0.9),
        ({"cmi.score.raw": "45", "cmi.score.min": "0", "cmi.score.max": "50"}, 45.0, 0.9),
        ({"cmi.score.raw": "45"}, 45.0, None),  # no range: not guessed
        ({"cmi.score.raw": "45", "cmi.score.max": "50"}, 45.0, None),
        ({"cmi.score.scaled": "-1"}, None, -1.0),
    ],
)
def test_2004_score_is_scaled_as_reported_or_from_raw_min_max(cmi, raw, scaled):
    attempt = derive_attempt("2004", cmi)
    assert attempt.score_raw == raw
    assert attempt.score_scaled == (None if scaled is None else pytest.approx(scaled))


def test_2004_non_scorm_activity_reports_with_three_elements():
    attempt = derive_attempt(
        "2004",
        {"cmi.completion_status": "completed", "cmi.success_status": "passed", "cmi.score.scaled": "0.92"},
        scaled_passing_score=0.7,
    )
    assert (attempt.status, attempt.passed, attempt.score_scaled) == ("passed", True, 0.92)


def test_2004_attempt_carries_time_location_suspend_data_and_exit():
    attempt = derive_attempt(
        "2004",
        {"cmi.session_time": "PT1H2M3.5S", "cmi.location": "p9", "cmi.suspend_data": "{}", "cmi.exit": "suspend"},
    )
    assert (attempt.session_time_seconds, attempt.location, attempt.suspend_data, attempt.exit) == (
        3723.5,
        "p9",
        "{}",
        "suspend",
    )


def test_2004_ignores_the_12_mastery_score():
    assert derive_attempt("2004", {"cmi.score.raw": "10"}, mastery_score=80).status == "not_attempted"


def test_unknown_standard_is_refused():
    with pytest.raises(CmiError, match="standard"):
        derive_attempt("1.3", {})


# --- session times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:00:00", 0.0),
        ("0000:00:00.00", 0.0),
        ("01:02:03", 3723.0),
        ("0001:02:03.5", 3723.5),
        ("9999:59:59.99", 9999 * 3600 + 3599.99),
        ("100:00:00.25", 360000.25),
    ],
)
def test_cmi_timespan_is_parsed(value, seconds):
    assert parse_cmi_timespan(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "1:02:03", "00001:00:00", "00:60:00", "00:00:60", "00:00:00.123", "00:00", "PT1S", " 00:00:01", "00:00:01\n"],
)
def test_cmi_timespan_rejects_other_shapes(value):
    with pytest.raises(CmiError, match="CMITimespan"):
        parse_cmi_timespan(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("PT0S", 0.0),
        ("PT1H2M3.5S", 3723.5),
        ("PT90M", 5400.0),
        ("PT0.25S", 0.25),
        ("P1D", 86400.0),
        ("P1DT1S", 86401.0),
        ("P1M", 30.4375 * 86400),
        ("P1Y", 365.25 * 86400),
        ("PT1H", 3600.0),
    ],
)
def test_iso8601_duration_is_parsed(value, seconds):
    assert parse_iso8601_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "P", "PT", "P1DT", "T1S", "PT1.5H", "PT-1S", "01:00:00", "PT1S ", "pt1s", "P1W", "PT1,5S", "P0S", "PT1H\n"],
)
def test_iso8601_duration_rejects_other_shapes(value):
    with pytest.raises(CmiError, match="ISO 8601"):
        parse_iso8601_duration(value)


@pytest.mark.parametrize(
    ("seconds", "timespan", "duration"),
    [
        (0, "0000:00:00.00", "PT0H0M0S"),
        (3723.5, "0001:02:03.50", "PT1H2M3.5S"),
        (59.999, "0000:01:00.00", "PT0H1M0S"),
        (10**9, "9999:59:59.99", "PT277777H46M40S"),
    ],
)
def test_seconds_are_formatted_for_total_time(seconds, timespan, duration):
    assert format_cmi_timespan(seconds) == timespan
    assert format_iso8601_duration(seconds) == duration


# --- commits: what is accepted ------------------------------------------------------------------

ACCEPTED = [
    ("1.2", "cmi.core.lesson_status", "passed"),
    ("1.2", "cmi.core.lesson_status", "browsed"),
    ("1.2", "cmi.core.lesson_location", "x" * 255),
    ("1.2", "cmi.core.score.raw", "85.5"),
    ("1.2", "cmi.core.score.raw", ""),
    ("1.2", "cmi.core.score.max", "100"),
    ("1.2", "cmi.core.exit", ""),
    ("1.2", "cmi.core.exit", "suspend"),
    ("1.2", "cmi.core.session_time", "0000:05:30.25"),
    ("1.2", "cmi.suspend_data", "x" * 4096),
    ("1.2", "cmi.comments", "Great course"),
    ("1.2", "cmi.objectives.0.status", "not attempted"),
    ("1.2", "cmi.student_preference.audio", "-1"),
    ("1.2", "cmi.student_preference.speed", "-100"),
    ("1.2", "cmi.interactions.0.result", "wrong"),
    ("1.2", "cmi.interactions.0.result", "0.5"),
    ("1.2", "cmi.interactions.0.time", "23:59:59.99"),
    ("1.2", "cmi.interactions.0.type", "likert"),
    ("1.2", "cmi.interactions.0.latency", "00:00:12"),
    ("2004", "cmi.completion_status", "incomplete"),
    ("2004", "cmi.success_status", "unknown"),
    ("2004", "cmi.score.scaled", "-1"),
    ("2004", "cmi.score.raw", "-12345.6789"),
    ("2004", "cmi.progress_measure", "1"),
    ("2004", "cmi.location", "x" * 1000),
    ("2004", "cmi.suspend_data", "x" * 64000),
    ("2004", "cmi.session_time", "PT1H2M3.5S"),
    ("2004", "cmi.exit", "normal"),
    ("2004", "cmi.learner_preference.language", "pt-BR"),
    ("2004", "cmi.learner_preference.audio_captioning", "-1"),
    ("2004", "cmi.comments_from_learner.0.comment", "{lang=en}Nice"),
    ("2004", "cmi.comments_from_learner.0.timestamp", "2026-06-02T10:00:00.5+02:00"),
    ("2004", "adl.nav.request", "suspendAll"),
    ("2004", "adl.nav.request", "{target=module-2}choice"),
]


@pytest.mark.parametrize(("standard", "name", "value"), ACCEPTED)
def test_valid_values_are_accepted(standard, name, value):
    assert validate_commit(standard, {name: value}) == {name: value}


REJECTED = [
    ("1.2", "cmi.core.lesson_status", "not attempted", "one of"),  # only the LMS starts there
    ("1.2", "cmi.core.lesson_status", "Passed", "one of"),
    ("1.2", "cmi.core.score.raw", "100.1", "range"),
    ("1.2", "cmi.core.score.raw", "-1", "range"),
    ("1.2", "cmi.core.score.raw", "1e2", "decimal"),
    ("1.2", "cmi.core.exit", "normal", "one of"),
    ("1.2", "cmi.core.session_time", "PT1M", "CMITimespan"),
    ("1.2", "cmi.student_preference.text", "2", "range"),
    ("1.2", "cmi.student_preference.audio", "loud", "integer"),
    ("1.2", "cmi.interactions.0.id", "two words", "identifier"),
    ("1.2", "cmi.interactions.0.type", "long-fill-in", "one of"),
    ("1.2", "cmi.interactions.0.time", "24:00:00", "CMITime"),
    ("1.2", "cmi.interactions.0.result", "incorrect", "wrong"),
    ("2004", "cmi.completion_status", "done", "one of"),
    ("2004", "cmi.success_status", "browsed", "one of"),
    ("2004", "cmi.score.scaled", "1.01", "range"),
    ("2004", "cmi.score.raw", "NaN", "decimal"),
    ("2004", "cmi.score.raw", "1" * 41, "decimal"),
    ("2004", "cmi.progress_measure", "1.5", "range"),
    ("2004", "cmi.session_time", "00:01:00", "ISO 8601"),
    ("2004", "cmi.exit", "quit", "one of"),
    ("2004", "cmi.learner_preference.language", "english", "language"),
    ("2004", "cmi.learner_preference.delivery_speed", "-1", "range"),
    ("2004", "cmi.comments_from_learner.0.comment", "{lang=??}x", "lang"),
    ("2004", "cmi.comments_from_learner.0.timestamp", "2026-02-30", "ISO 8601"),
    ("2004", "cmi.comments_from_learner.0.timestamp", "1969-12-31", "ISO 8601"),
    ("2004", "cmi.comments_from_learner.0.timestamp", "2026-06-02T24:00", "ISO 8601"),
    ("2004", "adl.nav.request", "jump", "navigation"),
]


@pytest.mark.parametrize(("standard", "name", "value", "reason"), REJECTED)
def test_values_outside_format_vocabulary_or_range_are_rejected(standard, name, value, reason):
    with pytest.raises(CmiError, match=reason) as error:
        validate_commit(standard, {name: value})
    assert name in str(error.value)


@pytest.mark.parametrize(
    ("standard", "name", "limit"),
    [
        ("1.2", "cmi.suspend_data", 4096),
        ("1.2", "cmi.core.lesson_location", 255),
        ("1.2", "cmi.comments", 4096),
        ("1.2", "cmi.interactions.0.student_response", 255),
        ("2004", "cmi.suspend_data", 64000),
        ("2004", "cmi.location", 1000),
        ("2004", "cmi.interactions.0.description", 250),
        ("2004", "cmi.comments_from_learner.0.comment", 4000),
        ("2004", "cmi.objectives.0.id", 4000),
    ],
)
def test_strings_over_their_length_cap_are_rejected(standard, name, limit):
    parent = {"cmi.interactions.0.id": "q"} if standard == "2004" and ".interactions." in name else {}
    validate_commit(standard, {**parent, name: "x" * limit})
    with pytest.raises(CmiError, match=f"{name}: .*{limit}"):
        validate_commit(standard, {**parent, name: "x" * (limit + 1)})


def test_length_caps_count_characters_not_bytes():
    assert validate_commit("1.2", {"cmi.suspend_data": "é" * 4096})


@pytest.mark.parametrize(
    ("standard", "name"),
    [
        ("1.2", "cmi.core.student_id"),
        ("1.2", "cmi.core.student_name"),
        ("1.2", "cmi.core.credit"),
        ("1.2", "cmi.core.entry"),
        ("1.2", "cmi.core.total_time"),
        ("1.2", "cmi.core.lesson_mode"),
        ("1.2", "cmi.launch_data"),
        ("1.2", "cmi.student_data.mastery_score"),
        ("1.2", "cmi.comments_from_lms"),
        ("2004", "cmi.learner_id"),
        ("2004", "cmi.learner_name"),
        ("2004", "cmi.credit"),
        ("2004", "cmi.entry"),
        ("2004", "cmi.mode"),
        ("2004", "cmi.total_time"),
        ("2004", "cmi.launch_data"),
        ("2004", "cmi.scaled_passing_score"),
        ("2004", "cmi.completion_threshold"),
        ("2004", "cmi.max_time_allowed"),
        ("2004", "cmi.comments_from_lms.0.comment"),
        ("2004", "adl.nav.request_valid.continue"),
    ],
)
def test_read_only_elements_are_rejected_even_unchanged(standard, name):
    with pytest.raises(CmiError, match=f"{name} is read-only"):
        validate_commit(standard, {name: "credit"})


@pytest.mark.parametrize(
    ("standard", "name"),
    [
        ("1.2", "cmi.core._children"),
        ("1.2", "cmi.interactions._count"),
        ("1.2", "cmi._version"),
        ("2004", "cmi.score._children"),
        ("2004", "cmi.objectives._count"),
    ],
)
def test_keywords_are_rejected(standard, name):
    with pytest.raises(CmiError, match="keyword"):
        validate_commit(standard, {name: "1"})


@pytest.mark.parametrize(
    ("standard", "name"),
    [
        ("1.2", "cmi.completion_status"),  # a 2004 name
        ("2004", "cmi.core.lesson_status"),  # a 1.2 name
        ("2004", "cmi.score"),
        ("2004", "cmi.interactions.0"),
        ("2004", "cmi.interactions.01.id"),  # indices are written canonically
        ("2004", "cmi.interactions.-1.id"),
        ("2004", "cmi.Location"),
        ("2004", "cmi.location "),
        ("2004", "adl.data.0.store"),
        ("2004", ""),
    ],
)
def test_unknown_elements_are_rejected(standard, name):
    with pytest.raises(CmiError, match="not a SCORM"):
        validate_commit(standard, {name: "1"})


@pytest.mark.parametrize("value", [1, 0.5, True, None, ["a"], {"a": 1}])
def test_values_must_be_strings(value):
    with pytest.raises(CmiError, match=r"cmi\.location must be a string"):
        validate_commit("2004", {"cmi.location": value})


@pytest.mark.parametrize("body", [[], "cmi.location=1", None, {1: "a"}])
def test_the_snapshot_must_be_an_object_of_named_strings(body):
    with pytest.raises(CmiError):
        validate_commit("2004", body)


def test_snapshots_over_the_element_cap_are_rejected():
    at_cap = {f"cmi.interactions.{i}.id": f"q{i}" for i in range(MAX_ELEMENTS)}
    many_items = CmiLimits(max_items=MAX_ELEMENTS)
    assert len(validate_commit("2004", at_cap, many_items)) == MAX_ELEMENTS
    with pytest.raises(CmiError, match=f"at most {MAX_ELEMENTS}"):
        validate_commit("2004", {**at_cap, "cmi.location": "1"}, many_items)


@pytest.mark.parametrize(("standard", "name", "collection", "cap"), [
    ("2004", "cmi.objectives.1000.id", "cmi.objectives", 1000),
    ("2004", "cmi.interactions.99999999.id", "cmi.interactions", 1000),
    ("2004", "cmi.comments_from_learner.999999999.comment", "cmi.comments_from_learner", 1000),
    ("2004", "cmi.interactions.0.objectives.100.id", "cmi.interactions.0.objectives", 100),
    ("2004", "cmi.interactions.0.correct_responses.99999999.pattern", "cmi.interactions.0.correct_responses", 100),
    ("1.2", "cmi.objectives.99999999.id", "cmi.objectives", 1000),
    ("1.2", "cmi.interactions.0.objectives.123456789.id", "cmi.interactions.0.objectives", 100),
])
def test_indexes_at_or_over_the_cap_are_refused_at_once(standard: str, name: str, collection: str, cap: int):
    started = time.thread_time()
    with pytest.raises(CmiError, match=rf"{re.escape(collection)}\.[0-9]+: index out of range.*at most {cap} items"):
        validate_commit(standard, {name: "x"})
    assert time.thread_time() - started < 0.02  # O(1): counting up to the index took seconds


def test_the_caps_never_go_below_the_scorm_2004_smallest_permitted_maximums():
    assert MIN_ITEMS == 250 and MIN_NESTED_ITEMS == 10
    assert SPM_2004["cmi.objectives"] == 100 and SPM_2004["cmi.interactions"] == 250
    # every SPM is reachable under the default caps
    cmi = {f"cmi.interactions.{i}.id": f"q{i}" for i in range(250)}
    cmi |= {f"cmi.objectives.{i}.id": f"o{i}" for i in range(100)}
    cmi |= {f"cmi.interactions.0.objectives.{i}.id": f"x{i}" for i in range(10)}
    assert len(validate_commit("2004", cmi)) == len(cmi)
    with pytest.raises(ValueError):
        ScormSettings(cmi_max_items=249)
    with pytest.raises(ValueError):
        ScormSettings(cmi_max_nested_items=9)
    assert ScormSettings(cmi_max_items=300).cmi_limits().max_items == 300


def test_a_gap_far_below_a_large_index_is_named_without_counting_up_to_it():
    cmi = {"cmi.interactions.0.id": "a", "cmi.interactions.999.id": "b"}
    with pytest.raises(CmiError, match=r"cmi.interactions.1 is missing but cmi.interactions.999 is set"):
        validate_commit("2004", cmi)


def test_a_hostile_element_name_is_refused_without_being_echoed_whole():
    name = "cmi." + "a" * 500_000
    with pytest.raises(CmiError) as caught:
        validate_commit("2004", {name: "x"})
    assert len(str(caught.value)) < 200 and "not a SCORM 2004 data model element" in str(caught.value)


# --- commits: arrays and the rules between elements ----------------------------------------------


@pytest.mark.parametrize(
    ("standard", "cmi", "missing"),
    [
        ("1.2", {"cmi.interactions.1.id": "q"}, "cmi.interactions.0"),
        ("1.2", {"cmi.objectives.0.id": "a", "cmi.objectives.2.id": "c"}, "cmi.objectives.1"),
        ("1.2", {"cmi.interactions.0.objectives.1.id": "o"}, "cmi.interactions.0.objectives.0"),
        (
            "2004",
            {"cmi.interactions.0.id": "q", "cmi.interactions.0.type": "other",
             "cmi.interactions.0.correct_responses.1.pattern": "x"},
            "cmi.interactions.0.correct_responses.0",
        ),
        ("2004", {"cmi.comments_from_learner.3.comment": "c"}, "cmi.comments_from_learner.0"),
    ],
)  # fmt: skip
def test_array_items_must_be_numbered_without_gaps(standard, cmi, missing):
    with pytest.raises(CmiError, match=f"{missing} is missing"):
        validate_commit(standard, cmi)


def test_12_array_items_need_no_id():
    cmi = {"cmi.interactions.0.result": "correct", "cmi.interactions.0.objectives.0.id": "o1"}
    assert validate_commit("1.2", cmi) == cmi


@pytest.mark.parametrize(
    ("cmi", "reason"),
    [
        ({"cmi.objectives.0.score.raw": "1"}, "no cmi.objectives.0.id"),
        ({"cmi.interactions.0.result": "correct"}, "no cmi.interactions.0.id"),
        ({"cmi.interactions.0.objectives.0.id": "o"}, "no cmi.interactions.0.id"),
        ({"cmi.interactions.0.id": "q", "cmi.interactions.0.learner_response": "a"}, "needs cmi.interactions.0.type"),
        (
            {"cmi.interactions.0.id": "q", "cmi.interactions.0.correct_responses.0.pattern": "a"},
            "needs cmi.interactions.0.type",
        ),
        ({"cmi.objectives.0.id": "o", "cmi.objectives.1.id": "o"}, "repeats the id of cmi.objectives.0"),
        (
            {"cmi.interactions.0.id": "q", "cmi.interactions.0.objectives.0.id": "o",
             "cmi.interactions.0.objectives.1.id": "o"},
            "repeats the id",
        ),
    ],
)  # fmt: skip
def test_2004_dependencies_between_elements_are_enforced(cmi, reason):
    with pytest.raises(CmiError, match=reason):
        validate_commit("2004", cmi)


def test_2004_the_same_objective_may_appear_in_two_interactions():
    cmi = {
        "cmi.interactions.0.id": "q1",
        "cmi.interactions.0.objectives.0.id": "o",
        "cmi.interactions.1.id": "q2",
        "cmi.interactions.1.objectives.0.id": "o",
    }
    assert validate_commit("2004", cmi) == cmi


RESPONSES = [
    # (type, learner_response or pattern, is_pattern, accepted)
    ("true-false", "true", False, True),
    ("true-false", "True", False, False),
    ("choice", "a[,]b[,]c", False, True),
    ("choice", "", False, True),
    ("choice", "a[,]a", True, False),
    ("choice", "a b", False, False),
    ("choice", "[,]".join(f"c{i}" for i in range(37)), False, False),
    ("sequencing", "a[,]b[,]a", True, True),
    ("fill-in", "{lang=en}colour[,]color", False, True),
    ("fill-in", "{case_matters=true}{order_matters=false}Paris", True, True),
    ("fill-in", "[,]".join("w" for _ in range(11)), False, False),
    ("fill-in", "x" * 251, False, False),
    ("long-fill-in", "{case_matters=false}" + "x" * 4000, True, True),
    ("long-fill-in", "x" * 4001, False, False),
    ("likert", "agree", False, True),
    ("likert", "strongly agree", False, False),
    ("matching", "1[.]a[,]2[.]b", True, True),
    ("matching", "1[.]a[,]2", False, False),
    ("performance", "{order_matters=true}step1[.]10[,][.]done", True, True),
    ("performance", "[.]", False, False),
    ("numeric", "18", True, True),
    ("numeric", "1[:]5", True, True),
    ("numeric", "[:]5", True, True),
    ("numeric", "5[:]1", True, False),
    ("numeric", "18.5", False, True),
    ("numeric", "1[:]5", False, False),
    ("numeric", "eighteen", False, False),
    ("other", "anything at all {}[,]", False, True),
    ("other", "x" * 4001, False, False),
]


@pytest.mark.parametrize(("interaction_type", "value", "is_pattern", "accepted"), RESPONSES)
def test_2004_responses_follow_the_interaction_type(interaction_type, value, is_pattern, accepted):
    element = "cmi.interactions.0." + ("correct_responses.0.pattern" if is_pattern else "learner_response")
    cmi = {"cmi.interactions.0.id": "q", "cmi.interactions.0.type": interaction_type, element: value}
    if accepted:
        assert validate_commit("2004", cmi) == cmi
    else:
        with pytest.raises(CmiError, match=f"{element}: .* for a {interaction_type} interaction"):
            validate_commit("2004", cmi)


@pytest.mark.parametrize(("interaction_type", "patterns"), [("true-false", ["true", "false"]), ("numeric", ["1", "2"])])
def test_2004_single_answer_types_have_one_correct_response(interaction_type, patterns):
    cmi = {"cmi.interactions.0.id": "q", "cmi.interactions.0.type": interaction_type}
    cmi |= {f"cmi.interactions.0.correct_responses.{i}.pattern": p for i, p in enumerate(patterns)}
    with pytest.raises(CmiError, match="at most 1 correct response"):
        validate_commit("2004", cmi)


def test_2004_choice_may_have_several_correct_responses():
    cmi = {
        "cmi.interactions.0.id": "q",
        "cmi.interactions.0.type": "choice",
        "cmi.interactions.0.correct_responses.0.pattern": "a",
        "cmi.interactions.0.correct_responses.1.pattern": "a[,]b",
    }
    assert validate_commit("2004", cmi) == cmi


def test_normalised_snapshot_is_ordered_by_element_with_numeric_indices_and_values_untouched():
    cmi = {f"cmi.interactions.{i}.id": f" q{i}" for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)}
    cmi = {name: value.strip() for name, value in cmi.items()} | {"cmi.location": " p ", "adl.nav.request": "exit"}
    result = validate_commit("2004", cmi)
    assert list(result) == [
        "adl.nav.request",
        *(f"cmi.interactions.{i}.id" for i in range(11)),
        "cmi.location",
    ]
    assert result["cmi.location"] == " p "


# --- launches --------------------------------------------------------------------------------------


def _initial(standard: str, **overrides: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "learner_id": "u-42",
        "learner_name": "Ada Lovelace",
        "suspend_data": None,
        "location": None,
        "mastery_score": None,
        "scaled_passing_score": None,
        "launch_data": None,
    }
    return initial_cmi(standard, **(arguments | overrides))  # type: ignore[arg-type]


def test_12_first_launch_starts_ab_initio_with_the_learner_and_credit():
    assert _initial("1.2") == {
        "cmi.core.student_id": "u-42",
        "cmi.core.student_name": "Ada Lovelace",
        "cmi.core.credit": "credit",
        "cmi.core.lesson_mode": "normal",
        "cmi.core.entry": "ab-initio",
        "cmi.core.total_time": "0000:00:00.00",
    }


def test_12_resumed_launch_restores_suspend_data_and_location():
    values = _initial(
        "1.2", suspend_data="s=1", location="p7", mastery_score=80.0, launch_data="lvl=2", credit=False,
        total_time_seconds=90.5,
    )  # fmt: skip
    assert values["cmi.core.entry"] == "resume"
    assert values["cmi.suspend_data"] == "s=1"
    assert values["cmi.core.lesson_location"] == "p7"
    assert values["cmi.student_data.mastery_score"] == "80"
    assert values["cmi.launch_data"] == "lvl=2"
    assert values["cmi.core.credit"] == "no-credit"
    assert values["cmi.core.total_time"] == "0000:01:30.50"


def test_2004_first_launch_has_learner_mode_credit_and_manifest_values():
    values = _initial("2004", scaled_passing_score=0.8, completion_threshold=0.75, mode="review")
    assert values == {
        "cmi.learner_id": "u-42",
        "cmi.learner_name": "Ada Lovelace",
        "cmi.credit": "credit",
        "cmi.mode": "review",
        "cmi.entry": "ab-initio",
        "cmi.total_time": "PT0H0M0S",
        "cmi.scaled_passing_score": "0.8",
        "cmi.completion_threshold": "0.75",
    }


@pytest.mark.parametrize(("suspend_data", "entry"), [("x", "resume"), ("", "ab-initio"), (None, "ab-initio")])
def test_2004_entry_is_resume_when_there_is_suspend_data(suspend_data, entry):
    values = _initial("2004", suspend_data=suspend_data, location="p1")
    assert values["cmi.entry"] == entry
    assert values["cmi.location"] == "p1"


@pytest.mark.parametrize(
    ("standard", "saved", "entry"),
    [
        ("1.2", {"cmi.core.exit": "suspend", "cmi.core.lesson_location": "p3"}, "resume"),
        ("1.2", {"cmi.core.exit": "logout", "cmi.core.lesson_location": "p3"}, "ab-initio"),
        ("2004", {"cmi.exit": "suspend", "cmi.location": "p3"}, "resume"),
        ("2004", {"cmi.exit": "normal", "cmi.location": "p3"}, "ab-initio"),
    ],
)
def test_entry_is_resume_after_a_suspended_session(standard, saved, entry):
    values = _initial(standard, saved=saved)
    assert values["cmi.core.entry" if standard == "1.2" else "cmi.entry"] == entry


def test_2004_manifest_objectives_are_in_cmi_objectives_before_launch():
    values = _initial("2004", objective_ids=["PRIMARYOBJ", "obj_playing"])
    assert values["cmi.objectives.0.id"] == "PRIMARYOBJ"
    assert values["cmi.objectives.1.id"] == "obj_playing"


def test_saved_state_comes_back_without_per_session_or_read_only_elements():
    saved = {
        "cmi.completion_status": "incomplete",
        "cmi.suspend_data": "old",
        "cmi.location": "p2",
        "cmi.objectives.0.id": "PRIMARYOBJ",
        "cmi.objectives.0.score.scaled": "0.5",
        "cmi.interactions.0.id": "q1",
        "cmi.session_time": "PT5M",
        "cmi.exit": "suspend",
        "cmi.learner_id": "someone-else",
    }
    values = _initial("2004", saved=saved, suspend_data="new", objective_ids=["PRIMARYOBJ", "obj_b"])
    assert values["cmi.completion_status"] == "incomplete"
    assert values["cmi.suspend_data"] == "new"  # the explicit value wins
    assert values["cmi.location"] == "p2"
    assert values["cmi.objectives.0.score.scaled"] == "0.5"
    assert values["cmi.objectives.1.id"] == "obj_b"  # PRIMARYOBJ is not repeated
    assert values["cmi.learner_id"] == "u-42"
    assert "cmi.session_time" not in values
    assert "cmi.exit" not in values
    assert values["cmi.entry"] == "resume"
    # What the player will send back (the restored writable elements) passes validation.
    read_only = ("cmi.learner_id", "cmi.learner_name", "cmi.credit", "cmi.mode", "cmi.entry", "cmi.total_time")
    assert validate_commit("2004", {name: value for name, value in values.items() if name not in read_only})


def test_initial_values_refuse_an_unknown_mode():
    with pytest.raises(CmiError, match="mode"):
        _initial("2004", mode="exam")
