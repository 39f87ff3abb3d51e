// The job page's state (static/jobs/job_state.mjs), driven by the socket's messages as the
// page receives them: `node --test tests/js/` (make test-js).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  chunkCounts,
  chunkInspectorRows,
  chunkLabel,
  chunkMemoryText,
  countsText,
  dirtyTake,
  jobActions,
  jobPeakMemoryText,
  jobStateCreate,
  messageApply,
  paceText,
  progressPercent,
  speedupMeter,
  tailShare,
  timingRows,
} from "../../static/jobs/job_state.mjs";

function job(fields = {}) {
  return {
    id: 7,
    status: "running",
    version: 1,
    total_chunks: 4,
    done_chunks: 0,
    failed_chunks: 0,
    parallelism: 2,
    speedup: null,
    ...fields,
  };
}

function chunk(index, status, fields = {}) {
  return { index, status, attempts: 1, ...fields };
}

function snapshotState(chunks, jobFields = {}) {
  const state = jobStateCreate({ job: job(jobFields), chunks: [], live: null });
  messageApply(state, { type: "job.snapshot", seq: 1, job: job(jobFields), chunks });
  return state;
}

describe("snapshot and its pages", () => {
  test("a snapshot's chunk pages are assembled; a page of another snapshot is ignored", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    messageApply(state, {
      type: "job.snapshot",
      seq: 3,
      job: job(),
      chunks: [chunk(0, "done"), chunk(1, "running")],
    });
    messageApply(state, { type: "job.chunks", seq: 3, chunks: [chunk(2, "pending")] });
    messageApply(state, { type: "job.chunks", seq: 2, chunks: [chunk(3, "failed")] });
    assert.deepEqual([...state.chunks.keys()].sort(), [0, 1, 2]);
    assert.equal(state.chunks.get(2).status, "pending");
  });

  test("a delta between the pages is newer than the page that follows it", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    messageApply(state, { type: "job.snapshot", seq: 1, job: job(), chunks: [chunk(0, "done")] });
    messageApply(state, { type: "job.progress", chunks: [chunk(1, "done", { attempts: 1 })] });
    messageApply(state, { type: "job.chunks", seq: 1, chunks: [chunk(1, "running")] });
    assert.equal(state.chunks.get(1).status, "done");
  });

  test("a snapshot replaces the chunks and redraws all of them", () => {
    const state = snapshotState([chunk(0, "done"), chunk(1, "done")]);
    dirtyTake(state);
    messageApply(state, {
      type: "job.snapshot",
      seq: 2,
      job: job(),
      chunks: [chunk(0, "pending")],
    });
    assert.deepEqual([...state.chunks.keys()], [0]);
    assert.equal(dirtyTake(state), null);
  });
});

describe("progress deltas", () => {
  test("out-of-order deltas: a chunk's final state is not undone by a late report", () => {
    const state = snapshotState([chunk(0, "pending"), chunk(1, "pending")]);
    messageApply(state, {
      type: "job.progress",
      job: job({ version: 3, done_chunks: 1 }),
      chunks: [chunk(0, "done")],
    });
    messageApply(state, {
      type: "job.progress",
      job: job({ version: 2 }),
      chunks: [chunk(0, "running", { progress: 0.5 })],
    });
    assert.equal(state.chunks.get(0).status, "done");
    assert.equal(state.chunks.get(0).progress, undefined);
  });

  test("a retry (more attempts) does replace a chunk's final state", () => {
    const state = snapshotState([chunk(0, "failed", { error: "boom" })]);
    messageApply(state, { type: "job.progress", chunks: [chunk(0, "running", { attempts: 2 })] });
    assert.equal(state.chunks.get(0).status, "running");
    assert.equal(state.chunks.get(0).error, "boom"); // fields the delta leaves out stay
  });

  test("a job version that goes backwards is ignored", () => {
    const state = snapshotState([], { version: 5, done_chunks: 3 });
    messageApply(state, {
      type: "job.progress",
      job: job({ version: 4, done_chunks: 1 }),
      chunks: [],
    });
    assert.equal(state.job.done_chunks, 3);
    messageApply(state, {
      type: "job.progress",
      job: job({ version: 6, done_chunks: 4 }),
      chunks: [],
    });
    assert.equal(state.job.done_chunks, 4);
  });

  test("the job changing phase asks for a resync; progress within a phase does not", () => {
    const state = snapshotState([], { version: 1 });
    const within = messageApply(state, {
      type: "job.progress",
      job: job({ version: 2 }),
      chunks: [],
    });
    assert.equal(within.resync, false);
    const ended = messageApply(state, {
      type: "job.progress",
      job: job({ version: 3, status: "cancelled" }),
      chunks: [],
    });
    assert.equal(ended.resync, true);
    const late = messageApply(state, {
      type: "job.progress",
      job: job({ version: 2 }),
      chunks: [],
    });
    assert.equal(late.resync, false);
    assert.equal(state.job.status, "cancelled");
  });

  test("only the chunks a delta touched are redrawn", () => {
    const state = snapshotState([chunk(0, "pending"), chunk(1, "pending"), chunk(2, "pending")]);
    assert.equal(dirtyTake(state), null);
    messageApply(state, { type: "job.progress", chunks: [chunk(2, "running")] });
    assert.deepEqual([...dirtyTake(state)], [2]);
    assert.deepEqual([...dirtyTake(state)], []);
  });
});

