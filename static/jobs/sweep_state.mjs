// A sweep's runs as its page sorts and charts them: pure functions of the API's shape
// (jobs.protocol.SweepState), so that tests/js/sweep_state.test.mjs can check them.

// The value of a run under a sort key: "index", a figure, "status" or "params.<name>".
export function runValue(run, key) {
  if (key.startsWith("params.")) return run.params[key.slice("params.".length)];
  return run[key];
}

function compareValues(a, b) {
  const missingA = a === null || a === undefined;
  const missingB = b === null || b === undefined;
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// The runs ordered by `key`, runs without a value last in either direction, ties by index.
export function runsSorted(runs, key, descending) {
  return [...runs].sort((a, b) => {
    const va = runValue(a, key);
    const vb = runValue(b, key);
    const missing = (va === null || va === undefined) - (vb === null || vb === undefined);
    if (missing) return missing;
    const order = compareValues(va, vb) * (descending ? -1 : 1);
    return order || a.index - b.index;
  });
}

// Chart series of figure `y` against swept parameter `x`: one per combination of the other
// swept parameters, points in x order; runs without the figure yet are left out.
// `numeric` says whether every x is a number (a linear axis) or not (categories).
export function chartSeries(state, x, y) {
  const others = state.swept.filter((name) => name !== x);
  const xOf = (run) => (x === "index" ? run.index : run.params[x]);
  const numeric = state.runs.every((run) => typeof xOf(run) === "number");
  const labels = [];
  for (const run of state.runs) {
    const label = String(xOf(run));
    if (!labels.includes(label)) labels.push(label);
  }
  const series = new Map();
  for (const run of state.runs) {
    const name = others.map((other) => `${other} = ${run.params[other]}`).join(", ");
    if (!series.has(name)) series.set(name, []);
    if (run[y] === null || run[y] === undefined) continue;
    series.get(name).push({ x: numeric ? xOf(run) : String(xOf(run)), y: run[y] });
  }
  const sorted = [...series].map(([name, points]) => ({
    name: name || y,
    points: numeric ? points.sort((a, b) => a.x - b.x) : points,
  }));
  return { numeric, labels, series: sorted };
}
