// The director's dashboard (/console/figures): draws the charts with Apache ECharts (served from
// /static/vendor/echarts, never a CDN) from the JSON the page carries in #figures-data, and
// redraws them when htmx swaps in fresh figures.
(function () {
  "use strict";

  var COLORS = ["#0b6e4f", "#2f80ed", "#f2994a", "#9b51e0"];
  var PERCENT = { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } };

  function instance(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    return echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "canvas" });
  }

  function percentTip(params) {
    var list = Array.isArray(params) ? params : [params];
    var lines = [list[0].axisValueLabel || list[0].name];
    list.forEach(function (p) {
      lines.push(p.marker + p.seriesName + ": " + (p.value == null ? "—" : p.value + "%"));
    });
    return lines.join("<br>");
  }

  function bars(data) {
    var chart = instance("chart-bars");
    if (!chart) return;
    chart.setOption({
      animation: false, color: COLORS,
      tooltip: { trigger: "axis", formatter: percentTip },
      legend: { top: 0 },
      grid: { left: 8, right: 8, bottom: 8, top: 36, containLabel: true },
      xAxis: { type: "category", data: data.labels, axisLabel: { interval: 0, rotate: data.labels.length > 6 ? 30 : 0 } },
      yAxis: PERCENT,
      series: data.series.map(function (s) {
        return { id: s.key, name: s.name, type: "bar", data: s.data };
      }),
    }, { replaceMerge: ["series", "xAxis"] });
  }

  function trend(data) {
    var chart = instance("chart-trend");
    if (!chart) return;
    chart.setOption({
      animation: false, color: COLORS,
      tooltip: { trigger: "axis", formatter: percentTip },
      legend: { top: 0 },
      grid: { left: 8, right: 8, bottom: 8, top: 36, containLabel: true },
      xAxis: { type: "category", data: data.labels, boundaryGap: false },
      yAxis: PERCENT,
      series: data.series.map(function (s) {
        return { id: s.key, name: s.name, type: "line", data: s.data, connectNulls: true, symbolSize: 6 };
      }),
    }, { replaceMerge: ["series", "xAxis"] });
  }

  function map(points) {
    var chart = instance("chart-map");
    if (!chart) return;
    var most = points.reduce(function (m, p) { return Math.max(m, p.value[2]); }, 1);
    // A schematic, not a map: longitude and latitude on plain axes, no tiles fetched from anywhere.
    var axis = { type: "value", scale: true, axisLabel: { show: false }, axisTick: { show: false },
                 axisLine: { show: false }, splitLine: { lineStyle: { type: "dashed", color: "#e4e7eb" } } };
    chart.setOption({
      animation: false,
      tooltip: {
        formatter: function (p) { return p.data.name + "（" + p.data.grid + "）: " + p.data.value[2]; },
      },
      grid: { left: 16, right: 16, top: 16, bottom: 16 },
      xAxis: axis, yAxis: axis,
      series: [{
        id: "open", type: "scatter",
        // Names only where cases are open: the quiet buildings stay dots, the map stays legible.
        data: points.map(function (p) { return Object.assign({ label: { show: p.value[2] > 0 } }, p); }),
        symbolSize: function (v) { return 10 + 30 * Math.sqrt(v[2] / most); },
        itemStyle: {
          color: function (p) { return p.data.value[2] ? (p.data.urgent ? "#b42318" : "#f2994a") : "#9aa5b1"; },
          opacity: 0.85,
        },
        label: { position: "right", fontSize: 11,
                 formatter: function (p) { return p.data.name + " " + p.data.value[2]; } },
      }],
    }, { replaceMerge: ["series"] });
  }

  function draw() {
    var source = document.getElementById("figures-data");
    if (!source || typeof echarts === "undefined") return;
    var data = JSON.parse(source.textContent);
    bars(data.bars);
    trend(data.trend);
    if (data.map) map(data.map);
  }

  document.addEventListener("DOMContentLoaded", draw);
  // Fresh figures every 15 s (hx-trigger on #figures-live): the charts follow.
  document.addEventListener("htmx:afterSettle", draw);
  window.addEventListener("resize", function () {
    ["chart-bars", "chart-trend", "chart-map"].forEach(function (id) {
      var el = document.getElementById(id);
      var chart = el && echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });
})();
