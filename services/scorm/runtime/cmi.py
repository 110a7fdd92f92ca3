"""The SCORM run-time data model (CMI) on the server: what a player may commit and what it means.

Pure functions, no I/O, meant to be called straight from aiohttp handlers:

- `validate_commit()` is the gate for the bodies of `POST /learn/runtime/{token}/commit|finish`;
- `derive_attempt()` turns a committed snapshot into the contract's attempt fields;
- `initial_cmi()` builds the values a launch starts with, `player_state()` the page's JSON state.

The element tables live in `cmi_12.py` (SCORM 1.2 RTE) and `cmi_2004.py` (SCORM 2004 4th edition
RTE). `static/player.js` applies the same rules in the browser, so whatever the player sends
passes here; tests/scorm/test_player_js.py checks that the two agree element by element.
"""

from __future__ import annotations

import calendar
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Literal
from urllib.parse import quote

STANDARDS = ("1.2", "2004")
# A snapshot holds every element set since launch; 10,000 is far above any real SCO
# (a 200-question test with 10 fields each is 2,000) and keeps one commit cheap to check.
MAX_ELEMENTS = 10_000
# The longest real element name is under 60 characters ("cmi.interactions.249.correct_responses.9.pattern").
MAX_NAME_LENGTH = 255
# The longest real value is under 64,000 characters (2004 suspend_data; a 125-step performance response):
# anything longer is refused before any pattern looks at it.
MAX_VALUE_LENGTH = 65_536
MODES = ("normal", "browse", "review")

# SCORM 2004 4th edition RTE's smallest permitted maximums (SPM) of the collections a SCO writes: an LMS must keep
# at least this many items. SCORM 1.2 names none; the same caps apply to its collections.
SPM_2004 = {
    "cmi.comments_from_learner": 250,
    "cmi.interactions": 250,
    "cmi.objectives": 100,
    "cmi.interactions.#.objectives": 10,
    "cmi.interactions.#.correct_responses": 10,  # choice; the single-response types allow 1 (cmi_2004)
}
#: the smallest a cap may be set to: every collection keeps at least its SPM
MIN_ITEMS = max(v for k, v in SPM_2004.items() if "#" not in k)
MIN_NESTED_ITEMS = max(v for k, v in SPM_2004.items() if "#" in k)


@dataclass(frozen=True)
class CmiLimits:
    """Caps on what one commit may hold (settings ``LEARN_SCORM_CMI_MAX_*``, docs/scorm-runtime.md).

    ``max_items``: items of a top-level collection (objectives, interactions, comments_from_learner; the first
    index is below it); ``max_nested_items``: items of a collection inside an interaction (its objectives and
    correct responses; the second index). Both at least the SCORM 2004 SPM.
    """

    max_items: int = 1000
    max_nested_items: int = 100
    max_elements: int = MAX_ELEMENTS


DEFAULT_LIMITS = CmiLimits()


class CmiError(ValueError):
    """A commit the data model rejects; the message names the element and what is wrong."""


# --- element names -----------------------------------------------------------------------

# Array positions must be written canonically ("3", never "03"), as the player writes them.
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")
_SEGMENT = re.compile(r"[a-z_]+")
INDEX_MARK = "#"


def parse_element(name: str) -> tuple[str, tuple[int, ...]] | None:
    """`cmi.interactions.3.objectives.0.id` -> (`cmi.interactions.#.objectives.#.id`, (3, 0)).

    None when the name is not made of lower-case words and canonical indices.
    """
    pattern: list[str] = []
    indices: list[int] = []
    for part in name.split("."):
        if _INDEX.fullmatch(part):
            pattern.append(INDEX_MARK)
            indices.append(int(part))
        elif _SEGMENT.fullmatch(part):
            pattern.append(part)
        else:
            return None
    return ".".join(pattern), tuple(indices)


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if _INDEX.fullmatch(p) else (1, p) for p in name.split("."))


# --- value formats -----------------------------------------------------------------------

# A check returns None when the value is fine, else a short reason.
Check = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Rule:
    access: Literal["ro", "rw", "wo"]
    check: Check | None = None  # None: read-only, or checked with its siblings (2004 responses)


