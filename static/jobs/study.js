// A scaling study's page: the chart of measured speedup against the ideal and Amdahl's fit,
// and, while the study runs, its state polled from the API every two seconds. Cells and list
// items are updated in place (no element is replaced), so focus stays where it is.
"use strict";

(function () {
  const source = document.getElementById("study-state");
  const canvas = document.getElementById("study-chart");
  const script = document.currentScript;
  if (!source) return;
  let state = JSON.parse(source.textContent);
  const POLL_MS = 2000;
  const ACTIVE = "running";

  const fixed = (value, digits, suffix) =>
    value === null || value === undefined ? "" : value.toFixed(digits) + (suffix || "");
  const CELLS = {
    wall_seconds: (run) => fixed(run.wall_seconds, 2),
    speedup: (run) => fixed(run.speedup, 2, "×"),
    efficiency: (run) => (run.efficiency === null ? "" : Math.round(run.efficiency * 100) + "%"),
    karp_flatt: (run) => fixed(run.karp_flatt, 3),
    amdahl_speedup: (run) => fixed(run.amdahl_speedup, 2, "×"),
  };

  let chart = null;
  function chartData() {
    const runs = state.runs;
    return [
      runs.map((run) => ({ x: run.parallelism, y: run.ideal_speedup })),
      runs.filter((run) => run.speedup !== null).map((run) => ({ x: run.parallelism, y: run.speedup })),
      runs
        .filter((run) => run.amdahl_speedup !== null)
        .map((run) => ({ x: run.parallelism, y: run.amdahl_speedup })),
    ];
  }

  function drawChart() {
    if (!canvas || typeof Chart === "undefined") return;
    const [ideal, measured, amdahl] = chartData();
    if (chart) {
      chart.data.datasets[0].data = ideal;
      chart.data.datasets[1].data = measured;
      chart.data.datasets[2].data = amdahl;
      chart.update("none");
      return;
    }
    const css = getComputedStyle(document.documentElement);
    Chart.defaults.color = css.getPropertyValue("--muted").trim() || Chart.defaults.color;
    Chart.defaults.borderColor = css.getPropertyValue("--line").trim() || Chart.defaults.borderColor;
    chart = new Chart(canvas, {
      type: "line",
      data: {
        datasets: [
          { label: "Ideal (p)", data: ideal, borderColor: "#6b7280", backgroundColor: "#6b7280", borderDash: [2, 3], pointStyle: "rect" },
          { label: "Measured", data: measured, borderColor: "#2457c5", backgroundColor: "#2457c5", pointStyle: "circle", pointRadius: 4 },
          { label: "Amdahl fit", data: amdahl, borderColor: "#1f8a4c", backgroundColor: "#1f8a4c", borderDash: [6, 4], pointStyle: "triangle" },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: true,
        scales: {
          x: { type: "linear", title: { display: true, text: "Processes (p)" }, ticks: { precision: 0 } },
          y: { beginAtZero: true, title: { display: true, text: "Speedup (×)" } },
        },
      },
    });
  }

  function render() {
    const status = document.getElementById("study-status");
    if (status.textContent !== state.status) {
      status.textContent = state.status;
      status.className = "status status-" + state.status;
      if (state.status !== ACTIVE) {
        document.getElementById("study-announcer").textContent = "The scaling study " + state.status + ".";
        const cancel = document.getElementById("study-cancel-form");
        if (cancel && !cancel.contains(document.activeElement)) cancel.hidden = true;
      }
    }
    const error = document.getElementById("study-error");
    error.textContent = state.error;
    error.hidden = !state.error;
    for (const run of state.runs) {
      const item = document.querySelector('#study-runs li[data-parallelism="' + run.parallelism + '"]');
      if (item) {
        const label = item.querySelector('[data-field="status"]');
        label.textContent = run.status;
        label.className = "status status-" + run.status;
        const job = item.querySelector('[data-field="job"]');
        if (run.job && !job.querySelector("a")) {
          const link = document.createElement("a");
          link.href = "/jobs/" + run.job + "/";
          link.textContent = "job #" + run.job;
          job.append("(", link, ")");
        }
      }
      const row = document.querySelector('#study-table tr[data-parallelism="' + run.parallelism + '"]');
      if (row) {
        for (const [field, format] of Object.entries(CELLS)) {
          const cell = row.querySelector('[data-field="' + field + '"]');
          const text = format(run);
          if (cell && cell.textContent !== text) cell.textContent = text;
        }
      }
    }
    const fit = document.getElementById("study-fit");
    if (state.serial_fraction !== null) {
      let text = "Amdahl's law fits a serial fraction f = " + state.serial_fraction.toFixed(3);
      if (state.max_speedup) text += ": at most " + state.max_speedup.toFixed(1) + "× with any number of processes";
      fit.textContent = text + ".";
    }
    drawChart();
  }

  async function poll() {
    try {
      const response = await fetch(script.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        state = await response.json();
        render();
      }
    } catch (error) {
      // Offline for a moment: the next poll tries again.
    }
    if (state.status === ACTIVE) setTimeout(poll, POLL_MS);
  }

  drawChart();
  if (state.status === ACTIVE) setTimeout(poll, POLL_MS);
})();
