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
  // The recent alerts, newest first, as the page renders them
  // (pages/alerts.rs): unknown when the daemon did not say.
  var recent = document.querySelector("[data-live-alerts]");
  var badges = { info: "badge", warning: "badge warn", error: "badge bad" };
  function element(tag, className, text) {
    var e = document.createElement(tag);
    if (className) { e.className = className; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function showAlerts(alerts) {
    if (!recent) { return; }
    if (!Array.isArray(alerts)) {
      var p = element("p");
      p.append(unknown());
      recent.replaceChildren(p);
      return;
    }
    if (alerts.length === 0) {
      recent.replaceChildren(element("p", "sub", "No alerts."));
      return;
    }
    var list = element("ol", "alerts");
    list.reversed = true;
    alerts.forEach(function (a) {
      var what = element("div", "what");
      what.append(
        element("span", badges[a.level] || "badge", a.level),
        element("code", "", a.event),
        element("span", "sub mono", a.time)
      );
      var item = element("li");
      item.append(what, element("p", "", a.message));
      list.append(item);
    });
    recent.replaceChildren(list);
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
      .then(function (live) {
        show(live.values, live.error);
        showAlerts(live.alerts);
      })
      .catch(function (err) {
        show(null, "The console did not answer: " + err.message);
        showAlerts(null);
      })
      .finally(function () { clearTimeout(timer); });
  }
  setInterval(tick, 2000);
})();
