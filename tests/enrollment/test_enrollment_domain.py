"""The pure rules of services/enrollment/domain.py: completion rules as a table of cases, the state machine,
timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.enrollment.domain import (
    Activity,
    AttemptResult,
    CompletionRule,
    IllegalTransition,
    Progress,
    activities_of,
    cancel,
    completion_rule,
    evaluate,
    is_overdue,
    parse_rfc3339,
    progress_may_move,
)

ALL_REQUIRED, ALL_ACTIVITIES, ANY_ACTIVITY = (CompletionRule.ALL_REQUIRED, CompletionRule.ALL_ACTIVITIES,
                                              CompletionRule.ANY_ACTIVITY)

# Course shapes: activities 1 and 2 are required, 3 is optional.
MIXED = [Activity(1, required=True), Activity(2, required=True), Activity(3, required=False)]
# Activity 1 needs a scaled score of at least 0.8.
GRADED = [Activity(1, required=True, passing_score_scaled=Decimal("0.8")), Activity(2, required=True)]
NOTHING_REQUIRED = [Activity(1, required=False), Activity(2, required=False)]


def done(activity_id: int, status: str = "completed", score: str | None = None) -> AttemptResult:
    return AttemptResult(activity_id, status, None if score is None else Decimal(score))


CASES = [
    # (case, rule, activities, attempts, expected progress (total, done), complete?)
    ("all_required: nothing attempted", ALL_REQUIRED, MIXED, [], (2, 0), False),
    ("all_required: one of two required", ALL_REQUIRED, MIXED, [done(1)], (2, 1), False),
    ("all_required: both required, optional skipped", ALL_REQUIRED, MIXED, [done(1), done(2, "passed")], (2, 2),
     True),
    ("all_required: optional alone does not count", ALL_REQUIRED, MIXED, [done(3)], (2, 0), False),
    ("all_required: incomplete does not count", ALL_REQUIRED, MIXED, [done(1), done(2, "incomplete")], (2, 1),
     False),
    ("all_required: failed does not count", ALL_REQUIRED, MIXED, [done(1), done(2, "failed")], (2, 1), False),
    ("all_required: browsed does not count", ALL_REQUIRED, MIXED, [done(1), done(2, "browsed")], (2, 1), False),
    ("all_required: a later passed attempt counts", ALL_REQUIRED, MIXED,
     [done(1), done(2, "failed"), done(2, "passed")], (2, 2), True),
    ("all_required: nothing marked required means all", ALL_REQUIRED, NOTHING_REQUIRED, [done(1)], (2, 1), False),
    ("all_required: nothing marked required, all done", ALL_REQUIRED, NOTHING_REQUIRED, [done(1), done(2)], (2, 2),
     True),
    ("all_activities: required only is not enough", ALL_ACTIVITIES, MIXED, [done(1), done(2)], (3, 2), False),
    ("all_activities: every activity", ALL_ACTIVITIES, MIXED, [done(1), done(2), done(3)], (3, 3), True),
    ("any_activity: nothing yet", ANY_ACTIVITY, MIXED, [done(1, "incomplete")], (1, 0), False),
    ("any_activity: an optional one is enough", ANY_ACTIVITY, MIXED, [done(3)], (1, 1), True),
    ("any_activity: several count once", ANY_ACTIVITY, MIXED, [done(1), done(2)], (1, 1), True),
    ("passing score: completed without a score", ALL_REQUIRED, GRADED, [done(1), done(2)], (2, 1), False),
    ("passing score: below it", ALL_REQUIRED, GRADED, [done(1, "passed", "0.79"), done(2)], (2, 1), False),
    ("passing score: exactly it", ALL_REQUIRED, GRADED, [done(1, "passed", "0.8"), done(2)], (2, 2), True),
    ("passing score: best attempt counts", ALL_REQUIRED, GRADED,
     [done(1, "completed", "0.5"), done(1, "failed", "0.9"), done(2)], (2, 2), True),
    ("passing score: a score without completion is not enough", ALL_REQUIRED, GRADED,
     [done(1, "failed", "0.95"), done(2)], (2, 1), False),
    ("attempts of unknown activities are ignored", ALL_REQUIRED, MIXED, [done(99)], (2, 0), False),
]


@pytest.mark.parametrize("case,rule,activities,attempts,expected,complete", CASES, ids=[c[0] for c in CASES])
def test_completion_rule(case, rule, activities, attempts, expected, complete):
    progress = evaluate(rule, activities, attempts)
    assert (progress.required_total, progress.required_done) == expected
    assert progress.complete is complete


MAY_MOVE = [
    # (case, stored progress (total, done), status the commit set or None, its score, best after, may move?)
    ("incomplete after incomplete, nothing done yet", (2, 0), "incomplete", None, None, False),
    ("an older commit that left the status alone", (2, 1), None, None, None, False),
    ("a done status", (2, 0), "completed", None, None, True),
    ("passed", (2, 1), "passed", None, None, True),
    ("a status not done while something counts: this attempt may have been it", (2, 1), "incomplete", None, None,
     True),
    ("a score that became the best", (2, 0), None, "0.9", "0.9", True),
    ("a score below the best", (2, 0), "incomplete", "0.4", "0.9", False),
    ("stored progress already complete (nothing to do)", (0, 0), "incomplete", None, None, True),
]


@pytest.mark.parametrize("case,stored,status_set,score,best,moves", MAY_MOVE, ids=[c[0] for c in MAY_MOVE])
def test_which_commits_may_move_progress(case, stored, status_set, score, best, moves):
    score, best = (None if v is None else Decimal(v) for v in (score, best))
    assert progress_may_move(Progress(*stored), status_set=status_set, score=score, best=best) is moves


def test_evaluating_only_when_progress_may_move_gives_the_progress_of_evaluating_after_every_commit():
    # Random courses and commit streams (out of order, scores up and down): the completion decision and the
    # stored progress must be the same at every step as when the rule is evaluated after each commit.
    rng = random.Random(5)
    statuses = ["not_attempted", "incomplete", "completed", "passed", "failed", "browsed"]
    for _ in range(1500):
        activities = [Activity(a, required=rng.random() < 0.6,
                               passing_score_scaled=rng.choice([None, None, Decimal("0.7")]))
                      for a in range(1, rng.randint(0, 4) + 1)]
        rule = rng.choice(list(CompletionRule))
        commits = []
        for attempt_id in range(rng.randint(1, 4)):
            activity_id = rng.randint(1, max(1, len(activities)) + 1)  # now and then one not in the version
            sequences = list(range(rng.randint(1, 5)))
            rng.shuffle(sequences)
            commits += [(attempt_id, activity_id, seq, rng.choice(statuses),
                         rng.choice([None, Decimal("0.5"), Decimal("0.7"), Decimal("0.9")])) for seq in sequences]
        rng.shuffle(commits)
        lazy = eager = evaluate(rule, activities, [])
        lazy_done = eager_done = None
        attempts: dict[int, tuple[int, str, int, Decimal | None]] = {}
        for step, (attempt_id, activity_id, seq, status, score) in enumerate(commits):
            activity_id, old_status, last, best = attempts.get(attempt_id, (activity_id, "not_attempted", -1, None))
            status_set = status if seq > last else None
            best = score if best is None or (score is not None and score > best) else best
            attempts[attempt_id] = (activity_id, status_set or old_status, max(seq, last), best)
            results = [AttemptResult(a, st, b) for a, st, _, b in attempts.values()]
            if eager_done is None:
                eager = evaluate(rule, activities, results)
                eager_done = step if eager.complete else None
            if lazy_done is None and progress_may_move(lazy, status_set=status_set, score=score, best=best):
                lazy = evaluate(rule, activities, results)
                lazy_done = step if lazy.complete else None
            assert (lazy_done, lazy) == (eager_done, eager), (rule, activities, commits[:step + 1])


def test_unknown_rule_falls_back_to_all_required():
    assert completion_rule("all_required") is ALL_REQUIRED
    assert completion_rule("something_new") is ALL_REQUIRED


def test_progress_is_complete_when_done_reaches_total():
    assert Progress(2, 2).complete and not Progress(2, 1).complete


def test_activities_are_flattened_from_the_published_tree():
    tree = [
        {"module_id": 1, "lessons": [
            {"lesson_id": 10, "activities": [{"activity_id": 100, "required": True, "passing_score_scaled": 0.7}]},
            {"lesson_id": 11, "activities": [{"activity_id": 101, "required": False}]},
        ]},
        {"module_id": 2, "lessons": [{"lesson_id": 20, "activities": []}]},
    ]
    assert activities_of(tree) == [Activity(100, True, Decimal("0.7")), Activity(101, False, None)]


@pytest.mark.parametrize("status,changes", [("active", True), ("cancelled", False)])
def test_cancel_changes_only_an_active_enrollment(status, changes):
    assert cancel(status) is changes


@pytest.mark.parametrize("status", ["completed", "expired"])
def test_cancel_refuses_completed_and_expired(status):
    with pytest.raises(IllegalTransition, match=status):
        cancel(status)


NOW = datetime(2026, 6, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("status,expires_at,overdue", [
    ("active", None, False),
    ("active", NOW + timedelta(seconds=1), False),
    ("active", NOW, True),
    ("active", NOW - timedelta(days=1), True),
    ("completed", NOW - timedelta(days=1), False),
    ("cancelled", NOW - timedelta(days=1), False),
])
def test_only_active_enrollments_past_their_end_are_overdue(status, expires_at, overdue):
    assert is_overdue(status, expires_at, NOW) is overdue


@pytest.mark.parametrize("text,expected", [
    ("2026-06-02T10:00:00Z", NOW),
    ("2026-06-02t10:00:00z", NOW),
    ("2026-06-02T12:00:00+02:00", NOW),
    ("2026-06-02T10:00:00.5Z", NOW.replace(microsecond=500000)),
    ("2026-06-02T10:00:00.123456789Z", NOW.replace(microsecond=123456)),
])
def test_rfc3339_timestamps_parse_to_utc(text, expected):
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2026-06-02", "2026-06-02T10:00:00", "2026-06-02T10:00Z", "1767225600",
                                  "2026-13-02T10:00:00Z", "next tuesday", ""])
def test_anything_else_is_not_rfc3339(text):
    with pytest.raises(ValueError):
        parse_rfc3339(text)
