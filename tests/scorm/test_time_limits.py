"""The manifest's time limit reaches the run-time data model (issue 20): 1.2 ``adlcp:timelimitaction`` /
``adlcp:maxtimeallowed`` and 2004 ``adlcp:timeLimitAction`` / ``imsss:limitConditions@attemptAbsoluteDurationLimit``
were ignored, so ``cmi.student_data.time_limit_action`` read "" (pure tests; the e2e one is in
tests/e2e/test_e2e_scorm_api_upload.py)."""

from __future__ import annotations

import pytest

from services.scorm.manifest.items import item_launch_data
from services.scorm.runtime.cmi import initial_cmi

MANIFEST_12 = b"""<?xml version="1.0"?>
<manifest identifier="m" xmlns="http://www.imsproject.org/xsd/imscp_rootv1p1p2"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_rootv1p2">
  <organizations default="o"><organization identifier="o"><title>T</title>
    <item identifier="timed" identifierref="r"><title>Timed</title>
      <adlcp:maxtimeallowed>00:30:00</adlcp:maxtimeallowed>
      <adlcp:timelimitaction>Exit, Message</adlcp:timelimitaction></item>
    <item identifier="bad" identifierref="r"><title>Bad</title>
      <adlcp:maxtimeallowed>half an hour</adlcp:maxtimeallowed>
      <adlcp:timelimitaction>explode</adlcp:timelimitaction></item>
    <item identifier="plain" identifierref="r"><title>Plain</title></item>
  </organization></organizations>
  <resources><resource identifier="r" type="webcontent" adlcp:scormtype="sco" href="a.html"/></resources>
</manifest>"""

MANIFEST_2004 = b"""<?xml version="1.0"?>
<manifest identifier="m" xmlns="http://www.imsglobal.org/xsd/imscp_v1p1"
          xmlns:adlcp="http://www.adlnet.org/xsd/adlcp_v1p3" xmlns:imsss="http://www.imsglobal.org/xsd/imsss">
  <organizations default="o"><organization identifier="o"><title>T</title>
    <item identifier="timed" identifierref="r"><title>Timed</title>
      <adlcp:timeLimitAction>continue,message</adlcp:timeLimitAction>
      <imsss:sequencing><imsss:limitConditions attemptAbsoluteDurationLimit="PT1H30M"/></imsss:sequencing>
    </item>
  </organization></organizations>
  <resources><resource identifier="r" type="webcontent" adlcp:scormType="sco" href="a.html"/></resources>
</manifest>"""


def test_scorm_12_time_limits_are_read_and_malformed_ones_left_out() -> None:
    found = item_launch_data(MANIFEST_12)
    assert (found["timed"].time_limit_action, found["timed"].max_time_allowed) == ("exit,message", "00:30:00")
    assert (found["bad"].time_limit_action, found["bad"].max_time_allowed) == (None, None)
    assert (found["plain"].time_limit_action, found["plain"].max_time_allowed) == (None, None)


def test_scorm_2004_time_limits_are_read() -> None:
    found = item_launch_data(MANIFEST_2004)
    assert (found["timed"].time_limit_action, found["timed"].max_time_allowed) == ("continue,message", "PT1H30M")


@pytest.mark.parametrize(("standard", "action", "limit", "elements"), [
    ("1.2", "exit,message", "00:30:00",
     ("cmi.student_data.time_limit_action", "cmi.student_data.max_time_allowed")),
    ("2004", "continue,no message", "PT1H", ("cmi.time_limit_action", "cmi.max_time_allowed")),
])
def test_the_initial_data_model_carries_them(standard: str, action: str, limit: str,
                                             elements: tuple[str, str]) -> None:
    values = initial_cmi(standard, learner_id="1", learner_name="A", suspend_data=None, location=None,
                         mastery_score=None, scaled_passing_score=None, launch_data=None,
                         time_limit_action=action, max_time_allowed=limit)
    assert (values[elements[0]], values[elements[1]]) == (action, limit)
    plain = initial_cmi(standard, learner_id="1", learner_name="A", suspend_data=None, location=None,
                        mastery_score=None, scaled_passing_score=None, launch_data=None)
    assert elements[0] not in plain and elements[1] not in plain
