// durable ui: live refresh of the list and of a workflow page, by polling small JSON documents.
// No framework, no build step. The pages work without this file (forms post, confirmations are
// pages); with it, parts marked data-refresh are replaced by what the server renders (escaped
// there), only while the tab is visible.
"use strict";

(function () {
  function poll(el, apply) {
    var every = parseInt(el.dataset.every || "2000", 10);
    var busy = false;
    function tick() {
      if (busy || document.hidden || el.dataset.stopped) return;
      var toggle = document.getElementById("live-toggle");
      if (toggle && !toggle.checked) return;
      busy = true;
      var url = el.dataset.refresh;
      if (el.dataset.version) url += "&v=" + encodeURIComponent(el.dataset.version);
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) apply(data); })
        .catch(function () { /* the UI was stopped or restarted: try again next time */ })
        .finally(function () { busy = false; });
    }
    setInterval(tick, every);
  }

  function listPage(el) {
    var version = null;
    poll(el, function (data) {
      if (data.version !== version) {
        version = data.version;
        el.innerHTML = data.html;
      }
    });
    var filters = document.getElementById("filters");
    var status = document.getElementById("f-status");
    if (filters && status) status.addEventListener("change", function () { filters.submit(); });
  }

  function workflowPage(el) {
    if (!("live" in el.dataset)) return;  // a closed run does not change
    poll(el, function (data) {
      if (!data.changed) return;
      el.dataset.version = data.version;
      Object.keys(data.parts).forEach(function (id) {
        var part = document.getElementById(id);
        if (part) part.innerHTML = data.parts[id];
      });
      var badge = document.getElementById("workflow-status");
      if (badge) {
        badge.textContent = "";
        var span = document.createElement("span");
        span.className = "status s-" + data.status;
        span.textContent = data.status;
        badge.appendChild(span);
      }
      if (!data.running) {
        el.dataset.stopped = "1";
        var actions = document.getElementById("actions");
        if (actions) {
          actions.querySelectorAll("form").forEach(function (f) { f.remove(); });
          var note = document.createElement("p");
          note.className = "muted";
          note.textContent = "This run is " + data.status + ": it takes no queries, signals or cancellation.";
          actions.insertBefore(note, actions.children[1] || null);
        }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("list");
    if (list) listPage(list);
    var live = document.getElementById("live");
    if (live) workflowPage(live);
  });
})();
