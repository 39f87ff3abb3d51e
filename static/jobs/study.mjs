// A scaling study's page: the chart of measured speedup against the ideal and Amdahl's fit,
// and, while the study runs, its state polled from the API every two seconds. Cells and list
// items are updated in place (no element is replaced), so focus stays where it is.
import { chartDefaultsApply, cssColour } from "../lib/colours.mjs";
import { byId as $, pageJson, pollWhileActive, setClass, setText } from "../lib/dom.mjs";
import { formatFixed, formatPercent } from "../lib/format.mjs";
import { urlFill } from "../lib/urls.mjs";

const POLL_MS = 2000;
const ACTIVE = "running";
const Chart = globalThis.Chart;
const canvas = $("study-chart");
let state = pageJson("study-state");

const CELLS = {
  wall_seconds: (run) => formatFixed(run.wall_seconds, 2, "", ""),
  speedup: (run) => formatFixed(run.speedup, 2, "×", ""),
  efficiency: (run) => formatPercent(run.efficiency, ""),
  karp_flatt: (run) => formatFixed(run.karp_flatt, 3, "", ""),
  amdahl_speedup: (run) => formatFixed(run.amdahl_speedup, 2, "×", ""),
};

function chartData() {
  const runs = state.runs;
  const points = (key) =>
    runs.filter((run) => run[key] !== null).map((run) => ({ x: run.parallelism, y: run[key] }));
  return [points("ideal_speedup"), points("speedup"), points("amdahl_speedup")];
}

let chart = null;
function chartDraw() {
  if (!canvas || !Chart) return;
  const data = chartData();
  if (chart) {
    data.forEach((points, i) => (chart.data.datasets[i].data = points));
    chart.update("none");
    return;
  }
  chartDefaultsApply(Chart);
  const line = (label, points, colour, style) => ({
    label,
    data: points,
    borderColor: colour,
    backgroundColor: colour,
    ...style,
  });
  chart = new Chart(canvas, {
    type: "line",
    data: {
      datasets: [
        line("Ideal (p)", data[0], cssColour("--muted"), {
          borderDash: [2, 3],
          pointStyle: "rect",
        }),
        line("Measured", data[1], cssColour("--accent"), { pointStyle: "circle", pointRadius: 4 }),
        line("Amdahl fit", data[2], cssColour("--ok"), {
          borderDash: [6, 4],
          pointStyle: "triangle",
        }),
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: true,
      scales: {
        x: {
          type: "linear",
          title: { display: true, text: "Processes (p)" },
          ticks: { precision: 0 },
        },
        y: { beginAtZero: true, title: { display: true, text: "Speedup (×)" } },
      },
    },
  });
}

function render() {
  const status = $("study-status");
  if (status.textContent !== state.status) {
    status.textContent = state.status;
    status.className = `status status-${state.status}`;
    if (state.status !== ACTIVE) {
      $("study-announcer").textContent = `The scaling study ${state.status}.`;
      const cancel = $("study-cancel-link");
      if (cancel && !cancel.contains(document.activeElement)) cancel.hidden = true;
    }
  }
  const error = $("study-error");
  setText(error, state.error);
  error.hidden = !state.error;
  for (const run of state.runs) {
    const item = document.querySelector(`#study-runs li[data-parallelism="${run.parallelism}"]`);
    if (item) {
      const label = item.querySelector('[data-field="status"]');
      setText(label, run.status);
      setClass(label, `status status-${run.status}`);
      const job = item.querySelector('[data-field="job"]');
      if (run.job && !job.querySelector("a")) {
        const link = document.createElement("a");
        link.href = urlFill($("study-runs").dataset.jobUrl, { id: run.job });
        link.textContent = `job #${run.job}`;
        job.append("(", link, ")");
      }
    }
    const row = document.querySelector(`#study-table tr[data-parallelism="${run.parallelism}"]`);
    if (row) {
      for (const [field, format] of Object.entries(CELLS)) {
        const cell = row.querySelector(`[data-field="${field}"]`);
        if (cell) setText(cell, format(run));
      }
    }
  }
  if (state.serial_fraction !== null) {
    let text = `Amdahl's law fits a serial fraction f = ${state.serial_fraction.toFixed(3)}`;
    if (state.max_speedup) {
      text += `: at most ${state.max_speedup.toFixed(1)}× with any number of processes`;
    }
    setText($("study-fit"), `${text}.`);
  } else {
    setText($("study-fit"), state.fit_note ?? "");
  }
  chartDraw();
}

chartDraw();
pollWhileActive($("study-status").dataset.stateUrl, state, {
  // The study as the API gives it: the same shape as the page's `study-state`.
  onState: (next) => {
    state = next;
    render();
  },
  active: (current) => current.status === ACTIVE,
  everyMs: POLL_MS,
});
