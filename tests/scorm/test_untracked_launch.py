"""Untracked launches (issue 20), the pure part: what an activity's ``complete_on_launch`` makes of an asset's
attempt at launch and at every commit after."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from services.scorm import domain
from services.scorm.runtime.cmi import derive_attempt

PACKAGE = SimpleNamespace(id=3, scorm_version="2004-3rd", title="Handouts")


def item(identifier: str, position: int, *, tracked: bool) -> SimpleNamespace:
    return SimpleNamespace(identifier=identifier, position=position, tracked=tracked, title=identifier.title(),
                           launch_url=f"{identifier}.html", mastery_score=None, passing_score_scaled=None,
                           completion_threshold=None, objective_ids=[], launch_data=None, time_limit_action=None,
                           max_time_allowed=None)


ITEMS = [item("handout", 1, tracked=False), item("quiz", 2, tracked=True)]


@pytest.mark.parametrize(("complete", "status"), [(True, "completed"), (False, "incomplete")])
def test_an_asset_launch_starts_and_stays_as_the_activity_says(complete: bool, status: str) -> None:
    target = replace(domain.sco_target(PACKAGE, ITEMS, "handout", None), complete_on_launch=complete)
    assert (target.kind, target.initial_status) == (domain.UNTRACKED, status)
    assert target.values()["complete_on_launch"] is complete
    # Whatever the player commits (an asset never calls the API; the player may still send its defaults):
    for cmi in ({}, {"cmi.completion_status": "completed"}, {"cmi.completion_status": "incomplete"}):
        fields = domain.untracked_fields(derive_attempt("2004", cmi, None, None), complete=complete)
        assert (fields.status, fields.completion_status) == (status, status)


def test_a_sco_ignores_the_option() -> None:
    target = replace(domain.sco_target(PACKAGE, ITEMS, None, None), complete_on_launch=False)
    assert (target.sco_identifier, target.kind, target.initial_status) == ("quiz", "scorm", "not_attempted")
