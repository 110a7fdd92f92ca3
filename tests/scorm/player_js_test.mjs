// Specification of services/scorm/static/player.js, run with node's built-in test runner
// (tests/scorm/test_player_js.py runs it). A fake fetch and sendBeacon stand in for the server.
//
// `node player_js_test.mjs --set-codes` is a helper mode instead: it reads SetValue cases as
// JSON on stdin and prints the error code of each, for the Python parity test.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import vm from "node:vm";

const require = createRequire(import.meta.url);
const PLAYER_PATH = "../../services/scorm/static/player.js";
const player = require(PLAYER_PATH);

const COMMIT_URL = "/learn/runtime/tok/commit";
const FINISH_URL = "/learn/runtime/tok/finish";

// A learner runtime that answers every POST with `respond(call)` (default 200) and records it.
function fakeServer(respond = () => 200) {
  const calls = [];
  const beacons = [];
  return {
    calls,
    beacons,
    fetch: async (url, init) => {
      const call = { url, init, body: JSON.parse(init.body) };
      calls.push(call);
      const status = respond(call);
      if (status instanceof Error) throw status;
      return { ok: status >= 200 && status < 300, status };
    },
    sendBeacon: (url, blob) => {
      beacons.push({ url, blob });
      return true;
    },
  };
}

