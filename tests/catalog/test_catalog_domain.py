"""Pure catalog rules: transitions, publish readiness, positions, activity shape."""

from __future__ import annotations

import pytest

from services.catalog.domain import (
    CatalogError,
    ReadyPackage,
    Transition,
    activity_state,
    insert_position,
    move_position,
    next_status,
    publish_problems,
    reorder_positions,
)


def activity(id_: int, kind: str = "video", required: bool = True, package: int | None = None,
             sco: str | None = None) -> dict:
    return {"id": id_, "kind": kind, "required": required, "scorm_package_id": package, "sco_identifier": sco}


def tree(*activities: dict) -> list[dict]:
    return [{"lessons": [{"activities": list(activities)}]}]


@pytest.mark.parametrize(("action", "current", "target"), [
    (Transition.PUBLISH, "draft", "published"),
    (Transition.UNPUBLISH, "published", "draft"),
    (Transition.ARCHIVE, "draft", "archived"),
    (Transition.ARCHIVE, "published", "archived"),
])
def test_allowed_transitions(action, current, target):
    assert next_status(action, current) == target


@pytest.mark.parametrize(("action", "current"), [
    (Transition.PUBLISH, "published"), (Transition.PUBLISH, "archived"), (Transition.UNPUBLISH, "draft"),
    (Transition.UNPUBLISH, "archived"), (Transition.ARCHIVE, "archived"),
])
def test_illegal_transitions_say_which(action, current):
    with pytest.raises(CatalogError) as err:
        next_status(action, current)
    assert err.value.code == "invalid_argument" and action.value in err.value.message


def test_a_tree_without_activities_cannot_be_published():
    assert publish_problems("any_activity", [{"lessons": [{"activities": []}]}], {}) == [
        "a course needs at least one activity to be published"]


def test_a_tree_with_a_ready_sco_can_be_published():
    packages = {5: ReadyPackage(5, frozenset({"a", "b"}))}
    assert publish_problems("all_required", tree(activity(1, "scorm", package=5, sco="b")), packages) == []


def test_every_bad_scorm_reference_is_reported():
    packages = {5: ReadyPackage(5, frozenset({"a"}))}
    problems = publish_problems("all_required", tree(activity(1, "scorm", package=5, sco="z"),
                                                     activity(2, "scorm", package=6, sco="a")), packages)
    assert len(problems) == 2
    assert "'z'" in problems[0] and "package 6" in problems[1]


def test_all_required_with_only_optional_activities_cannot_be_published():
    assert publish_problems("all_required", tree(activity(1, required=False)), {}) == [
        "completion_rule 'all_required' needs at least one required activity"]


@pytest.mark.parametrize(("requested", "count", "expected"), [
    (None, 0, 1), (None, 3, 4), (1, 3, 1), (2, 3, 2), (4, 3, 4), (99, 3, 4)])
def test_insert_position(requested, count, expected):
    assert insert_position(requested, count) == expected


@pytest.mark.parametrize(("requested", "count", "expected"), [(1, 3, 1), (3, 3, 3), (99, 3, 3)])
def test_move_position_stays_among_the_siblings(requested, count, expected):
    assert move_position(requested, count) == expected


def test_reorder_numbers_the_ids_from_one():
    assert reorder_positions([7, 3, 5], [3, 5, 7], "module") == {7: 1, 3: 2, 5: 3}


@pytest.mark.parametrize("ids", [[3, 5], [3, 5, 7, 9], [3, 3, 5, 7]])
def test_reorder_rejects_anything_but_each_child_once(ids):
    with pytest.raises(CatalogError) as err:
        reorder_positions(ids, [3, 5, 7], "module")
    assert err.value.code == "invalid_argument"


def test_a_scorm_activity_without_a_sco_launches_the_first_one_as_the_docs_say():
    # issue 20: the docs said sco_identifier is optional, the code answered missing_field
    state = activity_state({}, {"kind": "scorm", "scorm_package_id": 1})
    assert state["sco_identifier"] is None
    assert publish_problems("all_activities", [{"lessons": [{"activities": [
        activity(1, "scorm", package=1, sco=None)]}]}], {1: ReadyPackage(1, frozenset({"a"}))}) == []
    assert publish_problems("all_activities", [{"lessons": [{"activities": [
        activity(1, "scorm", package=1, sco=None)]}]}], {1: ReadyPackage(1, frozenset())}) == [
        "activity 1 launches the first SCO of SCORM package 1, which has none"]


def test_a_scorm_activity_without_a_package_or_with_a_blank_sco_is_refused():
    with pytest.raises(CatalogError) as err:
        activity_state({}, {"kind": "scorm", "sco_identifier": "a"})
    assert (err.value.code, "scorm_package_id" in err.value.message) == ("missing_field", True)
    with pytest.raises(CatalogError) as err:
        activity_state({}, {"kind": "scorm", "scorm_package_id": 1, "sco_identifier": "  "})
    assert err.value.code == "invalid_argument"


def test_leaving_scorm_drops_the_reference_unless_sent():
    current = {"kind": "scorm", "scorm_package_id": 1, "sco_identifier": "a"}
    assert activity_state(current, {"kind": "link"})["scorm_package_id"] is None
    with pytest.raises(CatalogError):
        activity_state(current, {"kind": "link", "sco_identifier": "a"})


# --- issue 20: archived packages and complete_on_launch ---------------------------------------------------------

ASSETS = ReadyPackage(7, frozenset({"handout", "quiz"}), untracked=frozenset({"handout"}), first="quiz")


def with_option(act: dict, value: bool | None) -> dict:
    return {**act, "complete_on_launch": value}


def test_an_archived_package_cannot_back_a_course():
    archived = {5: ReadyPackage(5, frozenset({"a"}), archived=True)}
    assert publish_problems("all_required", tree(activity(1, "scorm", package=5, sco="a")), archived) == [
        "activity 1 references SCORM package 5, which is archived: point it at another package"]


@pytest.mark.parametrize(("sco", "value", "refused"), [
    ("handout", True, False), ("handout", False, False), ("handout", None, False),
    ("quiz", None, False), ("quiz", False, False),  # false on a SCO says what happens anyway
    ("quiz", True, True), (None, True, True),  # no sco_identifier: the first SCO, 'quiz'
])
def test_complete_on_launch_true_is_refused_on_a_sco(sco, value, refused):
    problems = publish_problems("all_required", tree(with_option(activity(1, "scorm", package=7, sco=sco), value)),
                                {7: ASSETS})
    assert bool(problems) is refused, problems
    if refused:
        assert "complete_on_launch" in problems[0] and "'quiz'" in problems[0]


def test_without_a_sco_the_first_item_is_launched_and_may_complete_on_launch():
    only_assets = ReadyPackage(8, frozenset({"a1", "a2"}), untracked=frozenset({"a1", "a2"}), first="a1")
    assert publish_problems("all_required", tree(with_option(activity(1, "scorm", package=8), True)),
                            {8: only_assets}) == []


def test_complete_on_launch_is_only_for_scorm_activities():
    with pytest.raises(CatalogError) as err:
        activity_state({}, {"kind": "video", "complete_on_launch": False})
    assert "complete_on_launch" in err.value.message
    state = activity_state({"kind": "scorm", "scorm_package_id": 1, "complete_on_launch": False}, {"kind": "link"})
    assert state["complete_on_launch"] is None
