/*
 * mobieusLearn SCORM player.
 *
 * Gives the SCO in the content frame the run-time API it looks for in its parent window
 * (SCORM 1.2 `window.API`, SCORM 2004 `window.API_1484_11`), applies each standard's data
 * model rules and error codes, and saves to the learner runtime: POST commit on
 * LMSCommit/Commit, commit then finish on LMSFinish/Terminate, sendBeacon on pagehide.
 *
 * The data model mirrors services/scorm/cmi_12.py and cmi_2004.py: what this file accepts,
 * the server accepts (tests/scorm/test_player_js.py checks the two agree).
 *
 * No inline script anywhere: the page passes its state in
 * <script type="application/json" id="learn-runtime-state">. In node (`module` exists) the
 * file only exports its factories and leaves the page alone.
 */
(function (root) {
  "use strict";

  // --- limits -------------------------------------------------------------------------

  // Same cap as the server (cmi.MAX_ELEMENTS).
  const MAX_ELEMENTS = 10000;
  // Items per collection, as the server caps them (LEARN_SCORM_CMI_MAX_*; the page's state carries the
  // configured values): top-level collections (index 1), an interaction's own collections (index 2).
  const DEFAULT_LIMITS = { items: 1000, nested_items: 100 };
  // The gateway refuses JSON bodies over 1 MiB; stay clear of it with the envelope around.
  const MAX_BYTES = 1000000;
  // Browsers cap keepalive fetch and sendBeacon bodies at 64 KiB.
  const KEEPALIVE_LIMIT = 60000;
  const RETRY_DELAYS_MS = [1000, 3000, 10000];

  // --- value formats (cmi.py) ---------------------------------------------------------

  const ID_CLASS =
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]";
  const INDEX = /^(?:0|[1-9][0-9]{0,8})$/;
  const SEGMENT = /^[a-z_]+$/;
  const REAL = /^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;
  const MAX_REAL_LENGTH = 40;
  const SINTEGER = /^[-+]?[0-9]{1,10}$/;
  const LANGUAGE = /^(?:[A-Za-z]{2,3}|[iIxX])(?:-[A-Za-z0-9]{1,8})*$/;
  const LOCALIZED = /^\{lang=([^}]*)\}([\s\S]*)$/;
  const CMI_TIMESPAN = /^[0-9]{2,4}:[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,2})?$/;
  const CMI_TIME = /^(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,2})?$/;
  const DURATION =
    /^P(?:[0-9]+Y)?(?:[0-9]+M)?(?:[0-9]+D)?(?:T(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+(?:\.[0-9]+)?S)?)?$/;
  const TIMESTAMP =
    /^([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2})(?::([0-9]{2})(?::([0-9]{2})(?:\.[0-9]+)?)?)?(Z|[+-]([0-9]{2})(?::([0-9]{2}))?)?)?)?)?$/;
  const NAV_TARGET = new RegExp("^\\{target=" + ID_CLASS + "{1,4000}\\}(?:choice|jump)$", "u");
  const NAV_VALID_TARGET = /^adl\.nav\.request_valid\.(?:choice|jump)\.\{target=[^}]+\}$/;

  // A check returns null when the value is fine, else {reason, range}; `range` picks the
  // 2004 "out of range" code (407) over "type mismatch" (406).
  const typeProblem = (reason) => ({ reason: reason, range: false });
  const rangeProblem = (reason) => ({ reason: reason, range: true });

  // Length in code points, as Python's len() counts them.
  function charLength(text) {
    let length = text.length;
    for (let i = 0; i < text.length - 1; i++) {
      const unit = text.charCodeAt(i);
      if (unit >= 0xd800 && unit <= 0xdbff) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          length--;
          i++;
        }
      }
    }
    return length;
  }

  const encoder = new TextEncoder();
  const utf8Length = (text) => encoder.encode(text).length;

  function stringMax(limit) {
    return (value) => (charLength(value) <= limit ? null : typeProblem(`longer than ${limit} characters`));
  }

  function vocabulary(...words) {
    const allowed = new Set(words);
    const reason = "must be one of " + words.map((w) => `"${w}"`).join(", ");
    return (value) => (allowed.has(value) ? null : typeProblem(reason));
  }

  function parseReal(value) {
    if (value.length > MAX_REAL_LENGTH || !REAL.test(value)) return null;
    const number = Number(value);
    return Number.isFinite(number) ? number : null;
  }

  function real(minimum = null, maximum = null, blank = false) {
    return (value) => {
      if (blank && value === "") return null;
      const number = parseReal(value);
      if (number === null) return typeProblem("not a decimal number");
      if ((minimum !== null && number < minimum) || (maximum !== null && number > maximum)) {
        return rangeProblem(`out of range ${minimum === null ? "" : minimum}..${maximum === null ? "" : maximum}`);
      }
      return null;
    };
  }

  function sinteger(minimum, maximum) {
    return (value) => {
      if (!SINTEGER.test(value)) return typeProblem("not an integer");
      const number = parseInt(value, 10);
      return number >= minimum && number <= maximum ? null : rangeProblem(`out of range ${minimum}..${maximum}`);
    };
  }

  function identifier(limit) {
    const shape = new RegExp(`^${ID_CLASS}{1,${limit}}$`, "u");
    const reason = `not an identifier (1 to ${limit} characters, no spaces)`;
    return (value) => (shape.test(value) ? null : typeProblem(reason));
  }

  const shortIdentifier = identifier(250);

  function language(value) {
    if (value === "" || (charLength(value) <= 250 && LANGUAGE.test(value))) return null;
    return typeProblem("not a language code such as en or en-US");
  }

  function localized(limit) {
    return (value) => {
      let text = value;
      const match = LOCALIZED.exec(value);
      if (match) {
        if (match[1] === "" || language(match[1])) return typeProblem("bad {lang=...} delimiter");
        text = match[2];
      }
      return charLength(text) <= limit ? null : typeProblem(`longer than ${limit} characters`);
    };
  }

  const cmiTimespan = (value) => (CMI_TIMESPAN.test(value) ? null : typeProblem("not a CMITimespan HHHH:MM:SS.SS"));
  const cmiTime = (value) => (CMI_TIME.test(value) ? null : typeProblem("not a CMITime HH:MM:SS.SS"));

  function isoDuration(value) {
    if (DURATION.test(value) && value !== "P" && !value.endsWith("T")) return null;
    return typeProblem("not an ISO 8601 duration such as PT1H2M3.5S");
  }

  function timestamp(value) {
    const problem = typeProblem("not an ISO 8601 time such as 2026-06-02T10:00:00Z (years 1970-2038)");
    const match = TIMESTAMP.exec(value);
    if (!match) return problem;
    const [, year, month, day, hour, minute, second, , zoneHours, zoneMinutes] = match;
    const y = Number(year);
    if (y < 1970 || y > 2038) return problem;
    if (month !== undefined && (Number(month) < 1 || Number(month) > 12)) return problem;
    if (day !== undefined) {
      const daysInMonth = new Date(Date.UTC(y, Number(month), 0)).getUTCDate();
      if (Number(day) < 1 || Number(day) > daysInMonth) return problem;
    }
    const limits = [[hour, 23], [minute, 59], [second, 59], [zoneHours, 23], [zoneMinutes, 59]];
    return limits.some(([part, top]) => part !== undefined && Number(part) > top) ? problem : null;
  }

  // --- 2004 interaction responses (cmi_2004.response_problem) ---------------------------

  const CORRECT_RESPONSE_LIMITS = { "true-false": 1, likert: 1, numeric: 1, other: 1 };
  const FLAG = /^\{(case_matters|order_matters)=(?:true|false)\}/;
  const localized250 = localized(250);
  const localized4000 = localized(4000);

  function stripFlags(value, allowed) {
    const seen = new Set();
    let match;
    while ((match = FLAG.exec(value)) && allowed.includes(match[1]) && !seen.has(match[1])) {
      seen.add(match[1]);
      value = value.slice(match[0].length);
    }
    return value;
  }

  const items = (value) => (value === "" ? [] : value.split("[,]"));

  function identifierList(value, unique) {
    const list = items(value);
    if (list.length > 36) return "more than 36 identifiers";
    if (list.some((item) => shortIdentifier(item))) return "expected identifiers separated by [,]";
    if (unique && new Set(list).size !== list.length) return "an identifier is repeated";
    return null;
  }

  function pairs(value, limit) {
    const list = items(value);
    if (list.length > limit) return `more than ${limit} items`;
    const split = list.map((item) => item.split("[.]"));
    if (split.some((pair) => pair.length !== 2)) return "expected items of the form a[.]b separated by [,]";
    return split;
  }

  function matching(value) {
    const list = pairs(value, 36);
    if (typeof list === "string") return list;
    if (list.some((pair) => pair.some((part) => shortIdentifier(part)))) return "expected source[.]target identifier pairs";
    return null;
  }

  function performance(value) {
    const list = pairs(value, 125);
    if (typeof list === "string") return list;
    for (const [name, answer] of list) {
      if ((name === "" && answer === "") || (name !== "" && shortIdentifier(name)) || charLength(answer) > 250) {
        return "expected step[.]answer items (step an identifier, answer up to 250 characters)";
      }
    }
    return null;
  }

  function numericRange(value) {
    const bounds = value.split("[:]");
    const reason = "expected a number or a range min[:]max";
    if (bounds.length > 2 || bounds.some((b) => b !== "" && parseReal(b) === null)) return reason;
    if (bounds.length === 1 && bounds[0] === "") return reason;
    if (bounds.length === 2 && !bounds.includes("") && Number(bounds[0]) > Number(bounds[1])) {
      return "the range's min is greater than its max";
    }
    return null;
  }

  function firstProblem(checks) {
    for (const problem of checks) if (problem) return problem.reason;
    return null;
  }

  // Why `value` is not a learner response (or, when isPattern, a correct-response pattern)
  // of an interaction of this type; null when it is fine.
  function responseProblem(type, value, isPattern) {
    switch (type) {
      case "true-false":
        return value === "true" || value === "false" ? null : 'must be "true" or "false"';
      case "choice":
      case "sequencing":
        return identifierList(value, type === "choice");
      case "fill-in": {
        const list = items(isPattern ? stripFlags(value, ["case_matters", "order_matters"]) : value);
        if (list.length > 10) return "more than 10 strings";
        return firstProblem(list.map((item) => localized250(item)));
      }
      case "long-fill-in":
        return firstProblem([localized4000(isPattern ? stripFlags(value, ["case_matters"]) : value)]);
      case "likert":
        return firstProblem([shortIdentifier(value)]);
      case "matching":
        return matching(value);
      case "performance":
        return performance(isPattern ? stripFlags(value, ["order_matters"]) : value);
      case "numeric":
        if (isPattern) return numericRange(value);
        return parseReal(value) === null ? "not a decimal number" : null;
      default: // other
        return charLength(value) <= 4000 ? null : "longer than 4000 characters";
    }
  }

  // --- the two data models (cmi_12.py, cmi_2004.py) ------------------------------------

  const rule = (access, check = null) => ({ access: access, check: check });
  const RO = "ro";
  const RW = "rw";
  const WO = "wo";

  const score12 = real(0, 100, true);
  const LESSON_STATUSES = ["passed", "completed", "failed", "incomplete", "browsed", "not attempted"];

  const MODEL_12 = {
    standard: "1.2",
    version: "3.4",
    elements: {
      "cmi.core.student_id": rule(RO),
      "cmi.core.student_name": rule(RO),
      "cmi.core.lesson_location": rule(RW, stringMax(255)),
      "cmi.core.credit": rule(RO),
      "cmi.core.lesson_status": rule(RW, vocabulary(...LESSON_STATUSES.slice(0, -1))),
      "cmi.core.entry": rule(RO),
      "cmi.core.score.raw": rule(RW, score12),
      "cmi.core.score.max": rule(RW, score12),
      "cmi.core.score.min": rule(RW, score12),
      "cmi.core.total_time": rule(RO),
      "cmi.core.lesson_mode": rule(RO),
      "cmi.core.exit": rule(WO, vocabulary("time-out", "suspend", "logout", "")),
      "cmi.core.session_time": rule(WO, cmiTimespan),
      "cmi.suspend_data": rule(RW, stringMax(4096)),
      "cmi.launch_data": rule(RO),
      "cmi.comments": rule(RW, stringMax(4096)),
      "cmi.comments_from_lms": rule(RO),
      "cmi.objectives.#.id": rule(RW, identifier(255)),
      "cmi.objectives.#.score.raw": rule(RW, score12),
      "cmi.objectives.#.score.max": rule(RW, score12),
      "cmi.objectives.#.score.min": rule(RW, score12),
      "cmi.objectives.#.status": rule(RW, vocabulary(...LESSON_STATUSES)),
      "cmi.student_data.mastery_score": rule(RO),
      "cmi.student_data.max_time_allowed": rule(RO),
      "cmi.student_data.time_limit_action": rule(RO),
      "cmi.student_preference.audio": rule(RW, sinteger(-1, 100)),
      "cmi.student_preference.language": rule(RW, stringMax(255)),
      "cmi.student_preference.speed": rule(RW, sinteger(-100, 100)),
      "cmi.student_preference.text": rule(RW, sinteger(-1, 1)),
      "cmi.interactions.#.id": rule(WO, identifier(255)),
      "cmi.interactions.#.objectives.#.id": rule(WO, identifier(255)),
      "cmi.interactions.#.time": rule(WO, cmiTime),
      "cmi.interactions.#.type": rule(
        WO,
        vocabulary("true-false", "choice", "fill-in", "matching", "performance", "sequencing", "likert", "numeric")
      ),
      "cmi.interactions.#.correct_responses.#.pattern": rule(WO, stringMax(255)),
      "cmi.interactions.#.weighting": rule(WO, real()),
      "cmi.interactions.#.student_response": rule(WO, stringMax(255)),
      "cmi.interactions.#.result": rule(WO, (value) =>
        ["correct", "wrong", "unanticipated", "neutral"].includes(value) || parseReal(value) !== null
          ? null
          : typeProblem('must be "correct", "wrong", "unanticipated", "neutral" or a decimal number')
      ),
      "cmi.interactions.#.latency": rule(WO, cmiTimespan),
    },
    children: {
      cmi: "core,suspend_data,launch_data,comments,objectives,student_data,student_preference,interactions",
      "cmi.core": "student_id,student_name,lesson_location,credit,lesson_status,entry,score,total_time,lesson_mode,exit,session_time",
      "cmi.core.score": "raw,min,max",
      "cmi.objectives": "id,score,status",
      "cmi.objectives.#.score": "raw,min,max",
      "cmi.student_data": "mastery_score,max_time_allowed,time_limit_action",
      "cmi.student_preference": "audio,language,speed,text",
      "cmi.interactions": "id,objectives,time,type,correct_responses,weighting,student_response,result,latency",
    },
    // Arrays: in 1.2 setting any element of item n (n == _count) creates it.
    arrays: {
      "cmi.objectives": { creatable: true, createdBy: null },
      "cmi.interactions": { creatable: true, createdBy: null },
      "cmi.interactions.#.objectives": { creatable: true, createdBy: null },
      "cmi.interactions.#.correct_responses": { creatable: true, createdBy: null },
    },
    defaults: {
      "cmi.core.student_id": "",
      "cmi.core.student_name": "",
      "cmi.core.lesson_location": "",
      "cmi.core.credit": "credit",
      "cmi.core.lesson_status": "not attempted",
      "cmi.core.entry": "ab-initio",
      "cmi.core.score.raw": "",
      "cmi.core.score.max": "",
      "cmi.core.score.min": "",
      "cmi.core.total_time": "0000:00:00.00",
      "cmi.core.lesson_mode": "normal",
      "cmi.student_preference.audio": "0",
      "cmi.student_preference.speed": "0",
      "cmi.student_preference.text": "0",
    },
    unsetReadsEmpty: true, // 1.2 has no "not initialized" error: unset elements read ""
    codes: {
      general: "101",
      argument: "201",
      getEmpty: "201",
      setEmpty: "201",
      undefined: "201",
      noChildren: "202",
      noCount: "203",
      getOutOfRange: "201",
      setOutOfRange: "201",
      setKeyword: "402",
      readOnly: "403",
      writeOnly: "404",
      type: "405",
      range: "405",
      dependency: "201",
      notInitialized: "101",
      setFailure: "101",
      commitFailure: "101",
      // Session states: 1.2 knows only "not initialized" (301); calls after LMSFinish are 101.
      initAgain: "101",
      initAfterEnd: "101",
      endBeforeInit: "301",
      endAfterEnd: "101",
      getBeforeInit: "301",
      getAfterEnd: "101",
      setBeforeInit: "301",
      setAfterEnd: "101",
      commitBeforeInit: "301",
      commitAfterEnd: "101",
    },
    errors: {
      0: "No error",
      101: "General exception",
      201: "Invalid argument error",
      202: "Element cannot have children",
      203: "Element not an array - cannot have count",
      301: "Not initialized",
      401: "Not implemented error",
      402: "Invalid set value, element is a keyword",
      403: "Element is read only",
      404: "Element is write only",
      405: "Incorrect data type",
    },
  };

  const COMPLETION = ["completed", "incomplete", "not attempted", "unknown"];
  const SUCCESS = ["passed", "failed", "unknown"];
  const longIdentifier = identifier(4000);
  const score2004 = real();
  const scaled2004 = real(-1, 1);
  const measure2004 = real(0, 1);

  const MODEL_2004 = {
    standard: "2004",
    version: "1.0",
    elements: {
      "cmi.comments_from_learner.#.comment": rule(RW, localized(4000)),
      "cmi.comments_from_learner.#.location": rule(RW, stringMax(250)),
      "cmi.comments_from_learner.#.timestamp": rule(RW, timestamp),
      "cmi.comments_from_lms.#.comment": rule(RO),
      "cmi.comments_from_lms.#.location": rule(RO),
      "cmi.comments_from_lms.#.timestamp": rule(RO),
      "cmi.completion_status": rule(RW, vocabulary(...COMPLETION)),
      "cmi.completion_threshold": rule(RO),
      "cmi.credit": rule(RO),
      "cmi.entry": rule(RO),
      "cmi.exit": rule(WO, vocabulary("time-out", "suspend", "logout", "normal", "")),
      "cmi.interactions.#.id": rule(RW, longIdentifier),
      "cmi.interactions.#.type": rule(
        RW,
        vocabulary(
          "true-false", "choice", "fill-in", "long-fill-in", "matching",
          "performance", "sequencing", "likert", "numeric", "other"
        )
      ),
      "cmi.interactions.#.objectives.#.id": rule(RW, longIdentifier),
      "cmi.interactions.#.timestamp": rule(RW, timestamp),
      "cmi.interactions.#.correct_responses.#.pattern": rule(RW), // checked against the type
      "cmi.interactions.#.weighting": rule(RW, score2004),
      "cmi.interactions.#.learner_response": rule(RW), // checked against the type
      "cmi.interactions.#.result": rule(RW, (value) =>
        ["correct", "incorrect", "unanticipated", "neutral"].includes(value) || parseReal(value) !== null
          ? null
          : typeProblem('must be "correct", "incorrect", "unanticipated", "neutral" or a decimal number')
      ),
      "cmi.interactions.#.latency": rule(RW, isoDuration),
      "cmi.interactions.#.description": rule(RW, localized(250)),
      "cmi.launch_data": rule(RO),
      "cmi.learner_id": rule(RO),
      "cmi.learner_name": rule(RO),
      "cmi.learner_preference.audio_level": rule(RW, real(0)),
      "cmi.learner_preference.language": rule(RW, language),
      "cmi.learner_preference.delivery_speed": rule(RW, real(0)),
      "cmi.learner_preference.audio_captioning": rule(RW, vocabulary("-1", "0", "1")),
      "cmi.location": rule(RW, stringMax(1000)),
      "cmi.max_time_allowed": rule(RO),
      "cmi.mode": rule(RO),
      "cmi.objectives.#.id": rule(RW, longIdentifier),
      "cmi.objectives.#.score.scaled": rule(RW, scaled2004),
      "cmi.objectives.#.score.raw": rule(RW, score2004),
      "cmi.objectives.#.score.min": rule(RW, score2004),
      "cmi.objectives.#.score.max": rule(RW, score2004),
      "cmi.objectives.#.success_status": rule(RW, vocabulary(...SUCCESS)),
      "cmi.objectives.#.completion_status": rule(RW, vocabulary(...COMPLETION)),
      "cmi.objectives.#.progress_measure": rule(RW, measure2004),
      "cmi.objectives.#.description": rule(RW, localized(250)),
      "cmi.progress_measure": rule(RW, measure2004),
      "cmi.scaled_passing_score": rule(RO),
      "cmi.score.scaled": rule(RW, scaled2004),
      "cmi.score.raw": rule(RW, score2004),
      "cmi.score.min": rule(RW, score2004),
      "cmi.score.max": rule(RW, score2004),
      "cmi.session_time": rule(WO, isoDuration),
      "cmi.success_status": rule(RW, vocabulary(...SUCCESS)),
      "cmi.suspend_data": rule(RW, stringMax(64000)),
      "cmi.time_limit_action": rule(RO),
      "cmi.total_time": rule(RO),
      "adl.nav.request": rule(RW, (value) =>
        ["continue", "previous", "exit", "exitAll", "abandon", "abandonAll", "suspendAll", "_none_"].includes(value) ||
        NAV_TARGET.test(value)
          ? null
          : typeProblem("must be a navigation request (continue, previous, exit, ..., {target=ID}choice)")
      ),
      "adl.nav.request_valid.continue": rule(RO),
      "adl.nav.request_valid.previous": rule(RO),
      // Shared data stores (4th edition). None are declared for a single-SCO launch, so
      // adl.data._count is 0; the elements exist so their errors are the right ones.
      "adl.data.#.id": rule(RO),
      "adl.data.#.store": rule(RW, stringMax(64000)),
    },
    children: {
      "cmi.comments_from_learner": "comment,location,timestamp",
      "cmi.comments_from_lms": "comment,location,timestamp",
      "cmi.interactions": "id,type,objectives,timestamp,correct_responses,weighting,learner_response,result,latency,description",
      "cmi.learner_preference": "audio_level,language,delivery_speed,audio_captioning",
      "cmi.objectives": "id,score,success_status,completion_status,progress_measure,description",
      "cmi.objectives.#.score": "scaled,raw,min,max",
      "cmi.score": "scaled,raw,min,max",
      "adl.data": "id,store",
    },
    // Arrays: an objective or interaction comes to exist when its id is set (RTE 4.2.9, 4.2.17).
    arrays: {
      "cmi.comments_from_learner": { creatable: true, createdBy: null },
      "cmi.comments_from_lms": { creatable: false, createdBy: null },
      "cmi.interactions": { creatable: true, createdBy: "id" },
      "cmi.interactions.#.objectives": { creatable: true, createdBy: "id" },
      "cmi.interactions.#.correct_responses": { creatable: true, createdBy: "pattern" },
      "cmi.objectives": { creatable: true, createdBy: "id" },
      "adl.data": { creatable: false, createdBy: null },
    },
    defaults: {
      "cmi.completion_status": "unknown",
      "cmi.success_status": "unknown",
      "cmi.credit": "credit",
      "cmi.entry": "ab-initio",
      "cmi.mode": "normal",
      "cmi.learner_id": "",
      "cmi.learner_name": "",
      "cmi.total_time": "PT0H0M0S",
      "cmi.time_limit_action": "continue,no message",
      "cmi.learner_preference.audio_level": "1",
      "cmi.learner_preference.language": "",
      "cmi.learner_preference.delivery_speed": "1",
      "cmi.learner_preference.audio_captioning": "0",
      "adl.nav.request": "_none_",
      "adl.nav.request_valid.continue": "unknown",
      "adl.nav.request_valid.previous": "unknown",
    },
    unsetReadsEmpty: false,
    evaluate: evaluate2004,
    setRules: setRules2004,
    codes: {
      general: "101",
      argument: "201",
      getEmpty: "301",
      setEmpty: "351",
      undefined: "401",
      noChildren: "301",
      noCount: "301",
      getOutOfRange: "301",
      setOutOfRange: "351",
      setKeyword: "404",
      readOnly: "404",
      writeOnly: "405",
      type: "406",
      range: "407",
      dependency: "408",
      notInitialized: "403",
      setFailure: "351",
      commitFailure: "391",
      initAgain: "103",
      initAfterEnd: "104",
      endBeforeInit: "112",
      endAfterEnd: "113",
      getBeforeInit: "122",
      getAfterEnd: "123",
      setBeforeInit: "132",
      setAfterEnd: "133",
      commitBeforeInit: "142",
      commitAfterEnd: "143",
    },
    errors: {
      0: "No Error",
      101: "General Exception",
      102: "General Initialization Failure",
      103: "Already Initialized",
      104: "Content Instance Terminated",
      111: "General Termination Failure",
      112: "Termination Before Initialization",
      113: "Termination After Termination",
      122: "Retrieve Data Before Initialization",
      123: "Retrieve Data After Termination",
      132: "Store Data Before Initialization",
      133: "Store Data After Termination",
      142: "Commit Before Initialization",
      143: "Commit After Termination",
      201: "General Argument Error",
      301: "General Get Failure",
      351: "General Set Failure",
      391: "General Commit Failure",
      401: "Undefined Data Model Element",
      402: "Unimplemented Data Model Element",
      403: "Data Model Element Value Not Initialized",
      404: "Data Model Element Is Read Only",
      405: "Data Model Element Is Write Only",
      406: "Data Model Element Type Mismatch",
      407: "Data Model Element Value Out Of Range",
      408: "Data Model Dependency Not Established",
    },
  };

  // cmi.completion_status and cmi.success_status as the LMS reports them (RTE 4.2.4.1, 4.2.22):
  // a completion threshold / scaled passing score from the manifest overrides the SCO's word.
  function evaluate2004(name, values) {
    if (name === "cmi.completion_status" && values.has("cmi.completion_threshold")) {
      const progress = values.get("cmi.progress_measure");
      if (progress === undefined) return "unknown";
      return Number(progress) >= Number(values.get("cmi.completion_threshold")) ? "completed" : "incomplete";
    }
    if (name === "cmi.success_status" && values.has("cmi.scaled_passing_score")) {
      const scaled = values.get("cmi.score.scaled");
      if (scaled === undefined) return "unknown";
      return Number(scaled) >= Number(values.get("cmi.scaled_passing_score")) ? "passed" : "failed";
    }
    return undefined;
  }

  // Rules between elements (cmi_2004.check_structure), checked when one is set.
  function setRules2004(name, parsed, value, store) {
    const codes = MODEL_2004.codes;
    const fail = (code, reason) => ({ code: code, reason: reason });
    const pattern = parsed.pattern;
    if (pattern === "cmi.objectives.#.id" || pattern === "cmi.interactions.#.objectives.#.id") {
      const array = parsed.parts.slice(0, -2).join(".");
      const index = parsed.levels[parsed.levels.length - 1].index;
      const current = store.values.get(name);
      if (pattern === "cmi.objectives.#.id" && current !== undefined && current !== value) {
        return fail(codes.setFailure, `${name}: an objective's id cannot change once set`);
      }
      const count = store.count(array);
      for (let i = 0; i < count; i++) {
        if (i !== index && store.values.get(`${array}.${i}.id`) === value) {
          return fail(codes.setFailure, `${name}: ${array}.${i} already has the id "${value}"`);
        }
      }
      return null;
    }
    if (pattern === "cmi.interactions.#.learner_response" || pattern === "cmi.interactions.#.correct_responses.#.pattern") {
      const typeName = `cmi.interactions.${parsed.levels[0].index}.type`;
      const type = store.values.get(typeName);
      if (type === undefined) {
        return fail(codes.dependency, `${typeName} must be set first: the type decides the response format`);
      }
      const isPattern = parsed.levels.length === 2;
      const limit = CORRECT_RESPONSE_LIMITS[type];
      if (isPattern && limit !== undefined && parsed.levels[1].index >= limit) {
        return fail(codes.setFailure, `a ${type} interaction has at most ${limit} correct response`);
      }
      const problem = responseProblem(type, value, isPattern);
      return problem ? fail(codes.type, `${name}: ${problem} for a ${type} interaction`) : null;
    }
    if (pattern === "cmi.interactions.#.type") {
      // A new type must still fit the responses already recorded, or the save would be refused.
      const prefix = `cmi.interactions.${parsed.levels[0].index}`;
      const reason = `${name}: the responses already set do not fit a ${value} interaction`;
      const response = store.values.get(`${prefix}.learner_response`);
      if (response !== undefined && responseProblem(value, response, false)) return fail(codes.setFailure, reason);
      const patterns = store.count(`${prefix}.correct_responses`);
      const limit = CORRECT_RESPONSE_LIMITS[value];
      if (limit !== undefined && patterns > limit) return fail(codes.setFailure, reason);
      for (let i = 0; i < patterns; i++) {
        if (responseProblem(value, store.values.get(`${prefix}.correct_responses.${i}.pattern`), true)) {
          return fail(codes.setFailure, reason);
        }
      }
    }
    return null;
  }

  // --- the data store --------------------------------------------------------------------

  // "cmi.interactions.3.objectives.0.id" -> pattern "cmi.interactions.#.objectives.#.id" and
  // one level per array position; null when the name is malformed.
  function parseName(name) {
    const parts = name.split(".");
    const pattern = [];
    const levels = [];
    for (let i = 0; i < parts.length; i++) {
      if (INDEX.test(parts[i])) {
        levels.push({ array: pattern.join("."), instance: parts.slice(0, i).join("."), index: Number(parts[i]), position: i });
        pattern.push("#");
      } else if (SEGMENT.test(parts[i])) {
        pattern.push(parts[i]);
      } else {
        return null;
      }
    }
    return { pattern: pattern.join("."), parts: parts, levels: levels };
  }

  const KEYWORDS = ["_children", "_count", "_version"];

  function createDataModel(model, initial, limits) {
    const codes = model.codes;
    const caps = Object.assign({}, DEFAULT_LIMITS, limits || {});
    const values = new Map();
    const counts = new Map(); // array instance ("cmi.interactions.2.objectives") -> items
    const written = new Map(); // element sent on commit -> its bytes in the JSON body
    let bytes = 0;
    let version = 0; // bumps on every accepted SetValue

    const count = (instance) => counts.get(instance) || 0;
    const entryBytes = (name, value) => utf8Length(JSON.stringify(name)) + utf8Length(JSON.stringify(value)) + 2;
    const ok = (value) => ({ code: "0", value: value, diagnostic: "" });
    const fail = (code, diagnostic) => ({ code: code, value: "", diagnostic: diagnostic });

    function remember(name, value, parsed) {
      const size = entryBytes(name, value);
      bytes += size - (written.get(name) || 0);
      written.set(name, size);
      values.set(name, value);
      for (const level of parsed.levels) {
        if (level.index >= count(level.instance)) counts.set(level.instance, level.index + 1);
      }
    }

    // Initial values: read-only ones are just read; writable ones (restored from the attempt)
    // belong to the snapshot the player sends back.
    for (const [name, raw] of Object.entries(initial || {})) {
      const value = String(raw);
      const parsed = parseName(name);
      const found = parsed && model.elements[parsed.pattern];
      if (found && found.access !== RO) {
        remember(name, value, parsed);
      } else {
        values.set(name, value);
        if (parsed) for (const level of parsed.levels) if (level.index >= count(level.instance)) counts.set(level.instance, level.index + 1);
      }
    }

    // The first array position of `parsed` that does not exist yet, or null.
    function missingLevel(parsed) {
      for (const level of parsed.levels) if (level.index >= count(level.instance)) return level;
      return null;
    }

    const isKnown = (parsed) =>
      parsed !== null &&
      (model.children[parsed.pattern] !== undefined || model.arrays[parsed.pattern] !== undefined || model.elements[parsed.pattern] !== undefined);

    function unknown(name) {
      return fail(codes.undefined, `${name} is not a SCORM ${model.standard} data model element`);
    }

    function getKeyword(name, keyword) {
      const parent = name.slice(0, -keyword.length - 1);
      const parsed = parent ? parseName(parent) : null;
      if (keyword === "_version") return name === "cmi._version" ? ok(model.version) : unknown(name);
      if (keyword === "_children") {
        if (parsed && model.children[parsed.pattern] !== undefined) return ok(model.children[parsed.pattern]);
        return isKnown(parsed) ? fail(codes.noChildren, `${parent} has no children`) : unknown(name);
      }
      if (parsed && model.arrays[parsed.pattern] !== undefined) {
        const missing = missingLevel(parsed);
        if (missing) return fail(codes.getOutOfRange, `${missing.instance}.${missing.index} does not exist`);
        return ok(String(count(parent)));
      }
      return isKnown(parsed) ? fail(codes.noCount, `${parent} is not an array`) : unknown(name);
    }

    function get(name) {
      if (name === "") return fail(codes.getEmpty, "GetValue needs an element name");
      const keyword = KEYWORDS.find((k) => name.endsWith("." + k));
      if (keyword) return getKeyword(name, keyword);
      if (model.standard === "2004" && NAV_VALID_TARGET.test(name)) return ok("unknown");
      const parsed = parseName(name);
      const found = parsed && model.elements[parsed.pattern];
      if (!found) return unknown(name);
      const missing = missingLevel(parsed);
      if (missing) {
        return fail(codes.getOutOfRange, `${missing.instance}.${missing.index} does not exist (${missing.instance}._count is ${count(missing.instance)})`);
      }
      if (found.access === WO) return fail(codes.writeOnly, `${name} is write-only`);
      const evaluated = model.evaluate ? model.evaluate(name, values) : undefined;
      if (evaluated !== undefined) return ok(evaluated);
      if (values.has(name)) return ok(values.get(name));
      if (model.defaults[parsed.pattern] !== undefined) return ok(model.defaults[parsed.pattern]);
      if (model.unsetReadsEmpty) return ok("");
      return fail(codes.notInitialized, `${name} has not been set`);
    }

    function set(name, value) {
      if (name === "") return fail(codes.setEmpty, "SetValue needs an element name");
      const keyword = KEYWORDS.find((k) => name.endsWith("." + k));
      if (keyword) {
        const parent = name.slice(0, -keyword.length - 1);
        const known = keyword === "_version" ? name === "cmi._version" : isKnown(parent ? parseName(parent) : null);
        return known ? fail(codes.setKeyword, `${name} is a keyword and cannot be set`) : unknown(name);
      }
      if (model.standard === "2004" && NAV_VALID_TARGET.test(name)) return fail(codes.readOnly, `${name} is read-only`);
      const parsed = parseName(name);
      const found = parsed && model.elements[parsed.pattern];
      if (!found) return unknown(name);
      if (found.access === RO) return fail(codes.readOnly, `${name} is read-only`);

      for (const level of parsed.levels) {
        const existing = count(level.instance);
        if (level.index > existing) {
          return fail(codes.setOutOfRange, `${level.instance}.${level.index} cannot be set before ${level.instance}.${existing}: items are added in order`);
        }
        if (level.index === existing) {
          const cap = level === parsed.levels[0] ? caps.items : caps.nested_items;
          if (level.index >= cap) {
            return fail(codes.setFailure, `${level.instance} holds at most ${cap} items`);
          }
          const array = model.arrays[level.array];
          if (!array.creatable) return fail(codes.setOutOfRange, `${level.instance} has no item ${level.index}`);
          const createsItem = parsed.parts.length === level.position + 2 && parsed.parts[level.position + 1] === array.createdBy;
          if (array.createdBy && !createsItem) {
            return fail(codes.dependency, `${level.instance}.${level.index}.${array.createdBy} must be set first`);
          }
        }
      }

      const problem = found.check ? found.check(value) : null;
      if (problem) return fail(problem.range ? codes.range : codes.type, `${name}: ${problem.reason}`);
      if (model.setRules) {
        const broken = model.setRules(name, parsed, value, { values: values, count: count });
        if (broken) return fail(broken.code, broken.reason);
      }

      if (!written.has(name) && written.size >= MAX_ELEMENTS) {
        return fail(codes.setFailure, `at most ${MAX_ELEMENTS} elements can be saved`);
      }
      if (bytes + entryBytes(name, value) - (written.get(name) || 0) > MAX_BYTES) {
        return fail(codes.setFailure, "too much data to save in one attempt");
      }
      remember(name, value, parsed);
      version++;
      return ok("true");
    }

    // What the player sends: every writable element set or restored since launch.
    function snapshot() {
      const cmi = {};
      for (const name of written.keys()) cmi[name] = values.get(name);
      return { cmi: cmi, version: version };
    }

    return { get: get, set: set, snapshot: snapshot };
  }

  // --- saving ------------------------------------------------------------------------------

  // Sends the snapshot to the runtime one request at a time (so an older snapshot never lands
  // after a newer one), retries network and 5xx failures, and reports progress via onStatus.
  function createSync(options) {
    const fetchImpl = options.fetch;
    const sendBeacon = options.sendBeacon || null;
    const wait = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    const retryDelays = options.retryDelays || RETRY_DELAYS_MS;
    const onStatus = options.onStatus || (() => {});
    const jobs = [];
    let running = false;
    let savedVersion = 0;
    let finishRequested = false;
    let finishDelivered = false;
    let pageHidden = false;
    let refusal = null;

    const urlOf = (kind) => (kind === "finish" ? options.finishUrl : options.commitUrl);
    const body = () => {
      const snap = options.snapshot();
      return { json: JSON.stringify({ cmi: snap.cmi }), version: snap.version };
    };

    function post(url, json) {
      return fetchImpl(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: json,
        keepalive: utf8Length(json) <= KEEPALIVE_LIMIT,
        credentials: "same-origin",
        cache: "no-store",
      });
    }

    async function deliver(kind) {
      for (let attempt = 0; ; attempt++) {
        const { json, version } = body();
        let response = null;
        try {
          response = await post(urlOf(kind), json);
        } catch (error) {
          response = null; // offline or blocked: retried below
        }
        if (response && response.ok) {
          savedVersion = Math.max(savedVersion, version);
          if (kind === "finish") finishDelivered = true;
          refusal = null;
          return true;
        }
        const status = response ? response.status : 0;
        if (status !== 0 && status < 500 && status !== 408 && status !== 429) {
          refusal = `the learner runtime refused the save (HTTP ${status})`;
          return false;
        }
        if (attempt >= retryDelays.length) {
          refusal = null; // transient: the next Commit or pagehide tries again
          return false;
        }
        await new Promise((resolve) => wait(resolve, retryDelays[attempt]));
      }
    }

    async function pump() {
      if (running) return;
      running = true;
      let failed = false;
      while (jobs.length) {
        onStatus("saving");
        const delivered = await deliver(jobs[0]);
        jobs.shift();
        if (!delivered) {
          failed = true;
          jobs.length = 0;
        }
      }
      running = false;
      if (failed) onStatus("error");
      else onStatus("saved", { finished: finishDelivered });
    }

    function enqueue(kind) {
      // Every request carries the whole snapshot, so queued commits collapse into one.
      if (!(kind === "commit" && jobs.length > 1 && jobs[jobs.length - 1] === "commit")) jobs.push(kind);
      pump();
    }

    function beacon(kind) {
      const { json } = body();
      let queued = false;
      if (sendBeacon && utf8Length(json) <= KEEPALIVE_LIMIT) {
        try {
          queued = sendBeacon(urlOf(kind), new Blob([json], { type: "application/json" }));
        } catch (error) {
          queued = false;
        }
      }
      if (!queued) {
        try {
          Promise.resolve(post(urlOf(kind), json)).catch(() => {});
        } catch (error) {
          // nothing more can be done while the page goes away
        }
      }
    }

    return {
      commit() {
        enqueue("commit");
      },
      finish() {
        finishRequested = true;
        // Once the page is going away a queued request would never start: send it now.
        if (pageHidden) beacon("finish");
        else {
          enqueue("commit");
          enqueue("finish");
        }
      },
      // The page is being hidden or unloaded: hand what is unsaved to the browser.
      pageHide() {
        pageHidden = true;
        if (finishRequested && !finishDelivered) beacon("finish");
        else if (options.snapshot().version > savedVersion || running) beacon("commit");
      },
      pageShow() {
        pageHidden = false;
      },
      // The tab went to the background: save unsaved changes while the page can still run.
      flush() {
        if (!finishRequested && options.snapshot().version > savedVersion) enqueue("commit");
      },
      refusal: () => refusal,
      idle: () => !running && jobs.length === 0,
    };
  }

  // --- the API objects -------------------------------------------------------------------

  function createPlayerSession(options) {
    const model = options.standard === "1.2" ? MODEL_12 : MODEL_2004;
    const codes = model.codes;
    const data = createDataModel(model, options.cmi, options.limits);
    const sync = createSync({
      fetch: options.fetch,
      sendBeacon: options.sendBeacon,
      setTimeout: options.setTimeout,
      retryDelays: options.retryDelays,
      onStatus: options.onStatus,
      commitUrl: options.commitUrl,
      finishUrl: options.finishUrl,
      snapshot: data.snapshot,
    });
    let phase = "new"; // new -> running -> ended
    let lastError = "0";
    let diagnostic = "";

    function outcome(code, detail, value) {
      lastError = code;
      diagnostic = detail || "";
      return value;
    }

    const emptyArgument = (arg) => arg === "" || arg === undefined || arg === null;

    // SCOs never expect an exception from the API: any bug becomes a general exception.
    function guarded(failure, fn) {
      return function () {
        try {
          return fn.apply(null, arguments);
        } catch (error) {
          return outcome(codes.general, String(error && error.message ? error.message : error), failure);
        }
      };
    }

    const initialize = guarded("false", (arg) => {
      if (!emptyArgument(arg)) return outcome(codes.argument, "the argument must be an empty string", "false");
      if (phase === "running") return outcome(codes.initAgain, "the session is already initialized", "false");
      if (phase === "ended") return outcome(codes.initAfterEnd, "the session has already ended", "false");
      phase = "running";
      return outcome("0", "", "true");
    });

    const terminate = guarded("false", (arg) => {
      if (!emptyArgument(arg)) return outcome(codes.argument, "the argument must be an empty string", "false");
      if (phase === "new") return outcome(codes.endBeforeInit, "the session was never initialized", "false");
      if (phase === "ended") return outcome(codes.endAfterEnd, "the session has already ended", "false");
      phase = "ended";
      sync.finish();
      return outcome("0", "", "true");
    });

    const getValue = guarded("", (name) => {
      if (phase !== "running") {
        const code = phase === "new" ? codes.getBeforeInit : codes.getAfterEnd;
        return outcome(code, phase === "new" ? "not initialized" : "the session has ended", "");
      }
      if (typeof name !== "string") return outcome(codes.argument, "the element name must be a string", "");
      const result = data.get(name);
      return outcome(result.code, result.diagnostic, result.value);
    });

    const setValue = guarded("false", (name, value) => {
      if (phase !== "running") {
        const code = phase === "new" ? codes.setBeforeInit : codes.setAfterEnd;
        return outcome(code, phase === "new" ? "not initialized" : "the session has ended", "false");
      }
      if (typeof name !== "string") return outcome(codes.argument, "the element name must be a string", "false");
      // Many SCOs pass numbers (SetValue("cmi.score.raw", 85)); the value they mean is clear.
      if (typeof value === "number" || typeof value === "boolean") value = String(value);
      if (typeof value !== "string") return outcome(codes.type, `${name}: the value must be a string`, "false");
      const result = data.set(name, value);
      return outcome(result.code, result.diagnostic, result.code === "0" ? "true" : "false");
    });

    const commit = guarded("false", (arg) => {
      if (!emptyArgument(arg)) return outcome(codes.argument, "the argument must be an empty string", "false");
      if (phase !== "running") {
        const code = phase === "new" ? codes.commitBeforeInit : codes.commitAfterEnd;
        return outcome(code, phase === "new" ? "not initialized" : "the session has ended", "false");
      }
      // Saving is asynchronous (a synchronous request would freeze the page); a refusal by
      // the server (expired launch, ...) is reported on the next Commit.
      const refusal = sync.refusal();
      sync.commit();
      if (refusal) return outcome(codes.commitFailure, refusal, "false");
      return outcome("0", "", "true");
    });

    const errorString = (code) => model.errors[String(code)] || "";
    const getLastError = () => lastError;
    const getErrorString = (code) => errorString(code);
    const getDiagnostic = (code) => {
      if (code === undefined || code === null || code === "" || String(code) === lastError) {
        return diagnostic || errorString(lastError);
      }
      return errorString(code);
    };

    const api =
      model.standard === "1.2"
        ? {
            LMSInitialize: initialize,
            LMSFinish: terminate,
            LMSGetValue: getValue,
            LMSSetValue: setValue,
            LMSCommit: commit,
            LMSGetLastError: getLastError,
            LMSGetErrorString: getErrorString,
            LMSGetDiagnostic: getDiagnostic,
          }
        : {
            version: "1.0",
            Initialize: initialize,
            Terminate: terminate,
            GetValue: getValue,
            SetValue: setValue,
            Commit: commit,
            GetLastError: getLastError,
            GetErrorString: getErrorString,
            GetDiagnostic: getDiagnostic,
          };

    return {
      standard: model.standard,
      api: api,
      phase: () => phase,
      snapshot: () => data.snapshot().cmi,
      pageHide: sync.pageHide,
      pageShow: sync.pageShow,
      flush: sync.flush,
      idle: sync.idle,
    };
  }

  const createAdapter = (options) => createPlayerSession(options).api;

  // --- the page ------------------------------------------------------------------------

  function contentUrl(token, launchUrl) {
    return `/learn/content/${encodeURIComponent(token)}/${String(launchUrl).replace(/^\/+/, "")}`;
  }

  const STATUS_TEXT = {
    saving: "Saving…",
    saved: "Saved",
    finished: "Saved. You can close this window.",
    error: "Your progress could not be saved",
  };

  function boot(win, doc) {
    const statusLine = doc.getElementById("learn-status");
    const showStatus = (status, detail) => {
      statusLine.setAttribute("data-status", status);
      statusLine.textContent = status === "saved" && detail && detail.finished ? STATUS_TEXT.finished : STATUS_TEXT[status] || "";
    };
    let state;
    try {
      state = JSON.parse(doc.getElementById("learn-runtime-state").textContent);
    } catch (error) {
      showStatus("error");
      return;
    }
    const session = createPlayerSession({
      standard: state.standard,
      cmi: state.cmi,
      limits: state.cmi_limits,
      commitUrl: state.commit_url,
      finishUrl: state.finish_url,
      fetch: win.fetch.bind(win),
      sendBeacon: win.navigator.sendBeacon ? win.navigator.sendBeacon.bind(win.navigator) : null,
      onStatus: showStatus,
    });
    // Only the adapter of the package's standard: content that can speak both (pipwerks and
    // most authoring tools look for API_1484_11 first) must use the one the server validates.
    if (session.standard === "1.2") win.API = session.api;
    else win.API_1484_11 = session.api;
    win.learnPlayer = session; // for browser tests and support: state, snapshot, phase

    win.addEventListener("pagehide", () => session.pageHide());
    win.addEventListener("pageshow", () => session.pageShow());
    doc.addEventListener("visibilitychange", () => {
      if (doc.visibilityState === "hidden") session.flush();
    });
    // The API exists before the SCO loads and starts looking for it.
    doc.getElementById("learn-content").src = contentUrl(state.token, state.launch_url);
  }

  const exported = {
    createPlayerSession: createPlayerSession,
    createAdapter: createAdapter,
    createDataModel: createDataModel,
    contentUrl: contentUrl,
    responseProblem: responseProblem,
    MODEL_12: MODEL_12,
    MODEL_2004: MODEL_2004,
    MAX_ELEMENTS: MAX_ELEMENTS,
    DEFAULT_LIMITS: DEFAULT_LIMITS,
    MAX_BYTES: MAX_BYTES,
  };
  if (typeof module === "object" && module && module.exports) {
    module.exports = exported;
  } else if (root && root.document) {
    boot(root, root.document);
  }
})(typeof window !== "undefined" ? window : globalThis);
