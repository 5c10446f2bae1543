// lb console: the dashboard's live values. Every 2 s, GET /live/status
// (the session's cookie; a redirect, i.e. no session, is a failure) and
// write each value into the element whose data-live names it. A value the
// console does not know, or any failure, shows "unknown": never a stale
// value.
(function () {
  "use strict";
  var cells = document.querySelectorAll("[data-live]");
  function unknown() {
    var span = document.createElement("span");
    span.className = "unknown";
    span.textContent = "unknown";
    return span;
  }
  function show(values, error) {
    cells.forEach(function (cell) {
      var key = cell.getAttribute("data-live");
      if (key === "error") {
        cell.textContent = error || "";
        cell.hidden = !error;
        return;
      }
      var value = values ? values[key] : null;
      if (typeof value === "string") {
        cell.textContent = value;
      } else {
        cell.replaceChildren(unknown());
      }
    });
  }
  function tick() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 1900);
    fetch("/live/status", {
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      signal: controller.signal,
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the console answered " + response.status);
        }
        return response.json();
      })
      .then(function (live) { show(live.values, live.error); })
      .catch(function (err) {
        show(null, "The console did not answer: " + err.message);
      })
      .finally(function () { clearTimeout(timer); });
  }
  setInterval(tick, 2000);
})();
