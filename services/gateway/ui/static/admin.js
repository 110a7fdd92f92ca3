/* mobieusLearn admin UI: small enhancements over forms that already work without JavaScript. */
(function () {
  "use strict";

  function csrfOf(form) {
    var field = form.querySelector('input[name="csrf_token"]');
    return field ? field.value : "";
  }

  function say(element, text, kind) {
    if (!element) return;
    element.textContent = text;
    element.className = element.className.replace(/\bis-(error|ok)\b/g, "").trim() + (kind ? " is-" + kind : "");
  }

  /* Copy the plain API key; the field is also select-on-focus for keyboards and old browsers. */
  function setupCopy() {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      var target = document.querySelector(button.getAttribute("data-copy"));
      var status = document.querySelector("[data-copy-status]");
      if (!target) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var done = function () { say(status, "Copied to the clipboard.", "ok"); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(target.value).then(done, function () {
            target.select(); say(status, "Press Ctrl+C (or ⌘C) to copy the selected key.");
          });
        } else {
          target.select();
          try { document.execCommand("copy"); done(); } catch (e) { say(status, "Press Ctrl+C (or ⌘C) to copy."); }
        }
      });
    });
    document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
      input.addEventListener("focus", function () { input.select(); });
    });
  }

  /* SCORM upload with a progress bar: the zip goes as the raw body to a UI endpoint that streams it on. */
  function setupUpload() {
    var form = document.querySelector("form[data-upload]");
    if (!form || !window.XMLHttpRequest) return;
    var file = form.querySelector('input[type="file"]');
    var bar = form.querySelector("progress");
    var status = form.querySelector("[data-upload-status]");
    var button = form.querySelector('button[type="submit"]');
    form.addEventListener("submit", function (event) {
      if (!file.files || !file.files.length) return;
      event.preventDefault();
      var zip = file.files[0];
      var url = form.getAttribute("data-upload");
      var title = form.querySelector('input[name="title"]');
      if (title && title.value.trim()) url += (url.indexOf("?") < 0 ? "?" : "&") + "title=" + encodeURIComponent(title.value.trim());
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Content-Type", "application/zip");
      xhr.setRequestHeader("X-CSRF-Token", csrfOf(form));
      xhr.setRequestHeader("Accept", "application/json");
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      say(status, "Uploading " + zip.name + "…");
      xhr.upload.onprogress = function (e) {
        if (!e.lengthComputable) return;
        bar.max = e.total;
        bar.value = e.loaded;
        say(status, "Uploading " + zip.name + ": " + Math.floor((100 * e.loaded) / e.total) + "%");
      };
      xhr.upload.onload = function () { say(status, "Uploaded. Checking the package…"); };
      xhr.onload = function () {
        var answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
        if (xhr.status >= 200 && xhr.status < 300 && answer && answer.location) {
          window.location.assign(answer.location);
          return;
        }
        button.disabled = false;
        bar.hidden = true;
        say(status, (answer && answer.error && answer.error.message) || "The upload failed (" + xhr.status + ").", "error");
      };
      xhr.onerror = function () {
        button.disabled = false;
        bar.hidden = true;
        say(status, "The upload was interrupted. Check the connection and try again.", "error");
      };
      xhr.send(zip);
    });
  }

  /* Reload a page whose subject is still changing (a package that is processing). */
  function setupPolling() {
    document.querySelectorAll("[data-poll]").forEach(function (element) {
      var url = element.getAttribute("data-poll");
      var current = element.getAttribute("data-poll-status");
      var tick = function () {
        fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (answer) {
            if (answer && answer.status && answer.status !== current) { window.location.reload(); return; }
            window.setTimeout(tick, 1500);
          }, function () { window.setTimeout(tick, 4000); });
      };
      window.setTimeout(tick, 1000);
    });
  }

  /* Certificate template: a live preview rendered by the certificates service as the form changes. */
  function setupPreview() {
    var form = document.querySelector("form[data-preview]");
    if (!form || !window.fetch || !window.FormData) return;
    var pane = document.querySelector("[data-preview-pane]");
    var status = document.querySelector("[data-preview-status]");
    var image = pane.querySelector("img");
    var frame = pane.querySelector("iframe");
    var objectUrl = null;
    var timer = null;
    var sequence = 0;
    var refresh = function () {
      var mine = ++sequence;
      var data = new FormData(form);
      data.delete("csrf_token");
      say(status, "Updating the preview…");
      fetch(form.getAttribute("data-preview"), {
        method: "POST", body: data, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfOf(form) }
      }).then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok) {
          return response.json().then(function (answer) {
            throw new Error((answer && answer.error && answer.error.message) || "The preview failed.");
          }, function () { throw new Error("The preview failed (" + response.status + ")."); });
        }
        return response.blob().then(function (blob) { return { blob: blob, type: type }; });
      }).then(function (result) {
        if (mine !== sequence) return;
        if (objectUrl) URL.revokeObjectURL(objectUrl);
        objectUrl = URL.createObjectURL(result.blob);
        if (result.type.indexOf("image/") === 0) {
          image.src = objectUrl;
          image.hidden = false;
          frame.hidden = true;
        } else {
          frame.src = objectUrl;
          frame.hidden = false;
          image.hidden = true;
        }
        pane.setAttribute("data-preview-version", String(mine));
        say(status, "Preview up to date.", "ok");
      }).catch(function (error) {
        if (mine !== sequence) return;
        say(status, error.message, "error");
      });
    };
    var later = function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 450);
    };
    form.addEventListener("input", later);
    form.addEventListener("change", later);
    document.querySelectorAll("[data-preview-fallback]").forEach(function (el) { el.hidden = true; });
    refresh();
  }

  /* Placeholder buttons insert {recipient_name} etc. where the cursor is. */
  function setupPlaceholders() {
    document.querySelectorAll("[data-placeholder]").forEach(function (code) { code.hidden = true; });
    document.querySelectorAll("[data-insert]").forEach(function (button) {
      button.hidden = false;
      button.title = "Insert " + button.getAttribute("data-insert") + " at the cursor";
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-target"));
        if (!target) return;
        var text = button.getAttribute("data-insert");
        var start = target.selectionStart || 0;
        var end = target.selectionEnd || 0;
        target.value = target.value.slice(0, start) + text + target.value.slice(end);
        target.focus();
        target.selectionStart = target.selectionEnd = start + text.length;
        target.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
  }

  /* Colour pickers and their hex text fields stay in step. */
  function setupColours() {
    document.querySelectorAll("[data-colour-pair]").forEach(function (box) {
      var picker = box.querySelector('input[type="color"]');
      var text = box.querySelector('input[type="text"]');
      if (!picker || !text) return;
      picker.hidden = false;
      picker.addEventListener("input", function () { text.value = picker.value; });
      text.addEventListener("input", function () {
        if (/^#[0-9a-fA-F]{6}$/.test(text.value)) picker.value = text.value.toLowerCase();
      });
    });
  }

  /* Regeneration progress after a template is saved. */
  function setupProgress() {
    document.querySelectorAll("[data-progress]").forEach(function (box) {
      var url = box.getAttribute("data-progress");
      var bar = box.querySelector("progress");
      var text = box.querySelector("[data-progress-text]");
      var tick = function () {
        fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (p) {
            if (!p) { window.setTimeout(tick, 4000); return; }
            bar.max = Math.max(p.total, 1);
            bar.value = p.total ? p.done : 1;
            text.textContent = p.text;
            box.setAttribute("data-finished", p.finished ? "true" : "false");
            if (!p.finished) window.setTimeout(tick, 2500);
          }, function () { window.setTimeout(tick, 4000); });
      };
      tick();
    });
  }

  /* Activity forms: the SCO picker only matters for SCORM activities. */
  function setupKinds() {
    document.querySelectorAll("select[data-kind]").forEach(function (select) {
      var scope = select.closest("form");
      var sync = function () {
        var scorm = select.value === "scorm";
        scope.querySelectorAll("[data-scorm-only]").forEach(function (el) {
          el.hidden = !scorm;
          el.querySelectorAll("select").forEach(function (s) { s.required = scorm; });
        });
      };
      select.addEventListener("change", sync);
      sync();
    });
  }

  /* A new course's slug follows its title until the slug is edited by hand. */
  function setupSlugs() {
    document.querySelectorAll("form[data-slug-source]").forEach(function (form) {
      var title = form.querySelector('input[name="title"]');
      var slug = form.querySelector("input[data-slug-target]");
      if (!title || !slug) return;
      var touched = slug.value !== "";
      slug.addEventListener("input", function () { touched = slug.value !== ""; });
      title.addEventListener("input", function () {
        if (touched) return;
        slug.value = title.value.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
          .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100).replace(/-+$/, "");
      });
    });
  }

  function setupAutosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    setupUpload();
    setupPolling();
    setupPlaceholders();
    setupColours();
    setupPreview();
    setupProgress();
    setupKinds();
    setupSlugs();
    setupAutosubmit();
  });
})();
