// Draws Slipway's charts with the vendored Chart.js. Each <canvas data-chart="kind"> names a
// json_script element (data-source) holding its figures; charts are drawn on page load and again
// whenever htmx swaps in a live area, so they follow the data without reloading the page.
(function () {
  "use strict";

  const COLOURS = ["#1f5fbf", "#b35900", "#1a7f37", "#6f42c1", "#0a7c86", "#c0392b"];
  const MARK_COLOURS = { rollback: "#c0392b" };

  function readData(canvas) {
    const source = document.getElementById(canvas.dataset.source);
    return source ? JSON.parse(source.textContent) : null;
  }

  function baseOptions() {
    return {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { labels: { boxWidth: 12 } } },
    };
  }

  // Figures of each version, oldest first: one series of the trend payload.
  function trend(canvas, data) {
    const options = baseOptions();
    options.plugins.legend.display = false;
    options.spanGaps = true;
    return {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [{
          label: canvas.dataset.label,
          data: data[canvas.dataset.series],
          borderColor: COLOURS[0],
          backgroundColor: COLOURS[0],
          pointRadius: 3,
          tension: 0,
        }],
      },
      options: options,
    };
  }

  // Candidates on the task-metric / p95-latency plane, with the accuracy budget as a dashed line.
  function plane(canvas, data) {
    const chosen = data.points.filter(function (p) { return p.chosen; });
    const others = data.points.filter(function (p) { return !p.chosen; });
    const datasets = [
      { label: "candidates", data: others, backgroundColor: COLOURS[0], pointRadius: 6, pointHoverRadius: 8 },
      { label: "chosen", data: chosen, backgroundColor: COLOURS[2], pointStyle: "rectRot", pointRadius: 9 },
    ];
    if (data.budget !== null) {
      const xs = data.points.map(function (p) { return p.x; });
      const low = Math.min.apply(null, xs);
      const high = Math.max.apply(null, xs);
      const pad = (high - low) * 0.1 || Math.max(high * 0.1, 0.1);
      datasets.push({
        type: "line",
        label: "accuracy budget (" + (data.higher_is_better ? "≥ " : "≤ ") + data.budget.toPrecision(4) + ")",
        data: [{ x: Math.max(0, low - pad), y: data.budget }, { x: high + pad, y: data.budget }],
        borderColor: COLOURS[5],
        borderDash: [6, 4],
        borderWidth: 2,
        pointRadius: 0,
      });
    }
    const options = baseOptions();
    options.scales = {
      x: { type: "linear", beginAtZero: true, title: { display: true, text: "p95 latency (ms)" } },
      y: { title: { display: true, text: data.metric } },
    };
    options.plugins.tooltip = {
      callbacks: {
        label: function (item) {
          const p = item.raw;
          return (p.label || item.dataset.label) + ": " + data.metric + " " + p.y + ", p95 " + p.x + " ms";
        },
      },
    };
    return { type: "scatter", data: { datasets: datasets }, options: options, plugins: [pointLabels] };
  }

  // Each candidate's name next to its point.
  const pointLabels = {
    id: "slipwayPointLabels",
    afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillStyle = "#1d2330";
      chart.data.datasets.forEach(function (dataset, i) {
        if (dataset.type === "line") { return; }
        chart.getDatasetMeta(i).data.forEach(function (point, j) {
          const label = dataset.data[j].label;
          const right = point.x + ctx.measureText(label).width + 12 < chart.chartArea.right;
          ctx.textAlign = right ? "left" : "right";
          ctx.fillText(label, point.x + (right ? 10 : -10), point.y - 8);
        });
      });
      ctx.restore();
    },
  };

  // Dashed vertical lines at traffic changes (deploys, promotions, rollbacks).
  const marksPlugin = {
    id: "slipwayMarks",
    afterDatasetsDraw: function (chart, args, options) {
      const area = chart.chartArea;
      const ctx = chart.ctx;
      (options.marks || []).forEach(function (mark, i) {
        const x = chart.scales.x.getPixelForValue(mark[0]);
        if (x < area.left || x > area.right) { return; }
        ctx.save();
        ctx.strokeStyle = MARK_COLOURS[mark[1]] || "#6f42c1";
        ctx.fillStyle = ctx.strokeStyle;
        ctx.setLineDash([4, 3]);
        ctx.beginPath();
        ctx.moveTo(x, area.top);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
        ctx.font = "11px system-ui, sans-serif";
        const fits = x + 3 + ctx.measureText(mark[1]).width < area.right;
        ctx.textAlign = fits ? "left" : "right";
        ctx.fillText(mark[1], fits ? x + 3 : x - 3, area.top + (i % 2 ? 24 : 11));  // alternate heights: close neighbours stay readable
        ctx.restore();
      });
    },
  };

  function timeFormatter(zone) {
    const format = new Intl.DateTimeFormat(undefined, {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: zone || undefined,
    });
    return function (value) { return format.format(new Date(value)); };
  }

  // Serving figures over time, one line per release; data-series picks the column of each point.
  function serving(canvas, data) {
    const column = Number(canvas.dataset.series);
    const scale = Number(canvas.dataset.scale || 1);
    const datasets = data.series.map(function (s, i) {
      return {
        label: s.label,
        data: s.points.map(function (p) { return { x: p[0], y: p[column] === null ? null : p[column] * scale }; }),
        borderColor: COLOURS[i % COLOURS.length],
        backgroundColor: COLOURS[i % COLOURS.length],
        pointRadius: 0,
        borderWidth: 2,
      };
    });
    const times = data.series.flatMap(function (s) { return s.points.map(function (p) { return p[0]; }); });
    const last = Math.max.apply(null, times.concat(data.marks.map(function (m) { return m[0]; })));
    const format = timeFormatter(canvas.dataset.tz);
    const options = baseOptions();
    options.scales = {
      x: {
        type: "linear",
        min: Math.min.apply(null, times),
        max: last,
        ticks: { callback: format, maxTicksLimit: 6, maxRotation: 0 },
      },
      y: { beginAtZero: true, grace: "10%" },
    };
    options.plugins.slipwayMarks = { marks: data.marks };
    options.plugins.tooltip = { callbacks: { title: function (items) { return format(items[0].parsed.x); } } };
    return { type: "line", data: { datasets: datasets }, options: options, plugins: [marksPlugin] };
  }

  const KINDS = { trend: trend, plane: plane, serving: serving };

  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const data = readData(canvas);
      const build = KINDS[canvas.dataset.chart];
      if (!data || !build) { return; }
      const previous = Chart.getChart(canvas);
      if (previous) { previous.destroy(); }
      new Chart(canvas, build(canvas, data));
    });
  }

  htmx.onLoad(draw);
})();
