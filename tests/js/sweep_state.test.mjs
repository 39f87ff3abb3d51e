// A sweep page's sorting and chart series (static/jobs/sweep_state.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";

import { chartSeries, runsSorted } from "../../static/jobs/sweep_state.mjs";

const run = (index, params, speedup, status = "succeeded") => ({
  index,
  params,
  speedup,
  status,
  wall_seconds: speedup === null ? null : 1 / speedup,
});

const state = {
  swept: ["n", "seed"],
  runs: [
    run(0, { n: 10, seed: 1 }, 1.5),
    run(1, { n: 10, seed: 2 }, null, "running"),
    run(2, { n: 2, seed: 1 }, 1.2),
    run(3, { n: 2, seed: 2 }, 1.1),
  ],
};

test("runs sort by a figure either way, runs without it last, ties by index", () => {
  assert.deepEqual(
    runsSorted(state.runs, "speedup", false).map((r) => r.index),
    [3, 2, 0, 1],
  );
  assert.deepEqual(
    runsSorted(state.runs, "speedup", true).map((r) => r.index),
    [0, 2, 3, 1],
  );
});

test("runs sort by a parameter as numbers, not as text", () => {
  assert.deepEqual(
    runsSorted(state.runs, "params.n", false).map((r) => r.index),
    [2, 3, 0, 1],
  );
});

test("the chart has one series per combination of the other swept parameters", () => {
  const { numeric, series } = chartSeries(state, "n", "speedup");
  assert.equal(numeric, true);
  assert.deepEqual(series, [
    {
      name: "seed = 1",
      points: [
        { x: 2, y: 1.2 },
        { x: 10, y: 1.5 },
      ],
    },
    { name: "seed = 2", points: [{ x: 2, y: 1.1 }] },
  ]);
});

test("text values make a category axis in the order they first appear", () => {
  const words = {
    swept: ["mode"],
    runs: [run(0, { mode: "fast" }, 2), run(1, { mode: "slow" }, 1)],
  };
  const { numeric, labels, series } = chartSeries(words, "mode", "speedup");
  assert.equal(numeric, false);
  assert.deepEqual(labels, ["fast", "slow"]);
  assert.deepEqual(series[0].points, [
    { x: "fast", y: 2 },
    { x: "slow", y: 1 },
  ]);
});
