/* grader.js: progressive enhancement for the server-rendered pages. Every feature here is optional: without
   JavaScript the same pages work through plain links, forms and (while grading runs) a timed refresh.

   - [data-live-url]    polls a small JSON endpoint; when its "stamp" changes, fetches the page again and swaps
                        the regions named in data-live-regions (ids), so open dashboards follow grading live.
   - [data-status-url]  a student's status page: polls the submission's API document until it is graded.
   - form[data-upload]  drag and drop plus the server's upload rules (name, size, UTF-8 text), checked early.
   - table[data-sortable], input[data-filter-for]: instant sort and search of the gradebook table.
   - time[datetime], input[data-utc]: times shown, and typed, in the viewer's own timezone (the server renders
                        and reads UTC, and says so; the UTC original stays in each time's title).
*/
(function () {
  "use strict";

  var LIVE_BUSY_MS = 2500;   // while something is grading
  var LIVE_IDLE_MS = 10000;  // otherwise: new submissions still show up, at a gentle rate
  var STATUS_MS = 2000;
  var FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  function humanBytes(n) {
    if (n < 1024) { return n + " bytes"; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1).replace(/\.0$/, "") + " KB"; }
    return (n / 1024 / 1024).toFixed(1).replace(/\.0$/, "") + " MB";
  }

  /* ---- times in the viewer's timezone ------------------------------------------------------------- */
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localText(d) {
    var zone = "";
    try {
      var part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d)
        .filter(function (p) { return p.type === "timeZoneName"; })[0];
      zone = part ? " " + part.value : "";
    } catch (e) { zone = ""; }
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + zone;
  }

  function localInput(d) {  // a datetime-local value, in the viewer's timezone
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.hasAttribute("data-local")) { return; }
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.title = el.textContent;  // the server's UTC text, on hover
      el.textContent = localText(d);
      el.setAttribute("data-local", "");
    });
  }

  function localizeForm(form) {
    var fields = form.querySelectorAll("input[data-utc]");
    if (!fields.length || form.hasAttribute("data-local")) { return; }
    form.setAttribute("data-local", "");
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "your timezone";
    fields.forEach(function (input) {
      if (input.value) {
        var d = new Date(input.value.slice(0, 19) + "Z");
        if (!isNaN(d.getTime())) { input.value = localInput(d); }
      }
    });
    form.querySelectorAll("[data-zone]").forEach(function (el) { el.textContent = zone; });
    form.addEventListener("submit", function () {
      // The server reads these fields as UTC: send each as UTC in a hidden twin, the typed one unsent.
      fields.forEach(function (input) {
        if (!input.name) { return; }
        var twin = document.createElement("input");
        twin.type = "hidden";
        twin.name = input.name;
        var d = input.value ? new Date(input.value) : null;  // no offset: read in the viewer's timezone
        twin.value = d && !isNaN(d.getTime()) ? d.toISOString().slice(0, 19) : input.value;
        input.removeAttribute("name");
        form.appendChild(twin);
      });
    });
  }

  /* ---- live regions --------------------------------------------------------------------------------- */
  function startLive(note) {
    var url = note.getAttribute("data-live-url");
    var regions = (note.getAttribute("data-live-regions") || "").split(/\s+/).filter(Boolean);
    var stamp = null;
    var failures = 0;
    var stopped = false;

    function schedule(ms) { if (!stopped) { window.setTimeout(tick, ms); } }

    function swap() {
      return fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html");
          regions.forEach(function (id) {
            var now = document.getElementById(id);
            var next = fresh.getElementById(id);
            if (!now || !next) { return; }
            // Keyboard users keep their place: the focused control's twin in the new region gets the focus.
            var place = Array.prototype.indexOf.call(now.querySelectorAll(FOCUSABLE), document.activeElement);
            var incoming = document.importNode(next, true);
            now.replaceWith(incoming);
            enhance(incoming);
            var twin = place >= 0 ? incoming.querySelectorAll(FOCUSABLE)[place] : null;
            if (twin) { twin.focus({ preventScroll: true }); }
          });
          document.title = fresh.title;
          var freshNote = fresh.getElementById(note.id);
          if (freshNote && !freshNote.hasAttribute("data-live-url")) { stopped = true; }
        });
    }

    function tick() {
      if (document.hidden) { schedule(LIVE_IDLE_MS); return; }
      getJSON(url).then(function (data) {
        failures = 0;
        if (stamp === null) {
          stamp = data.stamp;
          // Rendered while busy but idle by the first poll (a fast grading finished in between): nothing will
          // change again, so bring the page up to date now rather than wait for a change that never comes.
          if (!data.busy) { return swap().then(function () { return data; }); }
          return data;
        }
        if (data.stamp === stamp) { return data; }
        return swap().then(function () {
          stamp = data.stamp;
          note.textContent = "Updated at " + new Date().toLocaleTimeString() + ".";
          return data;
        });
      }).then(function (data) {
        if (data.busy && !stopped) { note.textContent = note.textContent || "Grading in progress: this page updates itself."; }
        schedule(data.busy ? LIVE_BUSY_MS : LIVE_IDLE_MS);
      }).catch(function () {
        failures += 1;
        note.textContent = "Live updates paused: the server did not answer. Retrying…";
        schedule(Math.min(60000, LIVE_BUSY_MS * Math.pow(2, failures)));
      });
    }

    schedule(LIVE_BUSY_MS);
  }

  /* ---- a student's status page ---------------------------------------------------------------------- */
  function startStatus(section) {
    var url = section.getAttribute("data-status-url");
    var line = section.querySelector("[data-status-text]");
    var note = section.querySelector("[data-status-message]");
    var shown = null;
    var words = { queued: "Waiting in the queue", running: "Being graded" };

    function render(doc) {
      var key = doc.status + ":" + (doc.queue_position || "") + ":" + (doc.message || "");
      if (key === shown) { return; }
      shown = key;
      // Why it waits (grading paused, the queue down, a retry), or nothing once that is over.
      note.textContent = doc.message || "";
      note.hidden = !doc.message;
      var badge = document.createElement("span");
      badge.className = "badge badge-" + doc.status;
      badge.textContent = words[doc.status] || doc.status;
      var text = doc.status === "queued"
        ? (doc.queue_position ? " You are number " + doc.queue_position + " in the queue." : " Waiting for a worker.")
        : " Your tests are running now.";
      line.replaceChildren(badge, document.createTextNode(text));
    }

    function tick() {
      getJSON(url).then(function (doc) {
        if (doc.status === "graded" || doc.status === "error") {
          // The finished page (scores, every test) is rendered by the server: load it.
          window.location.reload();
          return;
        }
        render(doc);
        window.setTimeout(tick, STATUS_MS);
      }).catch(function () { window.setTimeout(tick, STATUS_MS * 3); });
    }

    window.setTimeout(tick, STATUS_MS);
  }

  /* ---- upload: drag and drop, and the server's rules checked before sending -------------------------- */
  function enhanceUpload(form) {
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector("[data-dropzone]");
    var error = form.querySelector("[data-file-error]");
    var chosen = form.querySelector("[data-chosen]");
    var button = form.querySelector("button[type=submit]");
    var names = (form.getAttribute("data-accept-names") || "").split(",").filter(Boolean);
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);
    if (!input || !zone) { return; }

    function show(message) {
      error.textContent = message || "";
      error.hidden = !message;
      input.setAttribute("aria-invalid", message ? "true" : "false");
      zone.classList.toggle("invalid", Boolean(message));
    }

    // The same rules, in the same order, as grader.services.submissions.check_upload.
    function check(file) {
      if (!file) { return Promise.resolve("Choose a file first."); }
      if (names.indexOf(file.name) < 0) {
        return Promise.resolve("This assignment accepts " + names.join(" or ") + ", and your file is called “" +
          file.name + "”. Rename it to " + names[0] + " and try again.");
      }
      if (file.size > maxBytes) {
        return Promise.resolve(file.name + " is " + humanBytes(file.size) + "; the limit is " + humanBytes(maxBytes) + ".");
      }
      return file.arrayBuffer().then(function (buffer) {
        var text;
        if (/^[ \t\n\r\v\f]*$/.test(new TextDecoder("latin1").decode(buffer))) { return file.name + " is empty."; }
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(buffer);
        } catch (e) {
          return file.name + " is not UTF-8 text. Save it as UTF-8 in your editor and upload it again.";
        }
        if (text.indexOf("\u0000") >= 0) { return file.name + " contains NUL characters: it is not a text file."; }
        return null;
      });
    }

    function validate() {
      var file = input.files && input.files[0];
      chosen.textContent = file ? "Selected: " + file.name + " (" + humanBytes(file.size) + ")" : "";
      return check(file).then(function (message) { show(message); return message; });
    }

    input.addEventListener("change", validate);

    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      var files = event.dataTransfer && event.dataTransfer.files;
      if (!files || files.length !== 1) { show("Drop exactly one file."); return; }
      input.files = files;
      validate();
    });
    // A file dropped beside the zone must not make the browser leave the page to display it.
    window.addEventListener("dragover", function (event) { event.preventDefault(); });
    window.addEventListener("drop", function (event) { event.preventDefault(); });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      validate().then(function (message) {
        if (message) { input.focus(); return; }
        button.disabled = true;
        button.textContent = "Uploading…";
        form.submit();
      });
    });
  }

  /* ---- gradebook table: instant sort and search ------------------------------------------------------ */
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell ? cell.getAttribute("data-value") : "";
    if (raw === null || raw === "") { return null; }
    return numeric ? parseFloat(raw) : raw;
  }

  function enhanceSortable(table) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, index) {
      var link = th.querySelector("a.sort");
      if (!link) { return; }
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var numeric = th.classList.contains("num");
        var state = th.getAttribute("aria-sort");
        // A new column starts highest first for numbers, A to Z for text; a second click flips it.
        var descending = state === "none" ? numeric : state === "ascending";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return r.cells.length > 1; });
        rows.sort(function (a, b) {
          var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
          if (x === null || y === null) { return (x === null) - (y === null); }  // no score: always last
          var order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach(function (r) { body.appendChild(r); });
        headers.forEach(function (h) { if (h.hasAttribute("aria-sort")) { h.setAttribute("aria-sort", "none"); } });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        // Keep the address (and the search form) in step, so a reload or a live refresh keeps this order.
        var address = new URL(window.location.href);
        address.searchParams.set("sort", th.getAttribute("data-sort-key"));
        address.searchParams.set("dir", descending ? "desc" : "asc");
        window.history.replaceState(null, "", address);
        document.querySelectorAll("input[name=sort]").forEach(function (i) { i.value = th.getAttribute("data-sort-key"); });
        document.querySelectorAll("input[name=dir]").forEach(function (i) { i.value = descending ? "desc" : "asc"; });
      });
    });
  }

  function applyFilter(input) {
    var region = document.getElementById(input.getAttribute("data-filter-for"));
    if (!region) { return; }
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = region.querySelectorAll("tbody tr[data-search]");
    var shown = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-search");
      var match = words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    var count = document.querySelector("[data-filter-count='" + region.id + "']");
    if (count) { count.textContent = words.length ? shown + " of " + rows.length + " students shown." : ""; }
  }

  function enhance(root) {
    localizeTimes(root);
    root.querySelectorAll("form").forEach(localizeForm);
    root.querySelectorAll("table[data-sortable]").forEach(enhanceSortable);
    document.querySelectorAll("input[data-filter-for]").forEach(applyFilter);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(startLive);
    document.querySelectorAll("[data-status-url]").forEach(startStatus);
    document.querySelectorAll("form[data-upload]").forEach(enhanceUpload);
    document.querySelectorAll("input[data-filter-for]").forEach(function (input) {
      input.addEventListener("input", function () { applyFilter(input); });
    });
    enhance(document);
  });
}());
