// jobq dashboard: live updates by polling, and small conveniences.
// Loaded as a file (the Content-Security-Policy forbids inline script).
// Nothing here changes state: every action is a form that posts.
(function () {
  "use strict";

  // Live regions ([data-live] with an id) are refetched every
  // data-poll seconds while the tab is visible and updates are not paused.
  var seconds = Number(document.body.getAttribute("data-poll") || "0");
  var toggle = document.getElementById("live-toggle");
  var regions = document.querySelectorAll("[data-live][id]");
  var paused = false;
  try {
    paused = window.localStorage.getItem("jobq-live-paused") === "1";
  } catch (e) { /* storage off: start live */ }

  function label() {
    if (!toggle) return;
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    document.body.classList.toggle("live-paused", paused);
  }

  // A region the user is working in (a checked box, a focused field) is
  // left alone, so a refresh never drops a selection.
  function busy(region) {
    return region.querySelector("input:checked") !== null ||
      region.contains(document.activeElement) && document.activeElement !== document.body;
  }

  var inFlight = false;
  function refresh() {
    if (paused || document.hidden || inFlight) return;
    inFlight = true;
    fetch(window.location.href, {
      headers: { "X-Jobq-Poll": "1" },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      // DOMParser never runs scripts; the server escaped every value.
      var fresh = new DOMParser().parseFromString(html, "text/html");
      regions.forEach(function (region) {
        var next = fresh.getElementById(region.id);
        if (next && !busy(region)) region.innerHTML = next.innerHTML;
      });
      document.body.classList.remove("live-stale");
    }).catch(function () {
      document.body.classList.add("live-stale");
    }).then(function () {
      inFlight = false;
    });
  }

  if (seconds > 0 && regions.length > 0 && toggle) {
    toggle.hidden = false;
    label();
    toggle.addEventListener("click", function () {
      paused = !paused;
      try {
        window.localStorage.setItem("jobq-live-paused", paused ? "1" : "0");
      } catch (e) { /* storage off: this page only */ }
      label();
      if (!paused) refresh();
    });
    window.setInterval(refresh, seconds * 1000);
    // Back to a hidden tab: catch up at once rather than at the next tick.
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) refresh();
    });
  }

  // "Select all on this page" in the job list.
  document.addEventListener("change", function (event) {
    var all = event.target;
    if (!all.matches || !all.matches("input[data-select-all]")) return;
    var form = all.form;
    if (!form) return;
    form.querySelectorAll("input[name=ids]").forEach(function (box) {
      box.checked = all.checked;
    });
  });
})();
