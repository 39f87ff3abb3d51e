// The job page's state (static/jobs/job_state.mjs), driven by the socket's messages as the
// page receives them: `node --test tests/js/` (make test-js).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  CHUNK_STATUS_CODES,
  DETAILS_MAX,
  GRID_RETRIED,
  chunkAt,
  chunkCounts,
  chunkDetailApply,
  chunkInspectorRows,
  chunkLabel,
  chunkMemoryText,
  countsText,
  dirtyTake,
  doneIndices,
  endedText,
  jobActions,
  jobPeakMemoryText,
  jobStateCreate,
  messageApply,
  paceText,
  progressApply,
  progressPercent,
  speedupMeter,
  speedupText,
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

// A snapshot as jobs/sockets/consumers.py sends it: every chunk's status packed in `grid`
// (the ones not listed are pending), the processes and the peak, and `chunks` as its window.
function snapshot(chunks, jobFields = {}, seq = 1) {
  const total = job(jobFields).total_chunks;
  const bytes = new Uint8Array(total);
  const lanes = new Map();
  let peak = null;
  for (const c of chunks) {
    bytes[c.index] = CHUNK_STATUS_CODES.indexOf(c.status) | (c.attempts > 1 ? GRID_RETRIED : 0);
    if (c.pid) {
      const key = `${c.worker}|${c.pid}`;
      const last = lanes.get(key)?.last_finished_at ?? null;
      const end = c.finished_at && (!last || c.finished_at > last) ? c.finished_at : last;
      lanes.set(key, { worker: c.worker, pid: c.pid, chunks: 1, last_finished_at: end });
    }
    if (typeof c.peak_rss === "number" && (!peak || c.peak_rss > peak.peak_rss)) {
      peak = { index: c.index, peak_rss: c.peak_rss };
    }
  }
  return {
    type: "job.snapshot",
    seq,
    job: job(jobFields),
    grid: Buffer.from(bytes).toString("base64"),
    lanes: [...lanes.values()],
    peak,
    chunks,
    chunk_pages: 1,
    live: null,
  };
}

function snapshotState(chunks, jobFields = {}) {
  const state = jobStateCreate({ job: job(jobFields), chunks: [], live: null });
  messageApply(state, snapshot(chunks, jobFields));
  return state;
}

