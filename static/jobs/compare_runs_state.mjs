// The compare page's chunk-time histogram, worked out without the DOM or Chart.js so that
// Node's test runner can drive it (tests/js/compare_runs_state.test.mjs).

// Bins of one shared width over every run's chunk times, so the runs' bars line up.
export const HISTOGRAM_BINS = 20;

// `runs`: [{id, chunk_seconds: [s, …]}] → {edges: [lo, …, hi], counts: {id: [n per bin]}};
// null when no run has a finished chunk. All-equal times make one bin.
export function chunkTimeHistogram(runs, bins = HISTOGRAM_BINS) {
  const all = runs.flatMap((run) => run.chunk_seconds);
  if (!all.length) return null;
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const n = hi > lo ? bins : 1;
  const width = hi > lo ? (hi - lo) / n : 1;
  const edges = Array.from({ length: n + 1 }, (_, i) => lo + i * width);
  const counts = {};
  for (const run of runs) {
    const row = new Array(n).fill(0);
    for (const seconds of run.chunk_seconds) {
      // The top edge belongs to the last bin.
      row[Math.min(n - 1, Math.floor((seconds - lo) / width))] += 1;
    }
    counts[run.id] = row;
  }
  return { edges, counts };
}

// A bin's label: "0.100–0.150 s".
export function binLabel(edges, index) {
  const digits = edges[edges.length - 1] - edges[0] < 1 ? 3 : 2;
  return `${edges[index].toFixed(digits)}–${edges[index + 1].toFixed(digits)} s`;
}
