// kubesage console: draws learning curves with uPlot wherever a page holds their data
// (<div data-curves><script type="application/json">[...charts]</script></div>), on load and
// after htmx swaps a live part in. Everything else is server-rendered HTML and htmx attributes.
(function () {
  "use strict";
  var COLOURS = ["#2563eb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0e7490", "#db2777", "#4b5563"];

  function draw(box) {
    var data = box.querySelector('script[type="application/json"]');
    if (!data || typeof uPlot === "undefined") return;
    box.querySelectorAll(".chart").forEach(function (c) { c.remove(); });
    JSON.parse(data.textContent).forEach(function (chart) {
      var holder = document.createElement("div");
      holder.className = "chart";
      holder.setAttribute("data-key", chart.key);
      holder.setAttribute("data-lines", String(chart.labels.length));
      var title = document.createElement("h3");
      title.textContent = chart.key;
      holder.appendChild(title);
      box.appendChild(holder);
      var series = [{label: "step"}].concat(chart.labels.map(function (label, i) {
        return {label: label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true,
                points: {show: chart.data[0].length < 60}};
      }));
      new uPlot({width: 460, height: 240, series: series, scales: {x: {time: false}},
                 axes: [{label: "step"}, {}], legend: {live: true}}, chart.data, holder);
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-curves]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
})();