describe("snapshot and its pages", () => {
  test("the packed grid gives every chunk's status; the window gives full states", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    const message = snapshot([chunk(0, "done"), chunk(2, "failed", { attempts: 3 })]);
    message.chunks = [chunk(2, "failed", { attempts: 3, error: "boom" })];
    messageApply(state, message);
    assert.deepEqual(chunkAt(state, 0), { index: 0, status: "done", retried: false });
    assert.equal(chunkAt(state, 1).status, "pending");
    assert.equal(chunkAt(state, 2).error, "boom");
    assert.deepEqual(chunkCounts(state), {
      pending: 2,
      running: 0,
      done: 1,
      failed: 1,
      cancelled: 0,
    });
    assert.equal(chunkLabel(chunkAt(state, 0)), "Chunk 0: done");
  });

  test("a grid-only chunk says it was retried; its attempts come with its details", () => {
    const state = snapshotState([chunk(1, "done", { attempts: 2 })]);
    state.details.clear(); // as if it were outside the window
    assert.equal(chunkLabel(chunkAt(state, 1)), "Chunk 1: done, retried");
  });

  test("a snapshot's window pages are assembled; a page of another snapshot is ignored", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    messageApply(state, { ...snapshot([chunk(0, "done"), chunk(1, "running")], {}, 3) });
    messageApply(state, { type: "job.chunks", seq: 3, chunks: [chunk(2, "failed")] });
    messageApply(state, { type: "job.chunks", seq: 2, chunks: [chunk(3, "failed")] });
    assert.deepEqual([...state.details.keys()].sort(), [0, 1, 2]);
  });

  test("a delta between the pages is newer than the page that follows it", () => {
    const state = jobStateCreate({ job: job(), chunks: [], live: null });
    messageApply(state, snapshot([chunk(0, "done"), chunk(1, "running")]));
    messageApply(state, { type: "job.progress", chunks: [chunk(1, "done", { attempts: 1 })] });
    messageApply(state, { type: "job.chunks", seq: 1, chunks: [chunk(1, "running")] });
    assert.equal(state.details.get(1).status, "done");
  });

  test("a snapshot replaces the grid and the window, and redraws all of it", () => {
    const state = snapshotState([chunk(0, "done"), chunk(1, "done")]);
    dirtyTake(state);
    messageApply(state, snapshot([chunk(0, "pending")], {}, 2));
    assert.deepEqual([...state.details.keys()], [0]);
    assert.equal(chunkAt(state, 1).status, "pending");
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
    assert.equal(chunkAt(state, 0).status, "done");
    assert.equal(chunkAt(state, 0).progress, undefined);
  });

  test("a retry (more attempts) does replace a chunk's final state", () => {
    const state = snapshotState([chunk(0, "failed", { error: "boom" })]);
    messageApply(state, { type: "job.progress", chunks: [chunk(0, "running", { attempts: 2 })] });
    assert.equal(chunkAt(state, 0).status, "running");
    assert.equal(chunkAt(state, 0).error, "boom"); // fields the delta leaves out stay
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

  test("only the chunks whose square changed are redrawn", () => {
    const state = snapshotState([chunk(0, "pending"), chunk(1, "pending"), chunk(2, "pending")]);
    assert.equal(dirtyTake(state), null);
    messageApply(state, { type: "job.progress", chunks: [chunk(2, "running")] });
    assert.deepEqual([...dirtyTake(state)], [2]);
    // Progress within a run leaves the square as it is.
    messageApply(state, {
      type: "job.progress",
      chunks: [{ index: 2, status: "running", progress: 0.5 }],
    });
    assert.deepEqual([...dirtyTake(state)], []);
  });

  test("a delta changes the packed grid and its counts", () => {
    const state = snapshotState([chunk(0, "done"), chunk(1, "running")]);
    state.details.clear(); // chunks 0 and 1 known from the grid only
    messageApply(state, {
      type: "job.progress",
      chunks: [chunk(1, "done"), chunk(3, "running", { attempts: 2 })],
    });
    assert.equal(state.grid[1], CHUNK_STATUS_CODES.indexOf("done"));
    assert.equal(state.grid[3], CHUNK_STATUS_CODES.indexOf("running") | GRID_RETRIED);
    assert.equal(chunkLabel(chunkAt(state, 3)), "Chunk 3: running, attempts 2");
    assert.deepEqual(chunkCounts(state), {
      pending: 1,
      running: 1,
      done: 2,
      failed: 0,
      cancelled: 0,
    });
  });

  test("a late report cannot undo a final status known only from the grid", () => {
    const state = snapshotState([chunk(0, "done")]);
    state.details.clear();
    messageApply(state, { type: "job.progress", chunks: [chunk(0, "running")] });
    messageApply(state, {
      type: "job.progress",
      chunks: [{ index: 0, status: "running", progress: 0.3 }],
    });
    assert.equal(chunkAt(state, 0).status, "done");
    assert.equal(chunkCounts(state).running, 0);
    // A new attempt of it does.
    messageApply(state, { type: "job.progress", chunks: [chunk(0, "running", { attempts: 2 })] });
    assert.equal(chunkAt(state, 0).status, "running");
  });

  test("the full states kept stay bounded; running and opened chunks are kept", () => {
    const total = DETAILS_MAX * 3;
    const state = jobStateCreate({ job: job({ total_chunks: total }), chunks: [], live: null });
    messageApply(state, snapshot([chunk(0, "running"), chunk(1, "done")], { total_chunks: total }));
    state.pinned = 1;
    const deltas = [];
    for (let i = 2; i < total; i++) deltas.push(chunk(i, "done", { worker: "w", pid: 1 }));
    messageApply(state, { type: "job.progress", chunks: deltas });
    assert.ok(state.details.size <= DETAILS_MAX);
    assert.ok(state.details.has(0) && state.details.has(1));
    assert.ok(state.details.has(total - 1)); // the newest stay
    assert.equal(chunkCounts(state).done, total - 1); // the grid holds every status
  });

  test("a chunk's state fetched from the API fills the window, unless a newer one came", () => {
    const state = snapshotState([chunk(0, "done")]);
    state.details.clear();
    chunkDetailApply(state, chunk(0, "done", { worker: "w", pid: 4, peak_rss: 9 }));
    assert.equal(chunkAt(state, 0).pid, 4);
    messageApply(state, { type: "job.progress", chunks: [chunk(1, "running", { attempts: 2 })] });
    chunkDetailApply(state, chunk(1, "failed", { attempts: 1, error: "old" }));
    assert.equal(chunkAt(state, 1).status, "running");
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

  test("the ended job's notification says its own counts, never the grid's stale running", () => {
    // The job's end came before the last chunk's delta: the grid still has one running.
    const state = snapshotState(
      [chunk(0, "done"), chunk(1, "done"), chunk(2, "done"), chunk(3, "running")],
      { status: "succeeded", done_chunks: 4, wall_seconds: 119.6 },
    );
    assert.match(countsText(state), /1 running/);
    assert.equal(endedText(state), "4 of 4 chunks done · in 2 min 0 s");
    const failed = snapshotState([], {
      status: "failed",
      done_chunks: 1,
      failed_chunks: 3,
      wall_seconds: null,
    });
    assert.equal(endedText(failed), "1 of 4 chunks done · 3 failed");
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

  test("the speedup says what it was measured against; parallelism achieved is its own row", () => {
    assert.equal(speedupText(job()), "—");
    assert.equal(
      speedupText(job({ speedup: 1.9, speedup_baseline: "measured" })),
      "1.90× (against a measured parallelism-1 run)",
    );
    assert.equal(
      speedupText(job({ speedup: 0.72, speedup_baseline: "cpu" })),
      "0.72× (estimated from the chunks' CPU time)",
    );
    const state = snapshotState([], {
      status: "succeeded",
      speedup: 1.9,
      speedup_baseline: "measured",
      parallelism_achieved: 1.45,
      efficiency: 0.95,
      processes_used: 2,
    });
    const rows = Object.fromEntries(timingRows(state));
    assert.equal(rows["Speedup"], "1.90× (against a measured parallelism-1 run)");
    assert.equal(rows["Parallelism achieved"], "1.45 (CPU time ÷ wall time)");
    assert.equal(rows["Efficiency"], "95%");
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
    assert.equal(messageApply(state, snapshot([])).reload, true);
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

describe("the packed grid's codes", () => {
  test("are the server's (docs/protocol.md is generated from jobs/protocol.py)", () => {
    const reference = readFileSync(new URL("../../docs/protocol.md", import.meta.url), "utf8");
    const codes = CHUNK_STATUS_CODES.map((status, code) => `${code} ${status}`).join(", ");
    assert.ok(reference.includes(`(${codes}: CHUNK_STATUS_CODES)`), codes);
    assert.ok(reference.includes("bit 3 (8)") && GRID_RETRIED === 8);
  });
});

test("a chunk told done as it ended is fetchable only once its record says it is stored", () => {
  const state = jobStateCreate({ job: job({ total_chunks: 3 }), chunks: [], live: null });
  progressApply(state, {
    job: null,
    chunks: [{ index: 1, status: "done", attempts: 1, recorded: false }],
  });
  assert.deepEqual(doneIndices(state), []);
  progressApply(state, { job: null, chunks: [{ index: 1, status: "done", recorded: true }] });
  assert.deepEqual(doneIndices(state), [1]);
  assert.equal(chunkAt(state, 1).attempts, 1, "the stored note keeps what the chunk was told");
});
