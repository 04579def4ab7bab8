// The portal's only script (CSP: script-src 'self'). It updates a page in place where it must:
// - [data-poll]: fetches the JSON at that URL every 2 s until its [data-poll-key] is true, then shows
//   [data-poll-done] (and the list of services, when [data-poll-list] names it);
// - [data-auto-follow]: follows the link to the payment provider (the link stays for no-script users);
// - [data-refresh]: fetches that URL's HTML every 5 s and puts it in the element's place (a pod's
//   row and its live state); skipped while the keyboard focus is inside it or the tab is hidden.
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
  function refresh(el) {
    var url = el.getAttribute("data-refresh");
    setTimeout(function () {
      if (document.hidden || el.contains(document.activeElement)) { refresh(el); return; }
      fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok || r.redirected) { throw new Error(String(r.status)); } return r.text(); })
        .then(function (html) {
          var box = document.createElement("template");
          box.innerHTML = html.trim();
          var fresh = box.content.firstElementChild;
          if (!fresh || !el.parentNode) { return; }
          el.parentNode.replaceChild(fresh, el);
          refresh(fresh);
        })
        .catch(function () { /* gone or logged out: the row stays as it is */ });
    }, 5000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-refresh]").forEach(refresh);
    var go = document.querySelector("[data-auto-follow]");
    if (go) { window.location.assign(go.href); }
  });
})();
