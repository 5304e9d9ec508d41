/* The workbench's charts (Chart.js) and the glue htmx needs. No build step: plain ES2017.
 *
 * Pages carry their figures as JSON in `data-json` attributes of hidden elements;
 * htmx swaps in new fragments (a run's progress every second, a frontier's points), and
 * whenever it loads new content the charts read the blocks again.
 */
(function () {
  "use strict";

  var charts = {};
  var number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var COLORS = { objective: "#1f5fa8", bound: "#a15c00", bar: "#1f5fa8", full: "#b3261e" };

  function readJson(root, selector) {
    var el = root.querySelector(selector);
    if (!el || !el.dataset.json) { return null; }
    try { return JSON.parse(el.dataset.json); } catch (e) { return null; }
  }

  function lineOptions(xTitle, yTitle) {
    return {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: xTitle } },
        y: { title: { display: true, text: yTitle },
             ticks: { callback: function (v) { return number.format(v); } } }
      },
      plugins: { legend: { position: "bottom", labels: { usePointStyle: true } } }
    };
  }

  function lineDataset(label, color, dashed, stepped) {
    return { label: label, data: [], borderColor: color, backgroundColor: color,
             borderDash: dashed ? [6, 4] : [], pointRadius: 3, stepped: stepped, showLine: true };
  }

  /* A run's progress: objective and bound against elapsed seconds. */
  function progressChart() {
    var canvas = document.getElementById("progress-chart");
    if (!canvas || typeof Chart === "undefined") { return null; }
    if (!charts.progress) {
      charts.progress = new Chart(canvas, {
        type: "line",
        data: { datasets: [lineDataset("Objective (best plan so far)", COLORS.objective, false, true),
                           lineDataset("Bound (proven)", COLORS.bound, true, true)] },
        options: lineOptions("seconds", "incremental margin")
      });
      charts.progressLast = -1;
    }
    return charts.progress;
  }

  function updateProgress() {
    var chart = progressChart();
    var box = document.getElementById("progress");
    if (!chart || !box) { return; }
    var history = readJson(box, ".progress-history");
    if (history && history.length) {  /* the solver's own record, once the run is over */
      chart.data.datasets[0].data = history.filter(function (h) { return h[1] !== null; })
        .map(function (h) { return { x: h[0], y: h[1] }; });
      chart.data.datasets[1].data = history.filter(function (h) { return h[2] !== null; })
        .map(function (h) { return { x: h[0], y: h[2] }; });
      chart.update();
      return;
    }
    var p = readJson(box, ".progress-point");
    if (!p || p.elapsed === null || p.elapsed === undefined || p.elapsed <= charts.progressLast) {
      return;
    }
    charts.progressLast = p.elapsed;
    if (p.objective !== null) { chart.data.datasets[0].data.push({ x: p.elapsed, y: p.objective }); }
    if (p.bound !== null) { chart.data.datasets[1].data.push({ x: p.elapsed, y: p.bound }); }
    chart.update();
  }

  /* A plan's inventory: the share of each stocked item's stock it uses. */
  function inventoryChart() {
    var canvas = document.getElementById("inventory-chart");
    var data = readJson(document, "#inventory-data");
    if (!canvas || !data || typeof Chart === "undefined" || charts.inventory) { return; }
    charts.inventory = new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels, datasets: [{
        label: "share of stock used (%)", data: data.used,
        backgroundColor: data.used.map(function (u) { return u >= 99.999 ? COLORS.full : COLORS.bar; })
      }] },
      options: {
        indexAxis: "y", animation: false, responsive: true, maintainAspectRatio: false,
        scales: { x: { min: 0, max: 100, title: { display: true, text: "% of stock used" } } },
        plugins: { legend: { display: false } }
      }
    });
  }

  /* A frontier: the plan's objective and bound at each value of what was varied. */
  function updateFrontier() {
    var canvas = document.getElementById("frontier-chart");
    var box = document.getElementById("frontier-progress");
    if (!canvas || !box || typeof Chart === "undefined") { return; }
    var data = readJson(box, ".frontier-data");
    if (!data) { return; }
    if (!charts.frontier) {
      charts.frontier = new Chart(canvas, {
        type: "line",
        data: { datasets: [lineDataset("Objective", COLORS.objective, false, false),
                           lineDataset("Bound", COLORS.bound, true, false)] },
        options: lineOptions(data.vary_label || data.vary, "incremental margin")
      });
    }
    var points = (data.points || []).filter(function (p) { return p.objective !== null; });
    charts.frontier.data.datasets[0].data = points.map(function (p) { return { x: p.value, y: p.objective }; });
    charts.frontier.data.datasets[1].data = (data.points || []).filter(function (p) { return p.bound !== null; })
      .map(function (p) { return { x: p.value, y: p.bound }; });
    charts.frontier.update();
  }

  function refresh() {
    updateProgress();
    inventoryChart();
    updateFrontier();
  }

  /* htmx:load fires on every piece of content htmx puts in the page (an outerHTML swap's
     settle events go to the element it replaced, which has left the page) */
  document.body.addEventListener("htmx:load", refresh);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", refresh);
  } else {
    refresh();
  }
})();
