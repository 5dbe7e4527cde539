// Draws Slipway's charts with the vendored Chart.js. Each <canvas data-chart="kind"> names a
// json_script element (data-source) holding its figures; charts are drawn on page load and again
// whenever htmx swaps in a live area, so they follow the data without reloading the page. A chart
// with nothing to draw says so in its box (data-empty, or a plain default) instead of an empty frame.
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
    const values = data[canvas.dataset.series] || [];
    if (!values.some(function (v) { return v !== null; })) { return null; }
    const options = baseOptions();
    options.plugins.legend.display = false;
    options.spanGaps = true;
    return {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [{
          label: canvas.dataset.label,
          data: values,
          borderColor: COLOURS[0],
          backgroundColor: COLOURS[0],
          pointRadius: 3,
          tension: 0,
        }],
      },
      options: options,
    };
  }

  // Candidates on the task-metric / relative-latency plane (the original at 1), each latency with its
  // measured interval as a horizontal bar, and the accuracy budget as a dashed line.
  function plane(canvas, data) {
    if (!data.points.length) { return null; }
    const chosen = data.points.filter(function (p) { return p.chosen; });
    const others = data.points.filter(function (p) { return !p.chosen; });
    const datasets = [
      { label: "candidates", data: others, backgroundColor: COLOURS[0], pointRadius: 6, pointHoverRadius: 8 },
      { label: "chosen", data: chosen, backgroundColor: COLOURS[2], pointStyle: "rectRot", pointRadius: 9 },
    ];
    if (data.budget !== null) {
      const xs = data.points.map(function (p) { return p.low; }).concat(data.points.map(function (p) { return p.high; }));
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
      x: { type: "linear", beginAtZero: true,
           title: { display: true, text: data.x_label || "latency relative to the original (95% interval)" } },
      y: { title: { display: true, text: data.metric } },
    };
    options.plugins.tooltip = {
      callbacks: {
        label: function (item) {
          const p = item.raw;
          if (data.x_label && data.x_label.indexOf("tokens/s") === 0) {
            return (p.label || item.dataset.label) + ": " + data.metric + " " + p.y + ", " + p.x + " tokens/s";
          }
          return (p.label || item.dataset.label) + ": " + data.metric + " " + p.y + ", latency ×" + p.x +
            " (" + p.low + "–" + p.high + ") of the original's";
        },
      },
    };
    return { type: "scatter", data: { datasets: datasets }, options: options, plugins: [intervalBars, pointLabels] };
  }

  // Each point's latency interval (its low and high) as a horizontal bar with end ticks.
  const intervalBars = {
    id: "slipwayIntervalBars",
    beforeDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      const x = chart.scales.x;
      ctx.save();
      ctx.strokeStyle = "#5b6475";
      ctx.lineWidth = 1.5;
      chart.data.datasets.forEach(function (dataset, i) {
        if (dataset.type === "line") { return; }
        chart.getDatasetMeta(i).data.forEach(function (point, j) {
          const p = dataset.data[j];
          if (p.low === undefined || p.low === p.high) { return; }
          const left = x.getPixelForValue(p.low);
          const right = x.getPixelForValue(p.high);
          ctx.beginPath();
          ctx.moveTo(left, point.y); ctx.lineTo(right, point.y);
          ctx.moveTo(left, point.y - 4); ctx.lineTo(left, point.y + 4);
          ctx.moveTo(right, point.y - 4); ctx.lineTo(right, point.y + 4);
          ctx.stroke();
        });
      });
      ctx.restore();
    },
  };

  // Each candidate's name next to its point, never over another name: each label takes the first free
  // place of a few around its point (right, left, above, below, then further up and down), and a
  // thin line joins it to its point when it had to move away. The placed boxes stay on the chart
  // (chart.$slipwayLabels) so that tests can check them.
  const LABEL_HEIGHT = 14;

  function overlaps(a, b) {
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }

  function labelPlaces(point, width, area) {
    const places = [];
    for (let step = 0; step < 12; step++) {
      const dy = -8 + (step % 2 ? -1 : 1) * LABEL_HEIGHT * Math.ceil(step / 2);  // -8, -22, 6, -36, 20, ...
      places.push({ left: point.x + 10, dy: dy });
      places.push({ left: point.x - 10 - width, dy: dy });
    }
    return places.map(function (p) {
      const baseline = point.y + p.dy;
      return { left: p.left, right: p.left + width, top: baseline - LABEL_HEIGHT + 3, bottom: baseline + 3,
               baseline: baseline, moved: p.dy !== -8 };
    }).filter(function (box) {
      return box.left >= area.left - 40 && box.right <= area.right + 40 && box.top >= 0;
    });
  }

  const pointLabels = {
    id: "slipwayPointLabels",
    afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      const area = chart.chartArea;
      const placed = [];
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.textAlign = "left";
      const points = [];
      chart.data.datasets.forEach(function (dataset, i) {
        if (dataset.type === "line") { return; }
        chart.getDatasetMeta(i).data.forEach(function (point, j) {
          points.push({ x: point.x, y: point.y, label: dataset.data[j].label });
        });
      });
      const dots = points.map(function (p) { return { left: p.x - 6, right: p.x + 6, top: p.y - 6, bottom: p.y + 6 }; });
      points.forEach(function (p) {
        const width = ctx.measureText(p.label).width;
        const places = labelPlaces(p, width, area);
        const free = places.find(function (box) {
          return !placed.some(function (other) { return overlaps(box, other); }) &&
            !dots.some(function (dot) { return overlaps(box, dot); });
        }) || places.find(function (box) {
          return !placed.some(function (other) { return overlaps(box, other); });
        }) || places[0];
        if (!free) { return; }
        if (free.moved) {
          ctx.strokeStyle = "#8a93a6";
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(p.x, p.y);
          ctx.lineTo(free.left < p.x ? free.right : free.left, free.baseline - 4);
          ctx.stroke();
        }
        ctx.fillStyle = "#1d2330";
        ctx.fillText(p.label, free.left, free.baseline);
        placed.push(Object.assign({ label: p.label }, free));
      });
      chart.$slipwayLabels = placed;
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
    return function (value) { return Number.isFinite(value) ? format.format(new Date(value)) : ""; };
  }

  // Serving figures over time, one line per release; data-series picks the column of each point.
  // Only the points that have a figure in that column count: a line without any is left out.
  function serving(canvas, data) {
    const column = Number(canvas.dataset.series);
    const scale = Number(canvas.dataset.scale || 1);
    const lines = data.series.map(function (s) {
      return { label: s.label, points: s.points.filter(function (p) { return p[column] !== null && p[column] !== undefined; }) };
    });
    const datasets = [];
    let first = Infinity;
    let last = -Infinity;
    lines.forEach(function (line, i) {
      if (!line.points.length) { return; }
      first = Math.min(first, line.points[0][0]);
      last = Math.max(last, line.points[line.points.length - 1][0]);
      datasets.push({
        label: line.label,
        data: line.points.map(function (p) { return { x: p[0], y: p[column] * scale }; }),
        borderColor: COLOURS[i % COLOURS.length],
        backgroundColor: COLOURS[i % COLOURS.length],
        pointRadius: line.points.length === 1 ? 3 : 0,
        borderWidth: 2,
      });
    });
    if (!datasets.length) { return null; }
    data.marks.forEach(function (m) { last = Math.max(last, m[0]); });
    const format = timeFormatter(canvas.dataset.tz);
    const options = baseOptions();
    options.scales = {
      x: {
        type: "linear",
        min: first,
        max: last > first ? last : first + 60000,  // a single moment still gets a minute of axis
        ticks: { callback: format, maxTicksLimit: 6, maxRotation: 0 },
      },
      y: { beginAtZero: true, grace: "10%" },
    };
    options.plugins.slipwayMarks = { marks: data.marks };
    options.plugins.tooltip = { callbacks: { title: function (items) { return format(items[0].parsed.x); } } };
    return { type: "line", data: { datasets: datasets }, options: options, plugins: [marksPlugin] };
  }

  const KINDS = { trend: trend, plane: plane, serving: serving };

  // The chart's box says there is nothing to draw, or stops saying so.
  function showEmpty(canvas, empty) {
    const box = canvas.parentElement;
    let note = box.querySelector(".chart-empty");
    canvas.hidden = empty;
    box.classList.toggle("is-empty", empty);
    if (!empty) {
      if (note) { note.remove(); }
      return;
    }
    if (!note) {
      note = document.createElement("p");
      note.className = "chart-empty empty";
      box.appendChild(note);
    }
    note.textContent = canvas.dataset.empty || "No figures to draw yet.";
  }

  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const data = readData(canvas);
      const build = KINDS[canvas.dataset.chart];
      if (!build) { return; }
      const previous = Chart.getChart(canvas);
      if (previous) { previous.destroy(); }
      try {
        const config = data ? build(canvas, data) : null;
        showEmpty(canvas, !config);
        if (config) { new Chart(canvas, config); }
      } catch (error) {
        // One broken chart must not keep the others from drawing; the error still reaches the console.
        setTimeout(function () { throw error; });
      }
    });
  }

  htmx.onLoad(draw);
})();
