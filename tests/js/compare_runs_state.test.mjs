import assert from "node:assert/strict";
import { test } from "node:test";

import { binLabel, chunkTimeHistogram } from "../../static/jobs/compare_runs_state.mjs";

test("runs share bins and every chunk is counted once", () => {
  const runs = [
    { id: 1, chunk_seconds: [0.1, 0.2, 0.3] },
    { id: 2, chunk_seconds: [0.5, 0.5, 1.1] },
  ];
  const { edges, counts } = chunkTimeHistogram(runs, 4);
  assert.equal(edges.length, 5);
  assert.equal(edges[0], 0.1);
  assert.ok(Math.abs(edges[4] - 1.1) < 1e-9);
  assert.deepEqual(counts[1], [3, 0, 0, 0]);
  // The slowest chunk falls in the last bin, not past it.
  assert.deepEqual(counts[2], [0, 2, 0, 1]);
  assert.equal(binLabel(edges, 0), "0.10–0.35 s");
});

test("equal times make one bin; no finished chunk makes no histogram", () => {
  const one = chunkTimeHistogram([{ id: 1, chunk_seconds: [2, 2] }]);
  assert.deepEqual(one.counts[1], [2]);
  assert.equal(chunkTimeHistogram([{ id: 1, chunk_seconds: [] }]), null);
});
