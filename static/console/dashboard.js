// Draws the dashboard's charts (Chart.js, installed by scripts/static.sh) from the JSON the page
// carries; a click on a bar or slice opens the admin list behind it.
(function () {
  "use strict";
  function draw() {
    if (typeof Chart === "undefined") {
      return; // the figures above each chart are links already: the page works without it
    }
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue("--body-fg").trim() || "#333";
    var grid = style.getPropertyValue("--hairline-color").trim() || "#ddd";
    var palette = ["#417690", "#79aec8", "#e0a800", "#ba2121", "#5b8c5a", "#8e6bb8", "#c47b3a", "#777"];
    Chart.defaults.color = fg;
    Chart.defaults.borderColor = grid;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) {
        return;
      }
      var spec = JSON.parse(source.textContent);
      var colours = spec.labels.map(function (_, i) { return palette[i % palette.length]; });
      var chart = new Chart(canvas, {
        type: spec.type,
        data: {
          labels: spec.labels,
          datasets: [{ label: spec.unit || "count", data: spec.values, backgroundColor: colours }],
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          plugins: { legend: { display: spec.type === "doughnut", position: "right" } },
          onClick: function (_event, elements) {
            if (elements.length && spec.urls) {
              window.location.href = spec.urls[elements[0].index];
            }
          },
        },
      });
      canvas.dataset.drawn = chart ? "yes" : "no";
    });
  }
  document.addEventListener("DOMContentLoaded", draw);
})();
