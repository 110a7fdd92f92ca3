"""What an item of the manifest tells the runtime at launch, beyond the SCO list of ``parse.py``.

Pure: manifest bytes in, ``{item identifier: ItemLaunchData}`` out. Read once at import, stored with each
SCO:

- ``objective_ids``: the ``objectiveID``s of the item's ``imsss:primaryObjective`` and ``imsss:objective``s
  (its own ``imsss:sequencing``, else the ``sequencingCollection`` entry it names with ``IDRef``). The SCORM
  2004 RTE has the LMS put them into ``cmi.objectives`` before launch, and content relies on it;
- ``completion_threshold``: ``adlcp:completionThreshold`` (3rd Edition: its text; 4th Edition: its
  ``minProgressMeasure`` when ``completedByMeasure="true"``);
- ``launch_data``: ``adlcp:dataFromLMS`` (``adlcp:datafromlms`` in 1.2);
- ``time_limit_action``: ``adlcp:timelimitaction`` (1.2) / ``adlcp:timeLimitAction`` (2004), one of the four
  values both standards define; ``max_time_allowed``: ``adlcp:maxtimeallowed`` (1.2, a CMITimespan) /
  ``imsss:limitConditions/@attemptAbsoluteDurationLimit`` (2004, an ISO 8601 duration). Malformed values are
  left out (the runtime then reports the element empty, as for a manifest without them).

The manifest has already passed ``parse_manifest`` (DTDs forbidden) when this runs; it is parsed the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring

MAX_LAUNCH_DATA = 4096


@dataclass(frozen=True)
class ItemLaunchData:
    objective_ids: list[str] = field(default_factory=list)
    completion_threshold: float | None = None
    launch_data: str | None = None
    time_limit_action: str | None = None
    max_time_allowed: str | None = None


TIME_LIMIT_ACTIONS = ("exit,message", "exit,no message", "continue,message", "continue,no message")
_CMI_TIMESPAN = re.compile(r"^\d{2,4}:\d{2}:\d{2}(\.\d{1,2})?$")
_ISO_DURATION = re.compile(r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d{1,2})?S)?)?$")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _namespace(tag: object) -> str:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


def _children(element: Element, local: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == local]


def _ratio(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def _objective_ids(sequencing: Element) -> list[str]:
    ids: list[str] = []
    for objectives in _children(sequencing, "objectives"):
        if "adlseq" in _namespace(objectives.tag):
            continue  # adlseq:objectives map completion to global objectives; they declare no new ids
        for objective in objectives:
            if _local(objective.tag) in ("primaryObjective", "objective"):
                objective_id = (objective.get("objectiveID") or "").strip()
                if objective_id and objective_id not in ids:
                    ids.append(objective_id)
    return ids


def _completion_threshold(item: Element) -> float | None:
    for element in _children(item, "completionThreshold"):
        if element.attrib:
            if (element.get("completedByMeasure") or "").strip().lower() == "true":
                return _ratio(element.get("minProgressMeasure") or "1.0")
            return None
        return _ratio(element.text)
    return None


def _launch_data(item: Element) -> str | None:
    for child in item:
        if _local(child.tag).lower() == "datafromlms" and child.text and child.text.strip():
            return child.text.strip()[:MAX_LAUNCH_DATA]
    return None


def _child_text(item: Element, local: str) -> str | None:
    for child in item:
        if _local(child.tag).lower() == local and child.text and child.text.strip():
            return child.text.strip()
    return None


def _time_limit_action(item: Element) -> str | None:
    text = _child_text(item, "timelimitaction")
    value = " ".join(text.lower().replace(", ", ",").split()) if text else None
    return value if value in TIME_LIMIT_ACTIONS else None


def _max_time_allowed(item: Element) -> str | None:
    text = _child_text(item, "maxtimeallowed")  # SCORM 1.2: a CMITimespan
    if text is not None:
        return text if _CMI_TIMESPAN.match(text) else None
    for sequencing in _children(item, "sequencing"):  # SCORM 2004: the attempt's absolute duration limit
        for limits in _children(sequencing, "limitConditions"):
            value = (limits.get("attemptAbsoluteDurationLimit") or "").strip()
            if value and _ISO_DURATION.match(value):
                return value
    return None


def item_launch_data(manifest_xml: bytes) -> dict[str, ItemLaunchData]:
    root = fromstring(manifest_xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    collection: dict[str, Element] = {}
    for element in root.iter():
        if _local(element.tag) == "sequencingCollection":
            for sequencing in _children(element, "sequencing"):
                if sequencing.get("ID"):
                    collection[sequencing.get("ID", "")] = sequencing
    found: dict[str, ItemLaunchData] = {}
    for item in root.iter():
        if _local(item.tag) != "item" or not item.get("identifier"):
            continue
        objective_ids: list[str] = []
        for sequencing in _children(item, "sequencing"):
            own = _objective_ids(sequencing)
            shared = collection.get(sequencing.get("IDRef", ""))
            objective_ids = own or (_objective_ids(shared) if shared is not None else [])
        found[item.get("identifier", "")] = ItemLaunchData(
            objective_ids=objective_ids,
            completion_threshold=_completion_threshold(item),
            launch_data=_launch_data(item),
            time_limit_action=_time_limit_action(item),
            max_time_allowed=_max_time_allowed(item),
        )
    return found