describe("what the page shows", () => {
  test("progress counts running chunks' own progress, and a succeeded job is whole", () => {
    const state = snapshotState([chunk(0, "done"), chunk(1, "running", { progress: 0.5 })], {
      done_chunks: 1,
    });
    assert.equal(progressPercent(state), 37.5);
    state.job = job({ status: "succeeded", done_chunks: 1 });
    assert.equal(progressPercent(state), 100);
  });

  test("counts by chunk status", () => {
    const state = snapshotState(
      [chunk(0, "done"), chunk(1, "running"), chunk(2, "pending"), chunk(3, "pending")],
      { done_chunks: 1 },
    );
    assert.equal(chunkCounts(state).pending, 2);
    assert.match(countsText(state), /^1 of 4 chunks done · 1 running · 2 pending · 0 failed/);
  });

  test("pace comes from the server's live state, and only while the job runs", () => {
    const state = snapshotState([]);
    messageApply(state, {
      type: "job.live",
      live: { throughput: 2, eta_seconds: 90, waiting: null, processes_now: 2 },
    });
    assert.equal(paceText(state), "2.00 chunks/s · about 1 min 30 s left");
    messageApply(state, {
      type: "job.live",
      live: { throughput: null, eta_seconds: null, waiting: { text: "no worker takes burn" } },
    });
    assert.equal(paceText(state), "no worker takes burn");
    state.job = job({ status: "succeeded" });
    assert.equal(paceText(state), "");
  });

  test("the speedup meter is measured against the processes used", () => {
    const state = snapshotState(
      [chunk(0, "done", { worker: "w", pid: 1 }), chunk(1, "done", { worker: "w", pid: 2 })],
      { status: "succeeded", parallelism: 4, speedup: 1.5 },
    );
    const meter = speedupMeter(state);
    assert.equal(meter.caption, "Speedup 1.50× of an ideal 2× (2 processes used)");
    assert.ok(meter.fill < meter.ideal);
  });

  test("the tail is the wall time after the first process ran out of work", () => {
    const finished = (pid, at) => chunk(pid, "done", { worker: "w", pid, finished_at: at });
    const state = snapshotState(
      [finished(1, "2026-01-01T00:00:06Z"), finished(2, "2026-01-01T00:00:10Z")],
      { started_at: "2026-01-01T00:00:00Z", finished_at: "2026-01-01T00:00:10Z" },
    );
    assert.equal(tailShare(state), 0.4);
  });
});

describe("actions", () => {
  const cases = {
    pending: { cancel: true, notify: true, retry: false, delete: false, rerun: true },
    running: { cancel: true, notify: true, retry: false, delete: false, rerun: true },
    succeeded: { cancel: false, notify: false, retry: false, delete: true, rerun: true },
    failed: { cancel: false, notify: false, retry: true, delete: true, rerun: true },
    cancelled: { cancel: false, notify: false, retry: false, delete: true, rerun: true },
  };
  for (const [status, expected] of Object.entries(cases)) {
    test(`a ${status} job offers ${Object.keys(expected).filter((a) => expected[a])}`, () => {
      assert.deepEqual(jobActions(status), expected);
    });
  }
});

