// Draws the dashboard's charts (Chart.js, installed by scripts/static.sh) from the JSON the page
// carries; a click on a bar or slice opens the admin list behind it.
(function () {
  "use strict";
  var palette = ["#417690", "#e0a800", "#5b8c5a", "#ba2121", "#79aec8", "#8e6bb8", "#c47b3a", "#777"];
  var narrow = window.matchMedia("(max-width: 767px)");

  function money(value) {
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 });
  }

  function datasets(spec) {
    if (spec.datasets) {
      return spec.datasets.map(function (set, i) {
        return { label: set.label, data: set.values, backgroundColor: palette[i % palette.length] };
      });
    }
    var colours = spec.labels.map(function (_, i) { return palette[i % palette.length]; });
    return [{ label: spec.unit || "count", data: spec.values, backgroundColor: colours }];
  }

  function options(spec) {
    var several = Boolean(spec.datasets && spec.datasets.length > 1);
    var opts = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: {
        legend: {
          display: spec.type === "doughnut" || several,
          position: spec.type === "doughnut" && !narrow.matches ? "right" : "bottom",
        },
      },
    };
    if (spec.type === "bar") {
      var ticks = {};
      if (spec.integer) {
        ticks.precision = 0; // counts are whole: no 0.5 job on the axis
      }
      if (spec.money) {
        ticks.callback = function (value) { return money(value); };
      }
      opts.scales = {
        y: { beginAtZero: true, ticks: ticks },
        x: { ticks: { autoSkip: spec.labels.length > 6, maxRotation: narrow.matches ? 60 : 0 } },
      };
      if (spec.max) {
        opts.scales.y.max = spec.max;
      }
    }
    return opts;
  }

  function draw() {
    if (typeof Chart === "undefined") {
      return; // the figures above each chart are links already: the page works without it
    }
    var style = getComputedStyle(document.documentElement);
    Chart.defaults.color = style.getPropertyValue("--body-fg").trim() || "#333";
    Chart.defaults.borderColor = style.getPropertyValue("--hairline-color").trim() || "#ddd";
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) {
        return;
      }
      var spec = JSON.parse(source.textContent);
      var o = options(spec);
      o.onClick = function (_event, elements) {
        if (elements.length && spec.urls) {
          window.location.href = spec.urls[elements[0].index];
        }
      };
      var chart = new Chart(canvas, { type: spec.type, data: { labels: spec.labels, datasets: datasets(spec) }, options: o });
      canvas.dataset.drawn = chart ? "yes" : "no";
    });
  }

  function foldOnPhones() {
    // On a phone the full list of sections would push the page thousands of pixels down:
    // it starts folded there (the header's search and each card's links reach the same pages).
    var apps = document.getElementById("console-apps");
    if (apps && narrow.matches) {
      apps.removeAttribute("open");
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    foldOnPhones();
    draw();
  });
})();
