/*
 * The built-in page of non-SCORM activities: a tiny SCO speaking SCORM 2004 to the player's
 * window.API_1484_11. Initialize marks the attempt incomplete (unless it already is completed);
 * "Mark as complete" sets cmi.completion_status = completed, reports the session time and
 * terminates, so the runtime sends a finished runtime.committed.
 */
(function () {
  "use strict";

  function findApi(win) {
    for (let hops = 0; win && hops < 8; hops++) {
      if (win.API_1484_11) return win.API_1484_11;
      if (win.parent === win) break;
      win = win.parent;
    }
    return null;
  }

  function duration(ms) {
    const seconds = Math.max(0, Math.round(ms / 10) / 100);
    return "PT" + seconds.toFixed(2) + "S";
  }

  const api = findApi(window.parent);
  const button = document.getElementById("activity-complete");
  const status = document.getElementById("activity-status");
  const started = Date.now();
  let open = false;

  function show(text, state) {
    status.textContent = text;
    status.setAttribute("data-state", state);
  }

  function terminate(exit) {
    if (!open) return;
    open = false;
    api.SetValue("cmi.session_time", duration(Date.now() - started));
    api.SetValue("cmi.exit", exit);
    api.Terminate("");
  }

  if (!api || api.Initialize("") !== "true") {
    show("This page must be opened from a course launch.", "error");
    return;
  }
  open = true;
  const completion = api.GetValue("cmi.completion_status");
  if (completion === "completed") {
    show("Completed.", "done");
  } else {
    api.SetValue("cmi.completion_status", "incomplete");
    api.Commit("");
    button.disabled = false;
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    api.SetValue("cmi.completion_status", "completed");
    terminate("normal");
    show("Completed.", "done");
  });

  // Leaving without completing keeps the attempt open for the next launch.
  window.addEventListener("pagehide", function () {
    terminate("suspend");
  });
})();
