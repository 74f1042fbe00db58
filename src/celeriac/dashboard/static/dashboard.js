// celeriac dashboard: live refresh of the #live region and confirmations. No dependencies, no
// inline handlers (a strict Content-Security-Policy can forbid them); everything is fetched from the
// dashboard's own origin.
(function () {
  "use strict";
  // forms with data-confirm ask first
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var text = form.getAttribute && form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { event.preventDefault(); }
  });
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseFloat(live.getAttribute("data-refresh") || "0");
  if (!(every > 0)) { return; }
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; } // a hidden tab does not poll
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "celeriac-refresh" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes)); }
      })
      .catch(function () { /* next round */ })
      .finally(function () { busy = false; });
  }
  window.setInterval(refresh, Math.max(1, every) * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
})();