describe("memory, CPU time and output of a chunk", () => {
  const MIB = 1024 * 1024;

  test("peak memory in binary units, and what the chunk added over its start", () => {
    assert.equal(
      chunkMemoryText(chunk(0, "done", { peak_rss: 512 * MIB, start_rss: 500 * MIB })),
      "512 MiB (+12 MiB over start)",
    );
    assert.equal(chunkMemoryText(chunk(0, "done", { peak_rss: 512 * MIB })), "512 MiB");
    assert.equal(chunkMemoryText(chunk(0, "running")), "—");
  });

  test("the inspector's figures and the grid's label carry them", () => {
    const done = chunk(3, "done", {
      worker: "w@h",
      pid: 12,
      started_at: "2026-12-06T08:00:00Z",
      finished_at: "2026-12-06T08:00:01.5Z",
      peak_rss: 64 * MIB,
      start_rss: 60 * MIB,
      cpu_user_s: 1.234,
      cpu_system_s: 0.05,
      output_bytes: 2048,
    });
    assert.deepEqual(Object.fromEntries(chunkInspectorRows(done)), {
      Status: "done, attempts 1",
      Process: "w@h pid 12",
      "Run time": "1.50 s",
      "Peak memory": "64 MiB (+4.0 MiB over start)",
      "CPU time": "user 1.23 s · system 0.05 s",
      Output: "2.0 KiB written",
    });
    assert.match(chunkLabel(done), /1\.50 s, peak 64 MiB$/);
    assert.equal(Object.fromEntries(chunkInspectorRows(chunk(4, "pending")))["Output"], "none");
    // While it writes, the page's own text runs ahead of the chunk's last state.
    const running = chunk(5, "running", { output_bytes: 0 });
    const rows = Object.fromEntries(chunkInspectorRows(running, { start: 0, end: 3072 }));
    assert.equal(rows.Output, "3.0 KiB written");
  });

  test("the job's peak is its largest chunk's, named, among the timings", () => {
    const state = snapshotState([
      chunk(0, "done", { peak_rss: 100 * MIB }),
      chunk(1, "done", { peak_rss: 300 * MIB }),
      chunk(2, "running"),
    ]);
    assert.equal(jobPeakMemoryText(state), "300 MiB (chunk 1)");
    assert.deepEqual(timingRows(state).at(-1), ["Peak memory", "300 MiB (chunk 1)"]);
    assert.equal(jobPeakMemoryText(snapshotState([chunk(0, "pending")])), "—");
  });
});

describe("output and resources messages", () => {
  test("a snapshot asks the page to load output and samples; chunk.output lands in output", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    assert.equal(
      messageApply(state, { type: "job.snapshot", seq: 1, job: job(), chunks: [] }).reload,
      true,
    );
    const answer = messageApply(state, {
      type: "chunk.output",
      job: 7,
      index: 1,
      offset: 0,
      text: "hello\n",
      cut_bytes: 0,
    });
    assert.equal(answer.refetch, null);
    assert.equal(state.output.blocks.get(1).text, "hello\n");
    const gap = { type: "chunk.output", job: 7, index: 1, offset: 99, text: "x", cut_bytes: 0 };
    assert.equal(messageApply(state, gap).refetch, 1);
  });

  test("a retried chunk's output starts afresh", () => {
    const state = snapshotState([chunk(0, "failed", { attempts: 1 })]);
    messageApply(state, {
      type: "chunk.output",
      job: 7,
      index: 0,
      offset: 0,
      text: "old\n",
      cut_bytes: 0,
    });
    messageApply(state, {
      type: "job.progress",
      job: job({ version: 2 }),
      chunks: [chunk(0, "running", { attempts: 2, output_bytes: 0 })],
    });
    assert.equal(state.output.blocks.has(0), false);
  });

  test("job.resources adds samples", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    messageApply(state, {
      type: "job.resources",
      job: 7,
      samples: [
        { process: "w|1|b", pid: 1, at: "2026-12-06T08:00:00Z", cpu_percent: 99, rss: 1024 },
      ],
    });
    assert.equal(state.resources.processes.get("w|1|b").samples.length, 1);
  });
});
