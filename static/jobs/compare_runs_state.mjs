// The compare page's chunk-time histogram labels, worked out without the DOM or Chart.js so
// that Node's test runner can drive them (tests/js/compare_runs_state.test.mjs). The bins
// and counts come from the server (jobs.selectors.jobs_chunk_times), shared by every run.

// A bin's label: "0.10–0.35 s" (three decimals when the whole range is under a second).
export function binLabel(edges, index) {
  const digits = edges[edges.length - 1] - edges[0] < 1 ? 3 : 2;
  return `${edges[index].toFixed(digits)}–${edges[index + 1].toFixed(digits)} s`;
}

// The bar data of each run, in the runs' order (a run with no finished chunk: zeros).
export function histogramSeries(histogram, runs) {
  const bins = histogram.edges.length - 1;
  return runs.map((run) => histogram.counts[run.id] || new Array(bins).fill(0));
}