function session(standard, cmi = {}, server = fakeServer(), extra = {}) {
  const statuses = [];
  const s = player.createPlayerSession({
    standard,
    cmi,
    commitUrl: COMMIT_URL,
    finishUrl: FINISH_URL,
    fetch: server.fetch,
    sendBeacon: server.sendBeacon,
    setTimeout: (fn) => fn(), // retries happen at once
    onStatus: (status, detail) => statuses.push(detail && detail.finished ? "finished" : status),
    ...extra,
  });
  return { ...s, server, statuses };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
async function idle(s) {
  for (let i = 0; i < 50 && !s.idle(); i++) await settle();
  await settle();
}

function started12(cmi) {
  const s = session("1.2", cmi);
  assert.equal(s.api.LMSInitialize(""), "true");
  return s;
}

function started2004(cmi) {
  const s = session("2004", cmi);
  assert.equal(s.api.Initialize(""), "true");
  return s;
}

// Runs SetValue and returns the error code it left ("0" on success).
function set12(s, name, value) {
  const result = s.api.LMSSetValue(name, value);
  const code = s.api.LMSGetLastError();
  assert.equal(result, code === "0" ? "true" : "false");
  return code;
}

function set2004(s, name, value) {
  const result = s.api.SetValue(name, value);
  const code = s.api.GetLastError();
  assert.equal(result, code === "0" ? "true" : "false");
  return code;
}

function get12(s, name) {
  return [s.api.LMSGetValue(name), s.api.LMSGetLastError()];
}

function get2004(s, name) {
  return [s.api.GetValue(name), s.api.GetLastError()];
}

if (process.argv.includes("--set-codes")) {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const results = JSON.parse(input).map(({ standard, setup, name, value }) => {
    const s = standard === "1.2" ? started12() : started2004();
    const set = standard === "1.2" ? set12 : set2004;
    for (const [setupName, setupValue] of setup) {
      const code = set(s, setupName, setupValue);
      if (code !== "0") return { setup_failed: `${setupName}=${setupValue} -> ${code}` };
    }
    return { code: set(s, name, value) };
  });
  process.stdout.write(JSON.stringify(results));
} else {
  defineTests();
}

function defineTests() {
  // --- SCORM 1.2 -------------------------------------------------------------------

  test("1.2: the session starts with LMSInitialize and starts only once", () => {
    const s = session("1.2");
    assert.equal(s.api.LMSGetValue("cmi.core.lesson_status"), "");
    assert.equal(s.api.LMSGetLastError(), "301");
    assert.equal(s.api.LMSInitialize("x"), "false");
    assert.equal(s.api.LMSGetLastError(), "201");
    assert.equal(s.api.LMSInitialize(""), "true");
    assert.equal(s.api.LMSGetLastError(), "0");
    assert.equal(s.api.LMSInitialize(""), "false");
    assert.equal(s.api.LMSGetLastError(), "101");
  });

  test("1.2: reads the launch values and the data model defaults", () => {
    const s = started12({
      "cmi.core.student_id": "u-42",
      "cmi.core.student_name": "Lovelace, Ada",
      "cmi.core.entry": "resume",
      "cmi.core.credit": "credit",
      "cmi.suspend_data": "page=3",
      "cmi.core.lesson_location": "p3",
      "cmi.student_data.mastery_score": "80",
    });
    assert.deepEqual(get12(s, "cmi.core.student_id"), ["u-42", "0"]);
    assert.deepEqual(get12(s, "cmi.core.student_name"), ["Lovelace, Ada", "0"]);
    assert.deepEqual(get12(s, "cmi.core.entry"), ["resume", "0"]);
    assert.deepEqual(get12(s, "cmi.suspend_data"), ["page=3", "0"]);
    assert.deepEqual(get12(s, "cmi.core.lesson_location"), ["p3", "0"]);
    assert.deepEqual(get12(s, "cmi.student_data.mastery_score"), ["80", "0"]);
    assert.deepEqual(get12(s, "cmi.core.lesson_status"), ["not attempted", "0"]);
    assert.deepEqual(get12(s, "cmi.core.total_time"), ["0000:00:00.00", "0"]);
    assert.deepEqual(get12(s, "cmi.core.lesson_mode"), ["normal", "0"]);
    assert.deepEqual(get12(s, "cmi.core.score.raw"), ["", "0"]);
    assert.deepEqual(get12(s, "cmi.launch_data"), ["", "0"]);
    assert.deepEqual(get12(s, "cmi._version"), ["3.4", "0"]);
  });

  test("1.2: _children and _count answer, and fail with 202/203 where they do not apply", () => {
    const s = started12();
    assert.deepEqual(get12(s, "cmi.core._children"), [
      "student_id,student_name,lesson_location,credit,lesson_status,entry,score,total_time,lesson_mode,exit,session_time",
      "0",
    ]);
    assert.deepEqual(get12(s, "cmi.core.score._children"), ["raw,min,max", "0"]);
    assert.deepEqual(get12(s, "cmi.interactions._count"), ["0", "0"]);
    assert.deepEqual(get12(s, "cmi.core.student_id._children"), ["", "202"]);
    assert.deepEqual(get12(s, "cmi.core._count"), ["", "203"]);
    assert.deepEqual(get12(s, "cmi.core.nonsense"), ["", "201"]);
    assert.deepEqual(get12(s, ""), ["", "201"]);
  });

  test("1.2: sets and reads back a read-write element", () => {
    const s = started12();
    assert.equal(set12(s, "cmi.core.lesson_status", "incomplete"), "0");
    assert.deepEqual(get12(s, "cmi.core.lesson_status"), ["incomplete", "0"]);
    assert.equal(set12(s, "cmi.core.score.raw", 85), "0"); // numbers are taken as their text
    assert.deepEqual(get12(s, "cmi.core.score.raw"), ["85", "0"]);
  });

  test("1.2: read-only, write-only and keyword elements give 403, 404 and 402", () => {
    const s = started12();
    assert.equal(set12(s, "cmi.core.student_id", "me"), "403");
    assert.equal(set12(s, "cmi.core.entry", "resume"), "403");
    assert.equal(set12(s, "cmi.core.session_time", "0000:01:00"), "0");
    assert.deepEqual(get12(s, "cmi.core.session_time"), ["", "404"]);
    assert.deepEqual(get12(s, "cmi.core.exit"), ["", "404"]);
    assert.equal(set12(s, "cmi.interactions._count", "3"), "402");
    assert.equal(set12(s, "cmi.core._children", "x"), "402");
    assert.equal(set12(s, "cmi.core.bogus", "x"), "201");
  });

  test("1.2: values outside the vocabulary, format or range give 405", () => {
    const s = started12();
    for (const [name, value] of [
      ["cmi.core.lesson_status", "not attempted"],
      ["cmi.core.lesson_status", "done"],
      ["cmi.core.score.raw", "101"],
      ["cmi.core.score.raw", "eighty"],
      ["cmi.core.session_time", "1:30"],
      ["cmi.core.session_time", "00:60:00"],
      ["cmi.core.exit", "normal"],
      ["cmi.student_preference.text", "2"],
      ["cmi.suspend_data", "x".repeat(4097)],
      ["cmi.core.lesson_location", "x".repeat(256)],
    ]) {
      assert.equal(set12(s, name, value), "405", `${name}=${value.slice(0, 20)}`);
    }
    assert.equal(set12(s, "cmi.suspend_data", "x".repeat(4096)), "0");
    assert.equal(set12(s, "cmi.core.score.raw", ""), "0");
  });

  test("1.2: interactions are added in order and are write-only", () => {
    const s = started12();
    assert.equal(set12(s, "cmi.interactions.1.id", "q2"), "201");
    assert.equal(set12(s, "cmi.interactions.0.id", "q1"), "0");
    assert.equal(set12(s, "cmi.interactions.0.type", "choice"), "0");
    assert.equal(set12(s, "cmi.interactions.0.objectives.0.id", "obj1"), "0");
    assert.equal(set12(s, "cmi.interactions.0.correct_responses.0.pattern", "a"), "0");
    assert.equal(set12(s, "cmi.interactions.0.student_response", "b"), "0");
    assert.equal(set12(s, "cmi.interactions.0.result", "wrong"), "0");
    assert.equal(set12(s, "cmi.interactions.0.time", "13:05:09"), "0");
    assert.deepEqual(get12(s, "cmi.interactions._count"), ["1", "0"]);
    assert.deepEqual(get12(s, "cmi.interactions.0.objectives._count"), ["1", "0"]);
    assert.deepEqual(get12(s, "cmi.interactions.0.correct_responses._count"), ["1", "0"]);
    assert.deepEqual(get12(s, "cmi.interactions.0.id"), ["", "404"]);
    assert.deepEqual(get12(s, "cmi.interactions.5.objectives._count"), ["", "201"]);
  });

  test("1.2: LMSCommit posts every element set since launch to the commit URL", async () => {
    const s = started12({ "cmi.core.student_id": "u-42", "cmi.suspend_data": "old" });
    set12(s, "cmi.core.lesson_status", "completed");
    set12(s, "cmi.objectives.0.id", "obj1");
    assert.equal(s.api.LMSCommit(""), "true");
    await idle(s);
    assert.equal(s.server.calls.length, 1);
    const [call] = s.server.calls;
    assert.equal(call.url, COMMIT_URL);
    assert.equal(call.init.method, "POST");
    assert.equal(call.init.keepalive, true);
    assert.equal(call.init.headers["Content-Type"], "application/json");
    assert.deepEqual(call.body, {
      cmi: { "cmi.suspend_data": "old", "cmi.core.lesson_status": "completed", "cmi.objectives.0.id": "obj1" },
    });
    assert.deepEqual(s.statuses, ["saving", "saved"]);
  });

  test("1.2: LMSFinish commits, then finishes, then refuses further calls", async () => {
    const s = started12();
    set12(s, "cmi.core.session_time", "0000:02:03.50");
    assert.equal(s.api.LMSFinish(""), "true");
    await idle(s);
    assert.deepEqual(
      s.server.calls.map((c) => c.url),
      [COMMIT_URL, FINISH_URL]
    );
    assert.deepEqual(s.server.calls[1].body, { cmi: { "cmi.core.session_time": "0000:02:03.50" } });
    assert.equal(s.statuses.at(-1), "finished");
    assert.deepEqual(get12(s, "cmi.core.lesson_status"), ["", "101"]);
    assert.equal(s.api.LMSSetValue("cmi.core.lesson_status", "passed"), "false");
    assert.equal(s.api.LMSCommit(""), "false");
    assert.equal(s.api.LMSFinish(""), "false");
    assert.equal(s.api.LMSGetLastError(), "101");
    assert.equal(s.api.LMSInitialize(""), "false");
  });

  test("1.2: error strings and diagnostics describe the last error", () => {
    const s = started12();
    set12(s, "cmi.core.student_id", "me");
    assert.equal(s.api.LMSGetLastError(), "403");
    assert.equal(s.api.LMSGetErrorString("403"), "Element is read only");
    assert.equal(s.api.LMSGetErrorString(405), "Incorrect data type");
    assert.match(s.api.LMSGetDiagnostic(""), /cmi\.core\.student_id is read-only/);
    assert.equal(s.api.LMSGetDiagnostic("201"), "Invalid argument error");
    assert.equal(s.api.LMSGetErrorString("999"), "");
    assert.equal(s.api.LMSGetLastError(), "403"); // asking about errors changes nothing
  });

  test("1.2: only the 1.2 API functions exist on a 1.2 adapter", () => {
    const api = player.createAdapter({ standard: "1.2", cmi: {}, fetch: async () => ({ ok: true, status: 200 }) });
    assert.deepEqual(Object.keys(api).sort(), [
      "LMSCommit", "LMSFinish", "LMSGetDiagnostic", "LMSGetErrorString",
      "LMSGetLastError", "LMSGetValue", "LMSInitialize", "LMSSetValue",
    ]);
  });

  // --- SCORM 2004 ------------------------------------------------------------------

  test("2004: state errors before Initialize, twice, and after Terminate", () => {
    const s = session("2004");
    assert.deepEqual(get2004(s, "cmi.location"), ["", "122"]);
    assert.equal(s.api.SetValue("cmi.location", "1"), "false");
    assert.equal(s.api.GetLastError(), "132");
    assert.equal(s.api.Commit(""), "false");
    assert.equal(s.api.GetLastError(), "142");
    assert.equal(s.api.Terminate(""), "false");
    assert.equal(s.api.GetLastError(), "112");
    assert.equal(s.api.Initialize("x"), "false");
    assert.equal(s.api.GetLastError(), "201");
    assert.equal(s.api.Initialize(""), "true");
    assert.equal(s.api.Initialize(""), "false");
    assert.equal(s.api.GetLastError(), "103");
    assert.equal(s.api.Terminate(""), "true");
    assert.deepEqual(get2004(s, "cmi.location"), ["", "123"]);
    assert.equal(s.api.SetValue("cmi.location", "1"), "false");
    assert.equal(s.api.GetLastError(), "133");
    assert.equal(s.api.Commit(""), "false");
    assert.equal(s.api.GetLastError(), "143");
    assert.equal(s.api.Terminate(""), "false");
    assert.equal(s.api.GetLastError(), "113");
    assert.equal(s.api.Initialize(""), "false");
    assert.equal(s.api.GetLastError(), "104");
  });

  test("2004: reads the launch values; unset elements without a default give 403", () => {
    const s = started2004({
      "cmi.learner_id": "u-42",
      "cmi.learner_name": "Ada Lovelace",
      "cmi.entry": "ab-initio",
      "cmi.mode": "normal",
      "cmi.credit": "no-credit",
      "cmi.launch_data": "level=2",
      "cmi.total_time": "PT1H",
    });
    assert.deepEqual(get2004(s, "cmi.learner_id"), ["u-42", "0"]);
    assert.deepEqual(get2004(s, "cmi.learner_name"), ["Ada Lovelace", "0"]);
    assert.deepEqual(get2004(s, "cmi.credit"), ["no-credit", "0"]);
    assert.deepEqual(get2004(s, "cmi.launch_data"), ["level=2", "0"]);
    assert.deepEqual(get2004(s, "cmi.total_time"), ["PT1H", "0"]);
    assert.deepEqual(get2004(s, "cmi.completion_status"), ["unknown", "0"]);
    assert.deepEqual(get2004(s, "cmi.success_status"), ["unknown", "0"]);
    assert.deepEqual(get2004(s, "cmi.learner_preference.audio_level"), ["1", "0"]);
    assert.deepEqual(get2004(s, "cmi._version"), ["1.0", "0"]);
    assert.deepEqual(get2004(s, "cmi.location"), ["", "403"]);
    assert.deepEqual(get2004(s, "cmi.suspend_data"), ["", "403"]);
    assert.deepEqual(get2004(s, "cmi.score.scaled"), ["", "403"]);
    assert.deepEqual(get2004(s, "cmi.scaled_passing_score"), ["", "403"]);
  });

  test("2004: _children, _count and their errors (301, 401)", () => {
    const s = started2004();
    assert.deepEqual(get2004(s, "cmi.score._children"), ["scaled,raw,min,max", "0"]);
    assert.deepEqual(get2004(s, "cmi.objectives._children"), [
      "id,score,success_status,completion_status,progress_measure,description",
      "0",
    ]);
    assert.deepEqual(get2004(s, "cmi.interactions._count"), ["0", "0"]);
    assert.deepEqual(get2004(s, "adl.data._count"), ["0", "0"]);
    assert.deepEqual(get2004(s, "cmi.location._children"), ["", "301"]);
    assert.deepEqual(get2004(s, "cmi.score._count"), ["", "301"]);
    assert.deepEqual(get2004(s, "cmi.nonsense"), ["", "401"]);
    assert.deepEqual(get2004(s, "cmi.core.lesson_status"), ["", "401"]); // a 1.2 name
    assert.deepEqual(get2004(s, ""), ["", "301"]);
    assert.deepEqual(get2004(s, "cmi.objectives.0.id"), ["", "301"]);
  });

  test("2004: read-only, write-only and keywords give 404 and 405", () => {
    const s = started2004();
    assert.equal(set2004(s, "cmi.learner_id", "me"), "404");
    assert.equal(set2004(s, "cmi.completion_threshold", "0.5"), "404");
    assert.equal(set2004(s, "cmi._version", "2"), "404");
    assert.equal(set2004(s, "cmi.interactions._count", "1"), "404");
    assert.equal(set2004(s, "cmi.session_time", "PT5M"), "0");
    assert.deepEqual(get2004(s, "cmi.session_time"), ["", "405"]);
    assert.equal(set2004(s, "cmi.exit", "suspend"), "0");
    assert.deepEqual(get2004(s, "cmi.exit"), ["", "405"]);
    assert.equal(set2004(s, "", "x"), "351");
    assert.equal(set2004(s, "cmi.nonsense", "x"), "401");
  });

  test("2004: wrong formats give 406 and numbers out of range 407", () => {
    const s = started2004();
    for (const [name, value, code] of [
      ["cmi.completion_status", "done", "406"],
      ["cmi.success_status", "passed ", "406"],
      ["cmi.score.scaled", "1.5", "407"],
      ["cmi.score.scaled", "high", "406"],
      ["cmi.progress_measure", "-0.1", "407"],
      ["cmi.session_time", "PT", "406"],
      ["cmi.session_time", "00:01:00", "406"],
      ["cmi.session_time", "PT1.5H", "406"],
      ["cmi.exit", "quit", "406"],
      ["cmi.learner_preference.audio_level", "-1", "407"],
      ["cmi.learner_preference.language", "english!", "406"],
      ["cmi.location", "x".repeat(1001), "406"],
      ["cmi.suspend_data", "x".repeat(64001), "406"],
      ["adl.nav.request", "jump", "406"],
    ]) {
      assert.equal(set2004(s, name, value), code, `${name}=${value.slice(0, 20)}`);
    }
    for (const [name, value] of [
      ["cmi.score.scaled", "-1"],
      ["cmi.score.raw", "1234.5"],
      ["cmi.session_time", "PT1H2M3.5S"],
      ["cmi.session_time", "P1DT0.25S"],
      ["cmi.location", "x".repeat(1000)],
      ["cmi.suspend_data", "x".repeat(64000)],
      ["cmi.learner_preference.language", "en-US"],
      ["adl.nav.request", "{target=intro}choice"],
    ]) {
      assert.equal(set2004(s, name, value), "0", `${name}=${value.slice(0, 20)}`);
    }
  });

  test("2004: an interaction exists once its id is set, and items are added in order", () => {
    const s = started2004();
    assert.equal(set2004(s, "cmi.interactions.0.type", "choice"), "408");
    assert.equal(set2004(s, "cmi.interactions.1.id", "q2"), "351");
    assert.equal(set2004(s, "cmi.interactions.0.id", "urn:q1"), "0");
    assert.deepEqual(get2004(s, "cmi.interactions._count"), ["1", "0"]);
    assert.deepEqual(get2004(s, "cmi.interactions.0.id"), ["urn:q1", "0"]);
    assert.deepEqual(get2004(s, "cmi.interactions.0.type"), ["", "403"]);
    assert.equal(set2004(s, "cmi.interactions.0.objectives.1.id", "o2"), "351");
    assert.equal(set2004(s, "cmi.interactions.0.objectives.0.id", "o1"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.objectives.1.id", "o1"), "351"); // unique in the interaction
    assert.equal(set2004(s, "cmi.interactions.1.objectives.0.id", "o1"), "408");
    assert.deepEqual(get2004(s, "cmi.interactions.0.objectives._count"), ["1", "0"]);
  });

  test("2004: responses need the type, and follow its format", () => {
    const s = started2004();
    set2004(s, "cmi.interactions.0.id", "q1");
    assert.equal(set2004(s, "cmi.interactions.0.learner_response", "a"), "408");
    assert.equal(set2004(s, "cmi.interactions.0.type", "choice"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.learner_response", "a[,]b"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.learner_response", "a[,]a"), "406");
    assert.equal(set2004(s, "cmi.interactions.0.correct_responses.0.pattern", "b"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.result", "incorrect"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.latency", "PT12S"), "0");
    assert.equal(set2004(s, "cmi.interactions.0.type", "true-false"), "351"); // would orphan "a[,]b"

    set2004(s, "cmi.interactions.1.id", "q2");
    set2004(s, "cmi.interactions.1.type", "true-false");
    assert.equal(set2004(s, "cmi.interactions.1.learner_response", "yes"), "406");
    assert.equal(set2004(s, "cmi.interactions.1.correct_responses.0.pattern", "true"), "0");
    assert.equal(set2004(s, "cmi.interactions.1.correct_responses.1.pattern", "false"), "351");

    set2004(s, "cmi.interactions.2.id", "q3");
    set2004(s, "cmi.interactions.2.type", "numeric");
    assert.equal(set2004(s, "cmi.interactions.2.correct_responses.0.pattern", "18"), "0");
    assert.equal(set2004(s, "cmi.interactions.2.learner_response", "18.5"), "0");
    assert.equal(set2004(s, "cmi.interactions.2.learner_response", "eighteen"), "406");

    set2004(s, "cmi.interactions.3.id", "q4");
    set2004(s, "cmi.interactions.3.type", "matching");
    assert.equal(set2004(s, "cmi.interactions.3.learner_response", "1[.]a[,]2[.]b"), "0");
    assert.equal(set2004(s, "cmi.interactions.3.learner_response", "1-a"), "406");
  });

  test("2004: objective ids are unique and do not change once set", () => {
    const s = started2004({ "cmi.objectives.0.id": "PRIMARYOBJ", "cmi.objectives.1.id": "obj_playing" });
    assert.deepEqual(get2004(s, "cmi.objectives._count"), ["2", "0"]);
    assert.deepEqual(get2004(s, "cmi.objectives.1.id"), ["obj_playing", "0"]);
    assert.equal(set2004(s, "cmi.objectives.1.score.scaled", 0.75), "0");
    assert.equal(set2004(s, "cmi.objectives.1.id", "obj_playing"), "0");
    assert.equal(set2004(s, "cmi.objectives.1.id", "obj_other"), "351");
    assert.equal(set2004(s, "cmi.objectives.2.id", "PRIMARYOBJ"), "351");
    assert.equal(set2004(s, "cmi.objectives.2.success_status", "passed"), "408");
    assert.equal(set2004(s, "cmi.objectives.2.id", "obj_new"), "0");
  });

  test("2004: the scaled passing score and completion threshold decide the statuses", () => {
    const s = started2004({ "cmi.scaled_passing_score": "0.8", "cmi.completion_threshold": "0.5" });
    assert.deepEqual(get2004(s, "cmi.scaled_passing_score"), ["0.8", "0"]);
    set2004(s, "cmi.success_status", "passed");
    assert.deepEqual(get2004(s, "cmi.success_status"), ["unknown", "0"]); // no score yet
    set2004(s, "cmi.score.scaled", "0.79");
    assert.deepEqual(get2004(s, "cmi.success_status"), ["failed", "0"]);
    set2004(s, "cmi.score.scaled", "0.8");
    assert.deepEqual(get2004(s, "cmi.success_status"), ["passed", "0"]);
    set2004(s, "cmi.completion_status", "completed");
    assert.deepEqual(get2004(s, "cmi.completion_status"), ["unknown", "0"]);
    set2004(s, "cmi.progress_measure", "0.4");
    assert.deepEqual(get2004(s, "cmi.completion_status"), ["incomplete", "0"]);
  });

  test("2004: navigation requests are kept and request_valid answers unknown", () => {
    const s = started2004();
    assert.deepEqual(get2004(s, "adl.nav.request"), ["_none_", "0"]);
    assert.equal(set2004(s, "adl.nav.request", "suspendAll"), "0");
    assert.deepEqual(get2004(s, "adl.nav.request"), ["suspendAll", "0"]);
    assert.deepEqual(get2004(s, "adl.nav.request_valid.continue"), ["unknown", "0"]);
    assert.deepEqual(get2004(s, "adl.nav.request_valid.choice.{target=intro.page}"), ["unknown", "0"]);
    assert.equal(set2004(s, "adl.nav.request_valid.continue", "true"), "404");
    assert.deepEqual(get2004(s, "adl.data.0.store"), ["", "301"]);
    assert.equal(set2004(s, "adl.data.0.store", "x"), "351");
  });

  test("2004: Commit and Terminate post the restored and newly set elements, never read-only ones", async () => {
    const s = started2004({
      "cmi.learner_id": "u-42",
      "cmi.suspend_data": "abc",
      "cmi.location": "p2",
      "cmi.objectives.0.id": "PRIMARYOBJ",
      "cmi.entry": "resume",
    });
    set2004(s, "cmi.completion_status", "incomplete");
    assert.equal(s.api.Commit(""), "true");
    await idle(s);
    set2004(s, "cmi.score.scaled", "0.9");
    assert.equal(s.api.Terminate(""), "true");
    await idle(s);
    assert.deepEqual(
      s.server.calls.map((c) => c.url),
      [COMMIT_URL, COMMIT_URL, FINISH_URL]
    );
    assert.deepEqual(s.server.calls[0].body.cmi, {
      "cmi.suspend_data": "abc",
      "cmi.location": "p2",
      "cmi.objectives.0.id": "PRIMARYOBJ",
      "cmi.completion_status": "incomplete",
    });
    assert.deepEqual(s.server.calls[2].body, s.server.calls[1].body);
    assert.equal(s.server.calls[2].body.cmi["cmi.score.scaled"], "0.9");
    assert.equal(s.statuses.at(-1), "finished");
  });

  test("2004: error strings and diagnostics", () => {
    const s = started2004();
    set2004(s, "cmi.score.scaled", "2");
    assert.equal(s.api.GetErrorString("407"), "Data Model Element Value Out Of Range");
    assert.equal(s.api.GetErrorString("408"), "Data Model Dependency Not Established");
    assert.match(s.api.GetDiagnostic("407"), /cmi\.score\.scaled: out of range -1\.\.1/);
    assert.equal(s.api.GetDiagnostic("406"), "Data Model Element Type Mismatch");
    assert.equal(s.api.GetErrorString("12345"), "");
  });

  // --- saving ----------------------------------------------------------------------

  test("a failed save is retried and then reported as saved", async () => {
    let failures = 2;
    const server = fakeServer(() => (failures-- > 0 ? 503 : 200));
    const s = session("2004", {}, server);
    s.api.Initialize("");
    s.api.SetValue("cmi.location", "p1");
    s.api.Commit("");
    await idle(s);
    assert.equal(server.calls.length, 3);
    assert.deepEqual(s.statuses, ["saving", "saved"]);
  });

  test("a network error after the last retry shows the error status", async () => {
    const server = fakeServer(() => new TypeError("Failed to fetch"));
    const s = session("1.2", {}, server, { retryDelays: [1] });
    s.api.LMSInitialize("");
    s.api.LMSCommit("");
    await idle(s);
    assert.equal(server.calls.length, 2);
    assert.deepEqual(s.statuses, ["saving", "error"]);
  });

  test("a refused save (expired launch) makes the next Commit fail with 391", async () => {
    const server = fakeServer(() => 401);
    const s = session("2004", {}, server);
    s.api.Initialize("");
    assert.equal(s.api.Commit(""), "true");
    await idle(s);
    assert.equal(server.calls.length, 1); // a 4xx is not retried
    assert.deepEqual(s.statuses, ["saving", "error"]);
    assert.equal(s.api.Commit(""), "false");
    assert.equal(s.api.GetLastError(), "391");
    assert.match(s.api.GetDiagnostic(""), /HTTP 401/);
  });

  test("commits made while one is in flight collapse into one more request", async () => {
    const s = started2004();
    s.api.SetValue("cmi.location", "1");
    s.api.Commit("");
    s.api.SetValue("cmi.location", "2");
    s.api.Commit("");
    s.api.SetValue("cmi.location", "3");
    s.api.Commit("");
    await idle(s);
    assert.deepEqual(
      s.server.calls.map((c) => c.body.cmi["cmi.location"]),
      ["1", "3"]
    );
  });

  test("pagehide sends unsaved changes with sendBeacon as a JSON blob", async () => {
    const s = started2004();
    s.pageHide();
    assert.equal(s.server.beacons.length, 0); // nothing to save yet
    s.api.SetValue("cmi.suspend_data", "state");
    s.pageHide();
    assert.equal(s.server.beacons.length, 1);
    const [{ url, blob }] = s.server.beacons;
    assert.equal(url, COMMIT_URL);
    assert.equal(blob.type, "application/json");
    assert.deepEqual(JSON.parse(await blob.text()), { cmi: { "cmi.suspend_data": "state" } });
  });

  test("pagehide after Terminate sends the finish that has not gone out yet", () => {
    const s = started12();
    s.pageHide();
    s.api.LMSSetValue("cmi.core.lesson_status", "completed");
    s.api.LMSFinish(""); // the SCO ends in its unload handler, after the page's pagehide
    assert.deepEqual(
      s.server.beacons.map((b) => b.url),
      [FINISH_URL]
    );
  });

  test("pagehide right after Terminate sends the finish still queued behind the commit", () => {
    const s = started2004();
    s.api.SetValue("cmi.completion_status", "completed");
    s.api.Terminate(""); // commit in flight, finish waiting for it
    s.pageHide();
    assert.deepEqual(
      s.server.beacons.map((b) => b.url),
      [FINISH_URL]
    );
  });

  test("bodies over 60 kB are not sent with keepalive, which browsers cap at 64 KiB", async () => {
    const s = started2004();
    s.api.SetValue("cmi.suspend_data", "x".repeat(64000));
    s.api.Commit("");
    await idle(s);
    assert.equal(s.server.calls[0].init.keepalive, false);
  });

  test("the element cap is enforced when an element is added", () => {
    const s = session("2004", {}, fakeServer(), { limits: { items: player.MAX_ELEMENTS + 1 } });
    assert.equal(s.api.Initialize(""), "true");
    for (let i = 0; i < player.MAX_ELEMENTS; i++) {
      assert.equal(s.api.SetValue(`cmi.interactions.${i}.id`, `q${i}`), "true");
    }
    assert.equal(set2004(s, `cmi.interactions.${player.MAX_ELEMENTS}.id`, "one-too-many"), "351");
    assert.equal(set2004(s, "cmi.interactions.0.id", "replaced"), "0"); // replacing adds nothing
  });

  test("collections hold at most the server's caps (351 past them), defaults as the server's", () => {
    assert.deepEqual(player.DEFAULT_LIMITS, { items: 1000, nested_items: 100 });
    const s = session("2004", {}, fakeServer(), { limits: { items: 250, nested_items: 10 } });
    assert.equal(s.api.Initialize(""), "true");
    for (let i = 0; i < 250; i++) assert.equal(set2004(s, `cmi.interactions.${i}.id`, `q${i}`), "0");
    assert.equal(set2004(s, "cmi.interactions.250.id", "one-too-many"), "351");
    for (let i = 0; i < 10; i++) assert.equal(set2004(s, `cmi.interactions.0.objectives.${i}.id`, `o${i}`), "0");
    assert.equal(set2004(s, "cmi.interactions.0.objectives.10.id", "one-too-many"), "351");
    const s12 = session("1.2", {}, fakeServer(), { limits: { items: 250, nested_items: 10 } });
    assert.equal(s12.api.LMSInitialize(""), "true");
    for (let i = 0; i < 250; i++) assert.equal(set12(s12, `cmi.objectives.${i}.id`, `o${i}`), "0");
    assert.equal(set12(s12, "cmi.objectives.250.id", "one-too-many"), "101");
  });

  test("the size cap keeps the commit body under the gateway's 1 MiB limit", () => {
    const s = started2004();
    let code = "0";
    let i = 0;
    for (; code === "0" && i < 1000; i++) code = set2004(s, `cmi.comments_from_learner.${i}.comment`, "c".repeat(4000));
    assert.equal(code, "351");
    assert.ok(i > 200);
    const body = JSON.stringify({ cmi: s.snapshot() });
    assert.ok(Buffer.byteLength(body) < 1024 * 1024);
  });

  // --- the page --------------------------------------------------------------------

  // Runs player.js as the browser does (no `module`), against a minimal window and document.
  function bootPage(state) {
    const elements = {
      "learn-runtime-state": { textContent: JSON.stringify(state) },
      "learn-status": { attributes: {}, textContent: "", setAttribute(k, v) { this.attributes[k] = v; } },
      "learn-content": { src: "" },
    };
    const listeners = {};
    const server = fakeServer();
    const document = {
      visibilityState: "visible",
      getElementById: (id) => elements[id],
      addEventListener: (type, fn) => (listeners[type] = fn),
    };
    const window = {
      document,
      navigator: { sendBeacon: server.sendBeacon },
      fetch: server.fetch,
      addEventListener: (type, fn) => (listeners[type] = fn),
    };
    const source = readFileSync(new URL(PLAYER_PATH, import.meta.url), "utf8");
    vm.runInNewContext(source, { window, TextEncoder, Blob, setTimeout, Promise, JSON });
    return { window, elements, listeners, server };
  }

  const pageState = (standard) => ({
    token: "tok",
    standard,
    launch_url: "shared/launchpage.html",
    commit_url: COMMIT_URL,
    finish_url: FINISH_URL,
    cmi: { "cmi.learner_id": "u-1" },
    title: "Golf",
  });

  test("the page installs only the package standard's API and then loads the SCO", () => {
    const page2004 = bootPage(pageState("2004"));
    assert.equal(typeof page2004.window.API_1484_11.Initialize, "function");
    assert.equal(page2004.window.API, undefined);
    assert.equal(page2004.elements["learn-content"].src, "/learn/content/tok/shared/launchpage.html");
    const page12 = bootPage(pageState("1.2"));
    assert.equal(typeof page12.window.API.LMSInitialize, "function");
    assert.equal(page12.window.API_1484_11, undefined);
  });

  test("the page's status line follows the saves through data-status", async () => {
    const page = bootPage(pageState("2004"));
    const api = page.window.API_1484_11;
    api.Initialize("");
    assert.equal(api.GetValue("cmi.learner_id"), "u-1");
    api.SetValue("cmi.location", "3");
    api.Commit("");
    const status = page.elements["learn-status"];
    assert.equal(status.attributes["data-status"], "saving");
    await settle();
    await settle();
    assert.equal(status.attributes["data-status"], "saved");
    assert.equal(status.textContent, "Saved");
  });

  test("the page hands unsaved data to sendBeacon on pagehide", () => {
    const page = bootPage(pageState("1.2"));
    page.window.API.LMSInitialize("");
    page.window.API.LMSSetValue("cmi.suspend_data", "s");
    page.listeners.pagehide();
    assert.deepEqual(
      page.server.beacons.map((b) => b.url),
      [COMMIT_URL]
    );
  });

  test("the content URL is the launch path under the token", () => {
    assert.equal(player.contentUrl("a.b/c", "shared/launch.html?x=1"), "/learn/content/a.b%2Fc/shared/launch.html?x=1");
    assert.equal(player.contentUrl("t", "/index.html"), "/learn/content/t/index.html");
    assert.equal(player.contentUrl("t", "javascript:alert(1)"), "/learn/content/t/javascript:alert(1)");
  });

  test("an API call never throws, even when the server side of the page is broken", () => {
    const s = session("2004", {}, { fetch: () => { throw new Error("boom"); }, sendBeacon: null });
    s.api.Initialize("");
    assert.equal(s.api.Commit(""), "true");
    assert.equal(s.api.GetValue({}), "");
    assert.equal(s.api.GetLastError(), "201");
  });
}
