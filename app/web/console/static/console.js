// alertrelay console: refresh the overview's live section in place.
// Without JavaScript the page reloads itself instead (a <noscript> refresh).
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) return;
  var seconds = parseInt(live.getAttribute("data-refresh"), 10) || 15;
  function update() {
    if (document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) live.innerHTML = fresh.innerHTML;
        var footer = doc.querySelector("footer");
        var mine = document.querySelector("footer");
        if (footer && mine) mine.innerHTML = footer.innerHTML;
        live.removeAttribute("data-stale");
      })
      .catch(function () { live.setAttribute("data-stale", "true"); });
  }
  window.setInterval(update, seconds * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) update(); });
})();
