// The graphs page: uPlot charts drawn from the page's own usage table (#metrics-rows), and
// redrawn whenever the live stream replaces that table with a newer one. Without this script
// the table alone is the page. #graphs gets data-points: how many points the charts hold.
(function () {
  "use strict";
  const CHARTS = {
    cpu: { unit: "%", series: [["cpu", "Average", "#1e88e5"], ["cpu_max", "Max", "#e53935"]] },
    memory: { unit: "MB", series: [["memory", "Used", "#43a047"]] },
    disk: { unit: "B/s", series: [["disk_read", "Read", "#1e88e5"], ["disk_write", "Write", "#fb8c00"]] },
    net: { unit: "B/s", series: [["net_rx", "In", "#1e88e5"], ["net_tx", "Out", "#8e24aa"]] },
  };
  const HEIGHT = 200;

  function human(value, unit) {
    if (value == null) return "—";
    if (unit !== "B/s") return (Math.round(value * 10) / 10) + " " + unit;
    const steps = [["MiB/s", 1048576], ["KiB/s", 1024]];
    for (const [name, size] of steps) {
      if (Math.abs(value) >= size) return (value / size).toFixed(1) + " " + name;
    }
    return Math.round(value) + " B/s";
  }

  function read(section) {
    const columns = { t: [] };
    for (const chart of Object.values(CHARTS)) {
      for (const [key] of chart.series) columns[key] = [];
    }
    for (const row of section.querySelectorAll("#metrics-rows tr[data-t]")) {
      columns.t.push(Number(row.dataset.t));
      for (const cell of row.querySelectorAll("td[data-k]")) {
        const list = columns[cell.dataset.k];
        if (list) list.push(cell.dataset.v === "" ? null : Number(cell.dataset.v));
      }
    }
    return columns;
  }

  function options(name, width, colour) {
    const chart = CHARTS[name];
    const grid = { stroke: "rgba(128,128,128,0.25)" };
    return {
      width: width,
      height: HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true } },
      series: [{}].concat(chart.series.map(([, label, stroke]) => ({
        label: label,
        stroke: stroke,
        width: 1.5,
        value: (u, v) => human(v, chart.unit),
      }))),
      axes: [
        { stroke: colour, grid: grid },
        { stroke: colour, grid: grid, size: 70, values: (u, values) => values.map((v) => human(v, chart.unit)) },
      ],
    };
  }

  function setUp(section) {
    if (section.dataset.graphsReady) return;
    section.dataset.graphsReady = "yes";
    const box = section.querySelector("#graphs");
    const plots = {};
    const colour = getComputedStyle(section).color;

    function draw() {
      const columns = read(section);
      const count = columns.t.length;
      box.hidden = count === 0;
      for (const figure of box.querySelectorAll("figure[data-chart]")) {
        const name = figure.dataset.chart;
        const data = [columns.t].concat(CHARTS[name].series.map(([key]) => columns[key]));
        if (plots[name]) {
          plots[name].setData(data);
        } else if (count > 0) {
          const plot = figure.querySelector(".graph-plot");
          plots[name] = new uPlot(options(name, plot.clientWidth || 300, colour), data, plot);
        }
      }
      box.dataset.points = String(count);
    }

    draw();
    new MutationObserver((changes) => {
      if (changes.some((change) => !box.contains(change.target))) draw();
    }).observe(section, { childList: true, subtree: true });
    new ResizeObserver(() => {
      for (const [name, plot] of Object.entries(plots)) {
        const figure = box.querySelector(`figure[data-chart="${name}"] .graph-plot`);
        if (figure && figure.clientWidth) plot.setSize({ width: figure.clientWidth, height: HEIGHT });
      }
    }).observe(box);
  }

  function start() {
    const section = document.getElementById("metrics");
    if (!section) return;
    if (typeof uPlot === "undefined") {
      // After an htmx swap the scripts load in any order: wait for uPlot's.
      const script = document.querySelector('script[src$="uPlot.iife.min.js"]');
      if (script) script.addEventListener("load", () => setUp(section), { once: true });
      return;
    }
    setUp(section);
  }

  start();
})();