# Characters allowed in identifiers: printable, no white space (same class in player.js).
ID_CHAR = r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_REAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SINTEGER = re.compile(r"[-+]?[0-9]{1,10}")
_LANGUAGE = re.compile(r"(?:[A-Za-z]{2,3}|[iIxX])(?:-[A-Za-z0-9]{1,8})*")
_LOCALIZED = re.compile(r"\{lang=([^}]*)\}(.*)", re.DOTALL)
_CMI_TIMESPAN = re.compile(r"([0-9]{2,4}):([0-5][0-9]):([0-5][0-9](?:\.[0-9]{1,2})?)")
_CMI_TIME = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,2})?")
_DURATION = re.compile(
    r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)D)?"
    r"(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+(?:\.[0-9]+)?)S)?)?"
)
_TIMESTAMP = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?)?"
    r"(Z|[+-]([0-9]{2})(?::([0-9]{2}))?)?)?)?)?"
)
MAX_REAL_LENGTH = 40  # longer numerals are not numbers a SCO means to report


def parse_real(value: str) -> float | None:
    """A SCORM decimal (`-1.5`, `.5`, `3.`), or None: no exponents, no spaces, finite."""
    if len(value) > MAX_REAL_LENGTH or not _REAL.fullmatch(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def string_max(limit: int) -> Check:
    def check(value: str) -> str | None:
        return None if len(value) <= limit else f"longer than {limit} characters"

    return check


def vocabulary(*words: str) -> Check:
    allowed = frozenset(words)

    def check(value: str) -> str | None:
        return None if value in allowed else "must be one of " + ", ".join(f'"{w}"' for w in words)

    return check


def real(minimum: float | None = None, maximum: float | None = None, *, blank: bool = False) -> Check:
    def check(value: str) -> str | None:
        if blank and value == "":
            return None
        number = parse_real(value)
        if number is None:
            return "not a decimal number"
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            return f"out of range {_bounds(minimum, maximum)}"
        return None

    return check


def sinteger(minimum: int, maximum: int) -> Check:
    def check(value: str) -> str | None:
        if not _SINTEGER.fullmatch(value):
            return "not an integer"
        if not minimum <= int(value) <= maximum:
            return f"out of range {minimum}..{maximum}"
        return None

    return check


def identifier(limit: int) -> Check:
    shape = re.compile(f"{ID_CHAR}{{1,{limit}}}")

    def check(value: str) -> str | None:
        if shape.fullmatch(value):
            return None
        return f"not an identifier (1 to {limit} characters, no spaces)"

    return check


def short_identifier(value: str) -> str | None:
    return identifier(250)(value)


def language(value: str) -> str | None:
    if value == "" or (len(value) <= 250 and _LANGUAGE.fullmatch(value)):
        return None
    return "not a language code such as en or en-US"


def localized(limit: int) -> Check:
    def check(value: str) -> str | None:
        text = value
        match = _LOCALIZED.fullmatch(value)
        if match:
            if not match.group(1) or language(match.group(1)):
                return "bad {lang=...} delimiter"
            text = match.group(2)
        return None if len(text) <= limit else f"longer than {limit} characters"

    return check


def cmi_timespan(value: str) -> str | None:
    return None if _CMI_TIMESPAN.fullmatch(value) else "not a CMITimespan HHHH:MM:SS.SS"


def cmi_time(value: str) -> str | None:
    return None if _CMI_TIME.fullmatch(value) else "not a CMITime HH:MM:SS.SS"


def iso8601_duration(value: str) -> str | None:
    try:
        parse_iso8601_duration(value)
    except CmiError:
        return "not an ISO 8601 duration such as PT1H2M3.5S"
    return None


def timestamp(value: str) -> str | None:
    match = _TIMESTAMP.fullmatch(value)
    reason = "not an ISO 8601 time such as 2026-06-02T10:00:00Z (years 1970-2038)"
    if not match:
        return reason
    year, month, day, hour, minute, second, _zone, zone_h, zone_m = match.groups()
    if not 1970 <= int(year) <= 2038:
        return reason
    if month is not None and not 1 <= int(month) <= 12:
        return reason
    if day is not None and not 1 <= int(day) <= calendar.monthrange(int(year), int(month))[1]:
        return reason
    limits = ((hour, 23), (minute, 59), (second, 59), (zone_h, 23), (zone_m, 59))
    if any(part is not None and int(part) > top for part, top in limits):
        return reason
    return None


def _bounds(minimum: float | None, maximum: float | None) -> str:
    low = "" if minimum is None else format_decimal(minimum)
    high = "" if maximum is None else format_decimal(maximum)
    return f"{low}..{high}"


# --- times -------------------------------------------------------------------------------

# ISO 8601 leaves years and months open; we use the average Gregorian ones (as the Rustici
# examples do). SCOs report session times in hours, minutes and seconds anyway.
_SECONDS_PER_DAY = 86_400.0
_SECONDS_PER_MONTH = _SECONDS_PER_DAY * 30.4375
_SECONDS_PER_YEAR = _SECONDS_PER_MONTH * 12


def parse_cmi_timespan(value: str) -> float:
    """SCORM 1.2 CMITimespan `HHHH:MM:SS.SS` (2-4 hour digits, 0-2 decimals) in seconds."""
    match = _CMI_TIMESPAN.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise CmiError(f"{value!r} is not a CMITimespan HHHH:MM:SS.SS")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_iso8601_duration(value: str) -> float:
    """SCORM 2004 timeinterval `P[nY][nM][nD][T[nH][nM][n[.n]S]]` in seconds."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not match or value == "P" or value.endswith("T"):
        raise CmiError(f"{value!r} is not an ISO 8601 duration such as PT1H2M3.5S")
    years, months, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return (
        years * _SECONDS_PER_YEAR
        + months * _SECONDS_PER_MONTH
        + days * _SECONDS_PER_DAY
        + hours * 3600
        + minutes * 60
        + seconds
    )


def format_cmi_timespan(seconds: float) -> str:
    """Seconds as a SCORM 1.2 CMITimespan; capped at 9999:59:59.99, the format's largest."""
    hundredths = min(max(round(seconds * 100), 0), 9999 * 360_000 + 359_999)
    hours, rest = divmod(hundredths, 360_000)
    minutes, rest = divmod(rest, 6000)
    return f"{hours:04d}:{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


def format_iso8601_duration(seconds: float) -> str:
    """Seconds as a SCORM 2004 timeinterval in hours, minutes and seconds: `PT1H2M3.5S`."""
    hundredths = max(round(seconds * 100), 0)
    hours, rest = divmod(hundredths, 360_000)
    minutes, rest = divmod(rest, 6000)
    whole, fraction = divmod(rest, 100)
    second_text = f"{whole}.{fraction:02d}".rstrip("0").rstrip(".")
    return f"PT{hours}H{minutes}M{second_text}S"


def format_decimal(number: float) -> str:
    """A float as a plain SCORM decimal: 80.0 -> "80", 1e-07 -> "0.0000001"."""
    text = format(Decimal(repr(float(number))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- commits -----------------------------------------------------------------------------


def _model(standard: str) -> ModuleType:
    # Imported here: the standard modules build their tables from the checks above.
    from services.scorm.runtime import cmi_12, cmi_2004

    if standard == "1.2":
        return cmi_12
    if standard == "2004":
        return cmi_2004
    raise CmiError(f'unknown SCORM standard {standard!r}: expected "1.2" or "2004"')


def _shown(name: str) -> str:
    """An element name as an error message may quote it (never the whole of a hostile one)."""
    return name if len(name) <= 80 else name[:60] + "..."


def validate_commit(standard: str, cmi: dict[str, str], limits: CmiLimits = DEFAULT_LIMITS) -> dict[str, str]:
    """Check a committed CMI snapshot (flat, dotted names, string values) and return it normalised.

    Rejected (CmiError): a body that is not an object of strings, more than MAX_ELEMENTS
    elements, unknown elements, read-only elements and keywords (`_count`, `_children`; the
    player never sends them, so a client that does is not the player), values in the wrong
    format, vocabulary or range, strings over their length cap, arrays with gaps, and for 2004
    the dependency rules (an objective or interaction needs its id, a response needs the
    interaction's type), collection indexes at or over their cap (``limits``; each checked in
    O(1), so no index a client picks costs more than any other). Normalised means: the same pairs,
    ordered by element (array indices numerically); no value is rewritten.
    """
    model = _model(standard)
    if not isinstance(cmi, dict):
        raise CmiError("cmi must be an object mapping element names to string values")
    if len(cmi) > limits.max_elements:
        raise CmiError(f"cmi has {len(cmi)} elements; at most {limits.max_elements} are accepted")
    elements: Mapping[str, Rule] = model.ELEMENTS
    for name, value in cmi.items():
        if not isinstance(name, str):
            raise CmiError("element names must be strings")
        if len(name) > MAX_NAME_LENGTH:
            raise CmiError(f"{_shown(name)} is not a SCORM {standard} data model element (name too long)")
        parsed = parse_element(name)
        rule = elements.get(parsed[0]) if parsed else None
        if rule is None:
            if name.rsplit(".", 1)[-1] in ("_children", "_count", "_version"):
                raise CmiError(f"{_shown(name)} is a read-only keyword; it cannot be set")
            raise CmiError(f"{_shown(name)} is not a SCORM {standard} data model element")
        assert parsed is not None
        indices = parsed[1]
        if indices and (indices[0] >= limits.max_items or (len(indices) > 1 and indices[1] >= limits.max_nested_items)):
            raise CmiError(_out_of_range(name, indices, limits))
        if rule.access == "ro":
            raise CmiError(f"{name} is read-only; the learner runtime sets it, not the content")
        if not isinstance(value, str):
            raise CmiError(f"{name} must be a string, got {type(value).__name__}")
        if len(value) > MAX_VALUE_LENGTH:
            raise CmiError(f"{name}: longer than {MAX_VALUE_LENGTH} characters")
        problem = rule.check(value) if rule.check else None
        if problem:
            raise CmiError(f"{name}: {problem}")
    check_arrays(cmi)
    model.check_structure(cmi)
    return {name: cmi[name] for name in sorted(cmi, key=_natural_key)}


def _out_of_range(name: str, indices: tuple[int, ...], limits: CmiLimits) -> str:
    parts = name.split(".")
    nested = len(indices) > 1 and indices[1] >= limits.max_nested_items
    cap = limits.max_nested_items if nested else limits.max_items
    # the collection's own name: everything before the offending index
    position = [i for i, part in enumerate(parts) if _INDEX.fullmatch(part)][1 if nested else 0]
    array = ".".join(parts[:position])
    return (f"{array}.{parts[position]}: index out of range; this learner runtime keeps at most {cap} items "
            f"of {array} (indexes 0 to {cap - 1})")


def check_arrays(names: Iterable[str]) -> None:
    """Array items exist in order: index n needs 0..n-1 (the player creates them one by one)."""
    present: dict[str, set[int]] = defaultdict(set)
    for name in names:
        parts = name.split(".")
        for position, part in enumerate(parts):
            if _INDEX.fullmatch(part):
                present[".".join(parts[:position])].add(int(part))
    for array, indices in sorted(present.items()):
        if max(indices) >= len(indices):
            # len(indices) distinct numbers, one of them >= len: one of 0..len-1 is missing (O(len), never O(max))
            missing = next(i for i in range(len(indices)) if i not in indices)
            raise CmiError(
                f"{array}.{missing} is missing but {array}.{max(indices)} is set; "
                "array items are numbered 0, 1, 2, ... without gaps"
            )


# --- attempts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptFields:
    """What a CMI snapshot says about the attempt (contract §6 Attempt).

    `completion_status` and `success_status` use SCORM 2004 words for both standards
    (None: the content did not say); `status` is the contract's attempt status.
    """

    status: str  # not_attempted, incomplete, completed, passed, failed, browsed
    completion_status: str | None  # completed, incomplete, not attempted
    success_status: str | None  # passed, failed
    score_raw: float | None
    score_scaled: float | None  # -1..1
    passed: bool | None
    session_time_seconds: float | None  # the session time the SCO reported (whole launch so far)
    location: str | None
    suspend_data: str | None
    exit: str | None


def derive_attempt(
    standard: str,
    cmi: dict[str, str],
    mastery_score: float | None = None,
    scaled_passing_score: float | None = None,
    *,
    completion_threshold: float | None = None,
) -> AttemptFields:
    """The attempt fields a (validated) CMI snapshot implies.

    `mastery_score` (0..100, from the 1.2 manifest) applies to 1.2 only;
    `scaled_passing_score` and `completion_threshold` (from the 2004 manifest, or an
    activity's `passing_score_scaled`) to 2004 only. See cmi_12.derive / cmi_2004.derive.
    """
    return _model(standard).derive(
        cmi,
        mastery_score=mastery_score,
        scaled_passing_score=scaled_passing_score,
        completion_threshold=completion_threshold,
    )


def scale_score(raw: float, minimum: float | None, maximum: float | None) -> float:
    """raw normalised to -1..1 with the content's min/max (1.2 default range 0..100)."""
    if minimum is not None and maximum is not None and maximum > minimum:
        scaled = (raw - minimum) / (maximum - minimum)
    elif maximum is not None and maximum > 0:
        scaled = raw / maximum
    else:
        scaled = raw / 100
    return min(max(scaled, -1.0), 1.0)


def real_value(cmi: Mapping[str, str], name: str) -> float | None:
    """A decimal element's value; None when unset or blank (1.2 allows "")."""
    value = cmi.get(name)
    if value is None or value == "":
        return None
    number = parse_real(value)
    if number is None:
        raise CmiError(f"{name}: {value!r} is not a decimal number")
    return number


# --- launches ----------------------------------------------------------------------------


def initial_cmi(
    standard: str,
    *,
    learner_id: str,
    learner_name: str,
    suspend_data: str | None,
    location: str | None,
    mastery_score: float | None,
    scaled_passing_score: float | None,
    launch_data: str | None,
    credit: bool = True,
    mode: str = "normal",
    completion_threshold: float | None = None,
    total_time_seconds: float = 0.0,
    objective_ids: Sequence[str] = (),
    saved: Mapping[str, str] | None = None,
    time_limit_action: str | None = None,
    max_time_allowed: str | None = None,
) -> dict[str, str]:
    """The values the player starts with (only data; the player knows the defaults).

    - entry is "resume" when there is suspend data or the saved session exited with
      "suspend", else "ab-initio";
    - `saved` is the attempt's last committed snapshot: every element the content may write
      comes back (status, score, interactions, objectives...) except the per-session ones
      (session time, exit); explicit `suspend_data` / `location` win over it;
    - `objective_ids` (2004): the objectives the manifest declares for the SCO, which the
      RTE says the LMS puts into cmi.objectives before launch; those already saved are kept;
    - `mastery_score` feeds 1.2 `cmi.student_data.mastery_score`, `scaled_passing_score`
      and `completion_threshold` the 2004 elements of those names; each is ignored by the
      other standard.
    """
    if mode not in MODES:
        raise CmiError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return _model(standard).initial(
        learner_id=learner_id,
        learner_name=learner_name,
        suspend_data=suspend_data,
        location=location,
        mastery_score=mastery_score,
        scaled_passing_score=scaled_passing_score,
        launch_data=launch_data,
        credit=credit,
        mode=mode,
        completion_threshold=completion_threshold,
        total_time_seconds=total_time_seconds,
        objective_ids=tuple(objective_ids),
        saved=dict(saved or {}),
        time_limit_action=time_limit_action,
        max_time_allowed=max_time_allowed,
    )


def restorable(saved: Mapping[str, str], elements: Mapping[str, Rule], per_session: set[str]) -> dict[str, str]:
    """The part of a saved snapshot a new session starts from: writable, not per-session."""
    kept: dict[str, str] = {}
    for name, value in saved.items():
        parsed = parse_element(name)
        rule = elements.get(parsed[0]) if parsed else None
        if rule is not None and rule.access != "ro" and name not in per_session:
            kept[name] = value
    return kept


def player_state(*, token: str, standard: str, launch_url: str, cmi: dict[str, str], title: str) -> dict[str, object]:
    """The JSON block templates/player.html hands to player.js (`state` in the template).

    `launch_url` is the SCO's href inside the package (with its parameters); the player loads
    it from `/learn/content/{token}/{launch_url}`.
    """
    _model(standard)
    runtime = f"/learn/runtime/{quote(token, safe='')}"
    return {
        "token": token,
        "standard": standard,
        "launch_url": launch_url,
        "commit_url": f"{runtime}/commit",
        "finish_url": f"{runtime}/finish",
        "cmi": cmi,
        "title": title,
    }


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_ELEMENTS",
    "STANDARDS",
    "AttemptFields",
    "CmiError",
    "CmiLimits",
    "derive_attempt",
    "format_cmi_timespan",
    "format_iso8601_duration",
    "initial_cmi",
    "parse_cmi_timespan",
    "parse_iso8601_duration",
    "player_state",
    "validate_commit",
]
