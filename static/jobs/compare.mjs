// Compare runs: duration and speedup of one kind's succeeded runs, oldest to newest.
// The data comes from the page (json_script); the table below the chart holds the same figures.
import { chartDefaultsApply, cssColour } from "../lib/colours.mjs";
import { byId, pageJson } from "../lib/dom.mjs";
import { formatTime } from "../lib/format.mjs";

const runs = pageJson("compare-runs");
const canvas = byId("compare-chart");
const Chart = globalThis.Chart;

if (runs && runs.length && canvas && Chart) {
  chartDefaultsApply(Chart);
  const duration = cssColour("--accent");
  const speedup = cssColour("--ok");
  const dense = runs.length > 100;
  new Chart(canvas, {
    type: "line",
    data: {
      labels: runs.map((run) => `#${run.id}`),
      datasets: [
        {
          label: "Duration (s)",
          data: runs.map((run) => run.wall_seconds),
          yAxisID: "duration",
          borderColor: duration,
          backgroundColor: duration,
          pointStyle: "circle",
        },
        {
          label: "Speedup (×)",
          data: runs.map((run) => run.speedup),
          yAxisID: "speedup",
          borderColor: speedup,
          backgroundColor: speedup,
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
              return `Job #${run.id}, finished ${formatTime(run.finished_at)}`;
            },
          },
        },
      },
      // Each run's page URL comes with the run (the view reverses it).
      onClick: (_event, elements) => {
        if (elements.length) window.location.href = runs[elements[0].index].url;
      },
    },
  });
}
