"""The runtime's own reader of commit bodies (services/scorm/runtime/body.py): the same answers as json.loads plus
the shared reader's checks for every well-formed body, a clear 400 for the rest, and no parsing of what cannot be
valid."""

from __future__ import annotations

import json

import pytest

from services.scorm.api_errors import ERRORS
from services.scorm.domain import ScormError
from services.scorm.runtime.body import parse_runtime_body
from shared.domain_errors import api_error
from shared.http import ApiError


async def parsed(text: str, max_elements: int = 10) -> dict[str, str] | None:
    """The reader's refusals as the API answers them (the service's one error table)."""
    try:
        return await parse_runtime_body(text, max_elements=max_elements)
    except ScormError as exc:
        raise api_error(ERRORS, exc) or exc from None


@pytest.mark.parametrize("body", [
    {"cmi": {"cmi.location": "7", "cmi.suspend_data": 'a "quoted" {"json": [1, 2]} \\ end'}},
    {"cmi": {}},
    {"cmi": {"cmi.learner_preference.language": "ünïcødé ✓ \u2028"}},
    {"cmi": None},
])
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
async def test_well_formed_bodies_read_as_json_loads_reads_them(body: dict, separators: tuple[str, str]) -> None:
    text = json.dumps(body, separators=separators)
    assert await parsed(text) == json.loads(text)["cmi"]
    assert await parsed(json.dumps(body, indent=2)) == body["cmi"]


async def test_an_empty_body_or_object_has_no_cmi() -> None:
    assert await parsed("") is None and await parsed(" \n") is None and await parsed("{}") is None


async def test_a_repeated_name_keeps_the_last_value_as_json_does() -> None:
    assert await parsed('{"cmi":{"a":"1","a":"2"}}') == {"a": "2"}


@pytest.mark.parametrize(("text", "words"), [
    ("[]", "must be a JSON object"),
    ("null", "must be a JSON object"),
    ('{"cmi":{},"status":"passed"}', "extra fields"),
    ('{"cmi":[]}', "'cmi' must be an object"),
    ('{"cmi":"x"}', "'cmi' must be an object"),
    ('{"cmi":{"cmi.score.raw":85}}', "cmi.score.raw must be a string"),
    ('{"cmi":{"a":' + "[" * 5000 + "]" * 5000 + "}}", "a must be a string"),
    ('{"cmi":{"a":"1",}}', "not valid JSON"),
    ('{"cmi":{"a":"1"}} x', "not valid JSON"),
    ('{"cmi":{"a" "1"}}', "not valid JSON"),
    ('{"cmi":{"a":"\\x"}}', "not valid JSON"),
    ('{"cmi":{"a":"unterminated}}', "not valid JSON"),
    ('{"cmi":{"a":"\\u0000"}}', "NUL"),
    ('{"cmi":{"a":"\\ud800"}}', "unpaired surrogate"),
    ('{"cmi":{' + ",".join(f'"k{i}":""' for i in range(11)) + "}}", "more than 10 elements"),
])
async def test_anything_else_is_a_clear_400(text: str, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        await parsed(text)
    assert caught.value.status == 400 and words in caught.value.message, caught.value.message
