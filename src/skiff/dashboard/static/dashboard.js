// Draws the charts of an app page from the JSON the server rendered into
// <script type="application/json" id="series"> (see skiff.dashboard.views.series).
// No inline script anywhere: the page's CSP allows scripts from this origin only.
(function () {
  "use strict";
  window.skiffCharts = [];

  function draw() {
    var source = document.getElementById("series");
    if (!source || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    data.charts.forEach(function (chart) {
      var box = document.getElementById("chart-" + chart.id);
      if (!box) return;
      var opts = {
        width: Math.max(240, box.clientWidth),
        height: 220,
        title: chart.title,
        // a bucket of room either side: one bucket alone would stretch over years
        scales: { x: { time: true, auto: false,
                       range: [data.x[0] - data.step, data.x[data.x.length - 1] + data.step] } },
        axes: [{}, { label: chart.unit || "", size: 60 }],
        series: [{ label: "time" }].concat(chart.series.map(function (s) {
          return { label: s.label, stroke: s.colour, width: 2, spanGaps: true,
                   points: { show: data.x.length < 4, size: 6, fill: s.colour } };
        })),
      };
      var u = new uPlot(opts, [data.x].concat(chart.series.map(function (s) {
        return s.values;
      })), box);
      u.skiffId = chart.id;
      window.skiffCharts.push(u);
      if (window.ResizeObserver) {
        new ResizeObserver(function () {
          var w = Math.max(240, box.clientWidth);
          if (w !== u.width) u.setSize({ width: w, height: 220 });
        }).observe(box);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
