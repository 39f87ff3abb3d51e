import assert from "node:assert/strict";
import { test } from "node:test";

import { binLabel, histogramSeries } from "../../static/jobs/compare_runs_state.mjs";

test("bin labels show the range with the precision it needs", () => {
  assert.equal(binLabel([0.1, 0.35, 0.6], 0), "0.100–0.350 s");
  assert.equal(binLabel([0, 1.25, 2.5], 1), "1.25–2.50 s");
});

test("each run gets its counts, in the runs' order, zeros when it has none", () => {
  const histogram = { edges: [0, 1, 2], counts: { 7: [1, 2], 3: [4, 0] } };
  assert.deepEqual(histogramSeries(histogram, [{ id: 3 }, { id: 7 }, { id: 9 }]), [
    [4, 0],
    [1, 2],
    [0, 0],
  ]);
});
