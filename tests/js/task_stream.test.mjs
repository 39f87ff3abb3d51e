// The task stream's bars (static/jobs/task_stream.mjs), without Chart.js.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AGGREGATE_ABOVE, barsAggregate, taskStreamBars } from "../../static/jobs/task_stream.mjs";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const at = (seconds) => new Date(T0 + seconds * 1000).toISOString();

function ran(index, pid, from, to, fields = {}) {
  return {
    index,
    status: to === null ? "running" : "done",
    attempts: 1,
    worker: "w1",
    pid,
    queued_at: at(from - 1),
    started_at: at(from),
    finished_at: to === null ? null : at(to),
    ...fields,
  };
}

test("one lane per process; a running chunk's bar grows until now", () => {
  const job = { started_at: at(0), finished_at: null };
  const bars = taskStreamBars(job, [ran(0, 2, 1, 3), ran(1, 1, 1, null)], T0 + 5000);
  assert.deepEqual(bars.lanes, ["w1 · pid 1", "w1 · pid 2"]);
  assert.deepEqual(
    bars.runs.map((run) => run.x),
    [
      [1, 3],
      [1, 5],
    ],
  );
  assert.deepEqual(bars.waits[0].x, [0, 1]);
  assert.equal(bars.chunksDrawn, 2);
});

test("nothing to draw before the job starts", () => {
  assert.equal(taskStreamBars({ started_at: null }, [], Date.now()), null);
});

test("many bars: a lane's neighbouring first-attempt chunks merge, retried ones stay", () => {
  const chunks = [];
  for (let i = 0; i <= AGGREGATE_ABOVE; i++) chunks.push(ran(i, 1, i, i + 1));
  chunks.push(ran(AGGREGATE_ABOVE + 1, 1, 400, 401, { attempts: 2 }));
  const job = { started_at: at(0), finished_at: at(402) };
  const bars = taskStreamBars(job, chunks, T0);
  assert.equal(bars.chunksDrawn, AGGREGATE_ABOVE + 2);
  assert.equal(bars.runs.length, 2);
  assert.equal(bars.runs[0].chunk.aggregated, AGGREGATE_ABOVE + 1);
  assert.equal(bars.runs[1].chunk.attempts, 2);
  assert.deepEqual(bars.waits, []);
});

test("bars further apart than the gap, or on other lanes, stay apart", () => {
  const runs = [
    { x: [0, 1], y: "a", chunk: { status: "done", attempts: 1 } },
    { x: [5, 6], y: "a", chunk: { status: "done", attempts: 1 } },
    { x: [1, 2], y: "b", chunk: { status: "done", attempts: 1 } },
  ];
  assert.equal(barsAggregate(runs, 1).length, 3);
  assert.equal(barsAggregate(runs, 4).length, 2);
});
