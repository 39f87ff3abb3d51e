// Compare runs: duration and speedup of one kind's succeeded runs, oldest to newest.
// The data comes from the page (json_script); the table below the chart holds the same figures.
"use strict";

(function () {
  const source = document.getElementById("compare-runs");
  const canvas = document.getElementById("compare-chart");
  if (!source || !canvas || typeof Chart === "undefined") return;
  const runs = JSON.parse(source.textContent);
  const css = getComputedStyle(document.documentElement);
  Chart.defaults.color = css.getPropertyValue("--muted").trim() || Chart.defaults.color;
  Chart.defaults.borderColor = css.getPropertyValue("--line").trim() || Chart.defaults.borderColor;
  if (!runs.length) return;

  const DURATION = "#2457c5";
  const SPEEDUP = "#1f8a4c";
  const dense = runs.length > 100;
  const finished = (run) => window.Coreboard.formatTime(run.finished_at);

  const chart = new Chart(canvas, {
    type: "line",
    data: {
      labels: runs.map((run) => "#" + run.id),
      datasets: [
        {
          label: "Duration (s)",
          data: runs.map((run) => run.wall_seconds),
          yAxisID: "duration",
          borderColor: DURATION,
          backgroundColor: DURATION,
          pointStyle: "circle",
        },
        {
          label: "Speedup (×)",
          data: runs.map((run) => run.speedup),
          yAxisID: "speedup",
          borderColor: SPEEDUP,
          backgroundColor: SPEEDUP,
          // Dashes and another point shape, so the two lines differ without colour too.
          borderDash: [6, 4],
          pointStyle: "rectRot",
        },
      ],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      elements: {
        point: { radius: dense ? 0 : 3, hoverRadius: 4 },
        line: { borderWidth: dense ? 1 : 2 },
      },
      scales: {
        x: { title: { display: true, text: "Job, oldest to newest" } },
        duration: {
          type: "linear",
          position: "left",
          beginAtZero: true,
          title: { display: true, text: "Duration (s)" },
        },
        speedup: {
          type: "linear",
          position: "right",
          beginAtZero: true,
          grid: { drawOnChartArea: false },
          title: { display: true, text: "Speedup (×)" },
        },
      },
      plugins: {
        legend: { labels: { usePointStyle: true } },
        tooltip: {
          callbacks: {
            title: (items) => {
              const run = runs[items[0].dataIndex];
              return `Job #${run.id}, finished ${finished(run)}`;
            },
          },
        },
      },
      onClick: (_event, elements) => {
        if (elements.length) window.location.href = runs[elements[0].index].url;
      },
    },
  });
  canvas.dataset.ready = String(chart.data.labels.length);
})();
