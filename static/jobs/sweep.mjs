// A sweep's page: its runs sortable by any column, a chart of any figure against any swept
// parameter, and, while any run is active, its state polled from the API every two seconds.
// Cells are updated in place and rows move only when a person sorts, so focus stays put.
import { chartDefaultsApply, cssColour } from "../lib/colours.mjs";
import { byId as $, pageJson, pollWhileActive, setClass, setText } from "../lib/dom.mjs";
import { formatFixed } from "../lib/format.mjs";
import { chartSeries, runsSorted } from "./sweep_state.mjs";

const POLL_MS = 2000;
const ACTIVE = "running";
const Chart = globalThis.Chart;
const canvas = $("sweep-chart");
const table = $("sweep-table");
let state = pageJson("sweep-state");

const CELLS = {
  wall_seconds: (run) => formatFixed(run.wall_seconds, 2, "", ""),
  cpu_seconds: (run) => formatFixed(run.cpu_seconds, 2, "", ""),
  speedup: (run) => formatFixed(run.speedup, 2, "×", ""),
  result: (run) => run.result,
};
const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--idle", "--queued"];

let chart = null;
function chartDraw() {
  if (!canvas || !Chart) return;
  const x = $("sweep-chart-x").value;
  const ySelect = $("sweep-chart-y");
  const y = ySelect.value;
  const { numeric, labels, series } = chartSeries(state, x, y);
  const datasets = series.map((one, i) => {
    const colour = cssColour(PALETTE[i % PALETTE.length]);
    return {
      label: one.name,
      data: one.points,
      borderColor: colour,
      backgroundColor: colour,
      pointRadius: 4,
    };
  });
  const shown = series.reduce((n, one) => n + one.points.length, 0);
  setText(
    $("sweep-chart-note"),
    `${shown} of ${state.runs.length} runs have a ${ySelect.selectedOptions[0].text.toLowerCase()} so far.`,
  );
  const xAxis = numeric
    ? { type: "linear", title: { display: true, text: x } }
    : { type: "category", labels, title: { display: true, text: x } };
  const yAxis = {
    beginAtZero: true,
    title: { display: true, text: ySelect.selectedOptions[0].text },
  };
  if (chart) {
    chart.data.datasets = datasets;
    chart.options.scales = { x: xAxis, y: yAxis };
    chart.update("none");
    return;
  }
  chartDefaultsApply(Chart);
  chart = new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: true,
      scales: { x: xAxis, y: yAxis },
    },
  });
}

function rowOf(run) {
  return table.querySelector(`tbody tr[data-index="${run.index}"]`);
}

function render() {
  const status = $("sweep-status");
  if (status.textContent !== state.status) {
    setText(status, state.status);
    setClass(status, `status status-${state.status}`);
    if (state.status !== ACTIVE) {
      $("sweep-announcer").textContent = `The sweep ${state.status}.`;
      const cancel = $("sweep-cancel-form");
      if (cancel && !cancel.contains(document.activeElement)) cancel.hidden = true;
    }
  }
  setText(
    $("sweep-counts"),
    Object.entries(state.counts)
      .map(([name, n]) => `${n} ${name}`)
      .join(" · "),
  );
  for (const run of state.runs) {
    const row = rowOf(run);
    if (!row) continue;
    const badge = row.querySelector('[data-field="status"] .status');
    setText(badge, run.status);
    setClass(badge, `status status-${run.status}`);
    for (const [field, format] of Object.entries(CELLS)) {
      const cell = row.querySelector(`[data-field="${field}"]`);
      if (cell) setText(cell, format(run));
    }
  }
  chartDraw();
}

function sortBy(button) {
  const heading = button.closest("th");
  const descending = heading.getAttribute("aria-sort") === "ascending";
  for (const th of table.querySelectorAll("thead th[aria-sort]")) {
    th.setAttribute("aria-sort", "none");
  }
  heading.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  for (const run of runsSorted(state.runs, button.dataset.sort, descending)) {
    const row = rowOf(run);
    if (row) body.append(row);
  }
}

table.querySelector("thead").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-sort]");
  if (button) sortBy(button);
});
$("sweep-chart-x").addEventListener("change", chartDraw);
$("sweep-chart-y").addEventListener("change", chartDraw);

chartDraw();
pollWhileActive($("sweep-status").dataset.stateUrl, state, {
  // The sweep as the API gives it: the same shape as the page's `sweep-state`.
  onState: (next) => {
    state = next;
    render();
  },
  active: (current) => current.status === ACTIVE,
  everyMs: POLL_MS,
});
