// The portal's only script (CSP: script-src 'self'). It updates a page in place where it must:
// - [data-poll]: fetches the JSON at that URL every 2 s until its [data-poll-key] is true, then shows
//   [data-poll-done] (and the list of services, when [data-poll-list] names it);
// - [data-auto-follow]: follows the link to the payment provider (the link stays for no-script users).
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-poll");
    var key = el.getAttribute("data-poll-key");
    var list = el.getAttribute("data-poll-list");
    function tick() {
      fetch(url, { headers: { "Accept": "application/json", "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (list && Array.isArray(data[list])) {
            el.textContent = "";
            data[list].forEach(function (item) {
              var li = document.createElement("li");
              li.textContent = item.name + ": " + item.status;
              el.appendChild(li);
            });
          }
          if (data[key]) {
            var done = document.createElement(list ? "li" : "span");
            done.textContent = el.getAttribute("data-poll-done");
            done.setAttribute("data-poll-finished", "");
            if (!list) { el.textContent = ""; }
            el.appendChild(done);
            return;
          }
          setTimeout(tick, 2000);
        })
        .catch(function () { setTimeout(tick, 5000); });
    }
    tick();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    var go = document.querySelector("[data-auto-follow]");
    if (go) { window.location.assign(go.href); }
  });
})();
