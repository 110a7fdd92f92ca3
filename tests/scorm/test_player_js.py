"""The browser player: its own specification (node), its agreement with the server's CMI rules,
and the page it is served in."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest

from services.scorm.runtime import cmi_12, cmi_2004
from services.scorm.runtime.cmi import CmiError, player_state, validate_commit

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "scorm" / "player_js_test.mjs"
TEMPLATES = ROOT / "services" / "scorm" / "templates"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (v18+) is needed to test services/scorm/static/player.js", pytrace=False)
    return node


def test_player_js_meets_its_specification():
    result = subprocess.run([_node(), str(SPEC)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout


# --- the player accepts exactly what the server accepts ---------------------------------------

PROBES = [
    "", "0", "1", "-1", "0.5", "1.5", "-0.5", "100", "101", "-100", "2", "1e5", ".5", "3.", "01",
    "abc", "a b", "ABC", "true", "false", "yes",
    "passed", "failed", "completed", "incomplete", "browsed", "not attempted", "unknown",
    "suspend", "normal", "time-out", "logout", "correct", "wrong", "incorrect", "neutral",
    "choice", "other", "true-false", "long-fill-in",
    "PT1M", "PT", "P", "P1DT2H", "PT1.5S", "PT1.5H", "P0S", "PT1H2M3.5S",
    "0000:01:00", "0000:01:00.5", "00:60:00", "12:00:00", "24:00:00", "12:00:00.123",
    "2026-06-02T10:00:00Z", "2026-06-02T10:00:00.123+02:00", "2026-02-30", "1969-12-31", "2026",
    "en", "en-US", "e", "english!", "{lang=en}hello", "{lang=}x", "{lang=en-GB}" + "y" * 250,
    "a[,]b", "a[,]a", "a[.]b", "1[.]a[,]2[.]b", "a[.]b[.]c", "[.]", "x[.]", "1[:]5", "5[:]1", "[:]5", "[:]",
    "{case_matters=true}abc", "{order_matters=false}a[,]b", "{case_matters=true}{case_matters=true}a",
    "_none_", "exitAll", "jump", "{target=x}choice", "{target=}jump",
    "été", "tab\there", "line\nbreak",
    "x" * 36, ",".join("x" * 2 for _ in range(40)), "[,]".join(f"c{i}" for i in range(37)),
    "x" * 250, "x" * 251, "x" * 255, "x" * 256, "x" * 1000, "x" * 1001,
    "x" * 4000, "x" * 4001, "x" * 4096, "x" * 4097, "x" * 64000, "x" * 64001,
    "\N{GRINNING FACE}" * 250, "\N{GRINNING FACE}" * 251,
]  # fmt: skip


def _setup_2004(name: str) -> list[tuple[str, str]]:
    """What a SCO sets before `name` so that the 2004 dependency rules are met."""
    if name.startswith("cmi.objectives.0.") and name != "cmi.objectives.0.id":
        return [("cmi.objectives.0.id", "o0")]
    if name.startswith("cmi.interactions.0.") and name != "cmi.interactions.0.id":
        return [("cmi.interactions.0.id", "i0")]
    return []


def _cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for standard, model in (("1.2", cmi_12), ("2004", cmi_2004)):
        for pattern in model.ELEMENTS:
            name = pattern.replace("#", "0")
            setup = _setup_2004(name) if standard == "2004" else []
            if name.endswith(("learner_response", "pattern")):
                continue  # below, once per interaction type
            cases += [{"standard": standard, "setup": setup, "name": name, "value": v} for v in PROBES]
        for name in ("cmi.bogus", "cmi.core._children", "cmi._version", "cmi.interactions._count", "cmi.01.id"):
            cases.append({"standard": standard, "setup": [], "name": name, "value": "1"})
    for interaction_type in cmi_2004.INTERACTION_TYPES:
        setup = [("cmi.interactions.0.id", "i0"), ("cmi.interactions.0.type", interaction_type)]
        for name in ("cmi.interactions.0.learner_response", "cmi.interactions.0.correct_responses.0.pattern"):
            cases += [{"standard": "2004", "setup": setup, "name": name, "value": v} for v in PROBES]
        pattern_1 = "cmi.interactions.0.correct_responses.1.pattern"
        # Two valid patterns per type: only the per-type limit can refuse the second.
        first, second = {
            "true-false": ("true", "false"),
            "numeric": ("1", "2"),
            "matching": ("a[.]b", "c[.]d"),
            "performance": ("a[.]b", "c[.]d"),
        }.get(interaction_type, ("a", "b"))
        setup_1 = [*setup, ("cmi.interactions.0.correct_responses.0.pattern", first)]
        cases.append({"standard": "2004", "setup": setup_1, "name": pattern_1, "value": second})
    # Dependencies and order, which depend on what was set before.
    cases += [
        {"standard": "2004", "setup": [], "name": "cmi.interactions.0.type", "value": "choice"},
        {"standard": "2004", "setup": [], "name": "cmi.objectives.1.id", "value": "o1"},
        {"standard": "2004", "setup": [("cmi.objectives.0.id", "o")], "name": "cmi.objectives.1.id", "value": "o"},
        {"standard": "2004", "setup": [], "name": "cmi.interactions.0.learner_response", "value": "a"},
        {"standard": "1.2", "setup": [], "name": "cmi.interactions.1.id", "value": "q"},
        {"standard": "1.2", "setup": [], "name": "cmi.interactions.0.objectives.0.id", "value": "o"},
    ]
    return cases


def _server_accepts(case: dict[str, object]) -> bool:
    snapshot = dict(case["setup"])  # type: ignore[arg-type]
    snapshot[case["name"]] = case["value"]  # type: ignore[index]
    try:
        validate_commit(str(case["standard"]), snapshot)
    except CmiError:
        return False
    return True


def test_the_player_accepts_exactly_what_the_server_accepts():
    cases = _cases()
    result = subprocess.run(
        [_node(), str(SPEC), "--set-codes"],
        cwd=ROOT,
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout)
    assert len(outcomes) == len(cases)
    disagreements = []
    for case, outcome in zip(cases, outcomes, strict=True):
        assert "setup_failed" not in outcome, (case, outcome)
        if (outcome["code"] == "0") != _server_accepts(case):
            disagreements.append(f"{case['standard']} {case['name']}={str(case['value'])[:30]!r}: js {outcome['code']}")
    assert not disagreements, "\n".join(disagreements[:40])
    assert sum(outcome["code"] == "0" for outcome in outcomes) > 300  # the table exercises acceptance too


# --- the page ---------------------------------------------------------------------------------


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data_block = ""
        self._in_data_block = False
        self.inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self._in_data_block = attributes.get("type") == "application/json"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data_block = False

    def handle_data(self, data: str) -> None:
        if self._in_data_block:
            self.data_block += data
        elif self.tags and self.tags[-1][0] == "script" and data.strip():
            self.inline_script = True


def _render(state: dict[str, object]) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return environment.get_template("player.html").render(state=state)


HOSTILE = "</script><script>alert(1)</script><!--"


@pytest.fixture
def page() -> tuple[_PageParser, dict[str, object]]:
    state = player_state(
        token="tok.en",
        standard="2004",
        launch_url="shared/launchpage.html?lang=en",
        cmi={"cmi.learner_name": HOSTILE, "cmi.suspend_data": "a<b>&c"},
        title=f"Golf {HOSTILE}",
    )
    parser = _PageParser()
    parser.feed(_render(state))
    return parser, state


def test_the_page_passes_the_state_to_the_player_in_a_json_block(page):
    parser, state = page
    assert json.loads(parser.data_block) == state


def test_the_page_runs_no_inline_script_and_no_inline_handlers(page):
    parser, _ = page
    scripts = [attributes for tag, attributes in parser.tags if tag == "script"]
    assert scripts == [
        {"type": "application/json", "id": "learn-runtime-state"},
        {"src": "/learn/static/player.js", "defer": None},
    ]
    assert not parser.inline_script
    handlers = [(tag, name) for tag, attributes in parser.tags for name in attributes if name.startswith("on")]
    assert handlers == []


def test_the_page_has_the_chrome_the_player_and_browser_tests_drive(page):
    parser, _ = page
    by_id = {attributes.get("id"): (tag, attributes) for tag, attributes in parser.tags}
    assert by_id["learn-status"][1]["data-status"] == "idle"
    assert by_id["learn-content"][0] == "iframe"
    assert "src" not in by_id["learn-content"][1]  # player.js sets it once the API exists
    assert ("link", {"rel": "stylesheet", "href": "/learn/static/player.css"}) in parser.tags


def test_player_state_points_the_player_at_the_runtime_endpoints():
    state = player_state(token="a/b", standard="1.2", launch_url="index.html", cmi={}, title="T")
    assert state == {
        "token": "a/b",
        "standard": "1.2",
        "launch_url": "index.html",
        "commit_url": "/learn/runtime/a%2Fb/commit",
        "finish_url": "/learn/runtime/a%2Fb/finish",
        "cmi": {},
        "title": "T",
    }
