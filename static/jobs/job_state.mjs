// The job page's state and everything worked out from it: no DOM, no Chart.js, so that
// Node's test runner can drive it (tests/js/). Messages change the state only here
// (`messageApply`); static/jobs/job.mjs draws it.
//
// The state is compact whatever the job's size (docs/decisions.md, "a compact job page"):
//   job, live      the job's state and what it is doing now (from the server);
//   grid           every chunk's status, one byte each (a Uint8Array by index: the status's
//                  position in CHUNK_STATUS_CODES, | GRID_RETRIED after more than one attempt),
//                  from the snapshot's packed `grid`, kept current by deltas;
//   counts         chunks per status code, kept with the grid;
//   details        full chunk states (index → ChunkState) of a bounded window: the snapshot's
//                  (running, last started, failing), every delta's, and a chunk a person
//                  opened (fetched from the API, `chunkDetailApply`); at most DETAILS_MAX, the
//                  least recently changed finished ones go first;
//   lanes, peak    the worker processes that ran chunks (each one's last end) and the chunk
//                  with the largest peak memory, from the snapshot and the deltas;
//   dirty          grid indices changed since the page last drew them (null: all);
//   output, resources  what the chunks printed (output_state.mjs) and the CPU/memory samples
//                  per process (resources_state.mjs).
import { formatBytes, formatFixed, formatPercent, formatSeconds, plural } from "../lib/format.mjs";
import { outputForget, outputMessageApply, outputStateCreate } from "./output_state.mjs";
import { resourcesApply, resourcesStateCreate } from "./resources_state.mjs";

// A job is active while pending or running (jobs/models.py Job.is_active).
export const JOB_ACTIVE = new Set(["pending", "running"]);
export const JOB_ENDED = new Set(["succeeded", "failed", "cancelled"]);
const CHUNK_FINAL = new Set(["done", "failed", "cancelled"]);
// jobs/protocol.py CHUNK_STATUS_CODES, GRID_STATUS_MASK and GRID_RETRIED (tests/js compares
// them with docs/protocol.md).
export const CHUNK_STATUS_CODES = ["pending", "running", "done", "failed", "cancelled"];
export const GRID_STATUS_MASK = 0x07;
export const GRID_RETRIED = 0x08;
const STATUS_CODE = Object.fromEntries(CHUNK_STATUS_CODES.map((status, code) => [status, code]));
// Full chunk states the page keeps at most (running ones are never dropped).
export const DETAILS_MAX = 2000;

export function jobStateCreate(snapshot) {
  const state = {
    job: snapshot.job,
    live: snapshot.live ?? null,
    grid: new Uint8Array(snapshot.job.total_chunks || 0),
    counts: new Array(CHUNK_STATUS_CODES.length).fill(0),
    details: new Map(),
    lanes: new Map(),
    peak: null,
    pinned: null,
  };
  state.counts[0] = state.grid.length;
  state.snapshotSeq = null;
  state.dirty = null;
  state.detailsVersion = 0;
  state.output = outputStateCreate();
  state.resources = resourcesStateCreate();
  return state;
}

// The snapshot's `grid` (base64, one byte per chunk) as bytes.
export function gridDecode(packed, total) {
  const grid = new Uint8Array(total);
  if (!packed) return grid;
  const text = atob(packed);
  const n = Math.min(total, text.length);
  for (let i = 0; i < n; i++) grid[i] = text.charCodeAt(i);
  return grid;
}

function gridCount(grid) {
  const counts = new Array(CHUNK_STATUS_CODES.length).fill(0);
  for (let i = 0; i < grid.length; i++) counts[grid[i] & GRID_STATUS_MASK]++;
  return counts;
}

// One switch over the message types of the job socket (jobs/consumers.py). Answers what the
// page must do besides drawing: `resync` when the job changed phase (cancelled, failed,
// retried: chunks change in bulk, so the page asks for all of them again); `reload` when the
// page must read the output and samples from the API again (a snapshot: the socket is new,
// and what was sent before it never reached this page); `refetch`, a chunk index whose
// output the page misses a piece of.
export function messageApply(state, message) {
  switch (message.type) {
    case "job.snapshot":
      snapshotApply(state, message);
      return { resync: false, reload: true };
    case "chunk.output": {
      const { refetch } = outputMessageApply(state.output, message);
      return { resync: false, refetch: refetch ? message.index : null };
    }
    case "job.resources":
      resourcesApply(state.resources, message.samples);
      return { resync: false };
    case "job.chunks":
      chunksPageApply(state, message);
      return { resync: false };
    case "job.progress":
      return progressApply(state, message);
    case "job.live":
      state.live = message.live;
      return { resync: false };
    default:
      return { resync: false };
  }
}

function laneKey(worker, pid) {
  return `${worker}|${pid}`;
}

// A snapshot: every chunk's status (`grid`), the processes and the peak, and the first page
// of its window of full chunk states; `job.chunks` messages (same seq) bring the rest.
export function snapshotApply(state, message) {
  state.job = message.job;
  if (message.live !== undefined) state.live = message.live;
  state.snapshotSeq = message.seq;
  state.grid = gridDecode(message.grid, message.job.total_chunks);
  state.counts = gridCount(state.grid);
  // The page asks again for the chunk a person has open if the window lacks it.
  state.details.clear();
  state.lanes.clear();
  for (const lane of message.lanes || []) {
    const at = lane.last_finished_at ? Date.parse(lane.last_finished_at) : null;
    state.lanes.set(laneKey(lane.worker, lane.pid), { lastFinished: at });
  }
  state.peak = message.peak ? { bytes: message.peak.peak_rss, index: message.peak.index } : null;
  snapshotChunksAdd(state, message.chunks || []);
}

export function chunksPageApply(state, message) {
  if (message.seq === state.snapshotSeq) snapshotChunksAdd(state, message.chunks);
}

function snapshotChunksAdd(state, page) {
  for (const chunk of page) {
    // A chunk known since the snapshot began came with a delta that arrived between the
    // pages: it is newer than the page.
    detailSet(state, { ...chunk, ...state.details.get(chunk.index) });
  }
  state.dirty = null;
  state.detailsVersion++;
}

// A chunk's full state, as the API answers for one chunk a person opened.
export function chunkDetailApply(state, chunk) {
  const known = state.details.get(chunk.index);
  // A delta newer than the answer may have come meanwhile: the newer attempt or end wins.
  if (known && (known.attempts || 0) > (chunk.attempts || 0)) return;
  if (known && CHUNK_FINAL.has(known.status) && !CHUNK_FINAL.has(chunk.status)) return;
  const progress = chunk.status === "running" ? known?.progress : undefined;
  detailSet(state, progress === undefined ? chunk : { ...chunk, progress });
  gridSet(state, chunk.index, chunk.status, chunk.attempts);
  state.detailsVersion++;
}

function detailSet(state, chunk) {
  // Re-inserted: a Map keeps insertion order, so the oldest change comes first.
  state.details.delete(chunk.index);
  state.details.set(chunk.index, chunk);
  if (typeof chunk.peak_rss === "number" && (!state.peak || chunk.peak_rss > state.peak.bytes)) {
    state.peak = { bytes: chunk.peak_rss, index: chunk.index };
  }
  if (chunk.pid && chunk.worker) {
    const key = laneKey(chunk.worker, chunk.pid);
    const lane = state.lanes.get(key) || { lastFinished: null };
    if (chunk.finished_at) {
      lane.lastFinished = Math.max(lane.lastFinished ?? 0, Date.parse(chunk.finished_at));
    }
    state.lanes.set(key, lane);
  }
}

// Keeps the window bounded: drops the least recently changed chunks that neither run, nor
// failed, nor are open; then, if it must, failed ones too.
function detailsTrim(state) {
  if (state.details.size <= DETAILS_MAX) return;
  for (const keepFailing of [true, false]) {
    for (const [index, chunk] of state.details) {
      if (state.details.size <= DETAILS_MAX) return;
      if (chunk.status === "running" || index === state.pinned) continue;
      if (keepFailing && chunk.error && chunk.status !== "cancelled") continue;
      state.details.delete(index);
    }
  }
}

function gridSet(state, index, status, attempts) {
  if (index < 0 || index >= state.grid.length || !(status in STATUS_CODE)) return;
  const old = state.grid[index];
  const retried = attempts === undefined ? old & GRID_RETRIED : attempts > 1 ? GRID_RETRIED : 0;
  const next = STATUS_CODE[status] | retried;
  if (next === old) return;
  state.counts[old & GRID_STATUS_MASK]--;
  state.counts[next & GRID_STATUS_MASK]++;
  state.grid[index] = next;
  if (state.dirty !== null) state.dirty.add(index);
}

// What the page knows of a chunk: its full state when it has it, else its status from the
// grid (`attempts` unknown, `retried` when it took more than one).
export function chunkAt(state, index) {
  const known = state.details.get(index);
  if (known) return known;
  const byte = state.grid[index] ?? 0;
  return {
    index,
    status: CHUNK_STATUS_CODES[byte & GRID_STATUS_MASK],
    retried: Boolean(byte & GRID_RETRIED),
  };
}

function attemptsOf(state, index, known) {
  if (known && typeof known.attempts === "number") return known.attempts;
  const byte = state.grid[index] ?? 0;
  if (byte & GRID_RETRIED) return 2;
  return (byte & GRID_STATUS_MASK) === 0 ? 0 : 1;
}

export function progressApply(state, message) {
  let resync = false;
  // Worker processes publish independently, so an older job state can arrive late.
  if (message.job && message.job.version >= state.job.version) {
    resync = JOB_ACTIVE.has(state.job.status) !== JOB_ACTIVE.has(message.job.status);
    state.job = message.job;
  }
  for (const delta of message.chunks || []) {
    const index = delta.index;
    const known = state.details.get(index);
    const status = known ? known.status : chunkAt(state, index).status;
    const attempts = attemptsOf(state, index, known);
    // A late report from an earlier run of a chunk must not undo its final state; a retry
    // shows up with more attempts.
    const newerAttempt = (delta.attempts || 0) > attempts;
    if (CHUNK_FINAL.has(status) && !CHUNK_FINAL.has(delta.status) && !newerAttempt) continue;
    // Another run of the chunk writes its output afresh.
    if (newerAttempt && attempts) outputForget(state.output, index);
    const merged = { ...(known || { index, status, attempts }), ...delta };
    if (merged.status !== "running") delete merged.progress;
    detailSet(state, merged);
    gridSet(state, index, merged.status, delta.attempts);
  }
  if (message.chunks?.length) state.detailsVersion++;
  detailsTrim(state);
  return { resync };
}

// The grid indices to redraw (null: all of them); from now on, only what changes after this.
export function dirtyTake(state) {
  const dirty = state.dirty;
  state.dirty = new Set();
  return dirty;
}

// What can be done with the job now: cancel it while it runs (or ask to be notified when
// it ends); retry a failed one (its failed chunks, or only its combine step if that
// failed); delete an ended one; run it again at any time. The page shows exactly these.
export function jobActions(status) {
  const active = JOB_ACTIVE.has(status);
  return {
    cancel: active,
    notify: active,
    retry: status === "failed",
    delete: !active,
    rerun: true,
  };
}

export function progressFraction(state) {
  const { job } = state;
  if (job.status === "succeeded") return 1;
  if (!job.total_chunks) return 0;
  let running = 0;
  for (const chunk of state.details.values()) {
    if (chunk.status === "running" && typeof chunk.progress === "number") running += chunk.progress;
  }
  return Math.min(1, (job.done_chunks + running) / job.total_chunks);
}

// Percent with one decimal, as the progress bar shows it.
export function progressPercent(state) {
  return Math.round(progressFraction(state) * 1000) / 10;
}

export function chunkCounts(state) {
  return Object.fromEntries(CHUNK_STATUS_CODES.map((status, code) => [status, state.counts[code]]));
}

export function countsText(state) {
  const { job } = state;
  const counts = chunkCounts(state);
  return (
    `${job.done_chunks} of ${job.total_chunks} chunks done · ${counts.running} running · ` +
    `${counts.pending} pending · ${job.failed_chunks} failed · ` +
    `${counts.cancelled} cancelled`
  );
}

// What a browser notification says when the job ends: the job's own counters only (the
// grid's running/pending counts may still wait for the last chunk's message), and its
// wall time.
export function endedText(state) {
  const { job } = state;
  const parts = [`${job.done_chunks} of ${job.total_chunks} chunks done`];
  if (job.failed_chunks) parts.push(`${job.failed_chunks} failed`);
  if (job.wall_seconds !== null && job.wall_seconds !== undefined) {
    parts.push(`in ${formatSeconds(job.wall_seconds)}`);
  }
  return parts.join(" · ");
}

export function documentTitle(job, percent) {
  const marks = { succeeded: "✓", failed: "✗", cancelled: "⊘" };
  return JOB_ENDED.has(job.status)
    ? `${marks[job.status]} Job ${job.id} ${job.status} · Coreboard`
    : `${percent}% · Job ${job.id} · Coreboard`;
}

function secondsBetween(from, to) {
  return from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : null;
}

function lastLine(text) {
  return text.trim().split("\n").pop();
}

// A chunk known only from the grid has no `attempts`: it says whether it was retried.
export function chunkLabel(chunk) {
  const where = chunk.pid ? ` on ${chunk.worker} pid ${chunk.pid}` : "";
  const took = secondsBetween(chunk.started_at, chunk.finished_at);
  const duration = took === null ? "" : `, ${took.toFixed(2)} s`;
  const memory = typeof chunk.peak_rss === "number" ? `, peak ${formatBytes(chunk.peak_rss)}` : "";
  const error = chunk.error ? `, error: ${lastLine(chunk.error)}` : "";
  const attempts =
    typeof chunk.attempts === "number"
      ? `, attempts ${chunk.attempts}`
      : chunk.retried
        ? ", retried"
        : "";
  return `Chunk ${chunk.index}: ${chunk.status}${where}${attempts}${duration}${memory}${error}`;
}

// "512 MiB (+12 MiB over start)": a chunk's peak resident memory, and how much of it the
// chunk added to what its process held when it began ("—" before it is measured).
export function chunkMemoryText(chunk) {
  if (typeof chunk.peak_rss !== "number") return "—";
  const peak = formatBytes(chunk.peak_rss);
  if (typeof chunk.start_rss !== "number") return peak;
  const grown = Math.max(0, chunk.peak_rss - chunk.start_rss);
  return `${peak} (+${formatBytes(grown)} over start)`;
}

export function chunkCpuText(chunk) {
  const { cpu_user_s: user, cpu_system_s: system } = chunk;
  if (typeof user !== "number" && typeof system !== "number") return "—";
  return `user ${formatFixed(user, 2, " s")} · system ${formatFixed(system, 2, " s")}`;
}

// The chunk inspector's figures, as (term, value) rows. `block`: its output as the page has
// it (output_state.mjs), which runs ahead of the chunk's `output_bytes` while it writes.
export function chunkInspectorRows(chunk, block = null) {
  const written = Math.max(chunk.output_bytes || 0, block?.end || 0);
  const took = secondsBetween(chunk.started_at, chunk.finished_at);
  const where = chunk.pid ? `${chunk.worker} pid ${chunk.pid}` : "—";
  return [
    ["Status", `${chunk.status}, attempts ${chunk.attempts ?? 0}`],
    ["Process", where],
    ["Run time", took === null ? "—" : `${took.toFixed(2)} s`],
    ["Peak memory", chunkMemoryText(chunk)],
    ["CPU time", chunkCpuText(chunk)],
    ["Output", written ? `${formatBytes(written)} written` : "none"],
  ];
}

// The largest peak memory of any chunk so far (the job's own figure once the job has one),
// and the chunk it was measured in (null when it is the job's figure).
export function jobPeakMemory(state) {
  let peak = state.peak;
  const own = state.job.peak_rss;
  if (typeof own === "number" && (peak === null || own > peak.bytes)) {
    peak = { bytes: own, index: null };
  }
  return peak;
}

export function jobPeakMemoryText(state) {
  const peak = jobPeakMemory(state);
  if (peak === null) return "—";
  const where = peak.index === null ? "" : ` (chunk ${peak.index})`;
  return `${formatBytes(peak.bytes)}${where}`;
}

// Pace and time left, or why the job makes no progress: the server works these out
// (`live`), the page only words them.
export function paceText(state) {
  const { job, live } = state;
  if (!JOB_ACTIVE.has(job.status) || !live) return "";
  if (live.waiting) return live.waiting.text;
  if (live.throughput === null || live.eta_seconds === null) return "";
  return `${live.throughput.toFixed(2)} chunks/s · about ${formatSeconds(live.eta_seconds)} left`;
}

export function parallelismText(state) {
  const { job, live } = state;
  if (job.parallelism) return String(job.parallelism);
  const now = live && JOB_ACTIVE.has(job.status) && live.processes_now !== null;
  return now ? `all processes (${live.processes_now} now)` : "all processes";
}

// The worker processes that ran the job's chunks (the snapshot's lanes, and the deltas').
export function processesUsed(state) {
  return state.lanes.size;
}

// Share of the wall time after the first worker process ran out of work for good: the time
// lost to the slowest chunks at the end.
export function tailShare(state) {
  const { job } = state;
  if (!job.started_at || !job.finished_at) return null;
  const ends = [...state.lanes.values()]
    .map((lane) => lane.lastFinished)
    .filter((at) => at !== null && at !== undefined);
  if (ends.length < 2) return null;
  const firstIdle = Math.min(...ends);
  const wall = Date.parse(job.finished_at) - Date.parse(job.started_at);
  return wall > 0 ? Math.max(0, (Date.parse(job.finished_at) - firstIdle) / wall) : null;
}

// What a job's speedup was measured against (jobs/scaling.py: speedup_baseline).
const SPEEDUP_BASELINES = {
  measured: "against a measured parallelism-1 run",
  cpu: "estimated from the chunks' CPU time",
};

// The speedup and what its "time one process would take" is.
export function speedupText(job) {
  if (job.speedup === null || job.speedup === undefined) return "—";
  const against = SPEEDUP_BASELINES[job.speedup_baseline];
  return `${job.speedup.toFixed(2)}×${against ? ` (${against})` : ""}`;
}

export function timingRows(state) {
  const { job } = state;
  const used = processesUsed(state);
  const tail = tailShare(state);
  return [
    ["Wall time", formatFixed(job.wall_seconds, 2, " s")],
    ["CPU time", formatFixed(job.cpu_seconds, 2, " s")],
    ["Speedup", speedupText(job)],
    ["Parallelism achieved", formatFixed(job.parallelism_achieved, 2, " (CPU time ÷ wall time)")],
    ["Efficiency", formatPercent(job.efficiency)],
    [
      "Parallelism",
      `${job.parallelism || "all processes"} (${plural(used, "worker process", "es")} used)`,
    ],
    [
      "Tail",
      tail === null
        ? "—"
        : `${formatPercent(tail)} of the wall time after the first process ran out of work`,
    ],
    ["Peak memory", jobPeakMemoryText(state)],
  ];
}

// The speedup against the ideal, as fractions of the meter's width (null: no speedup yet).
// An all-processes job (parallelism 0) is measured against the processes it used.
export function speedupMeter(state) {
  const { job } = state;
  if (job.speedup === null || job.speedup === undefined) return null;
  // The processes the job's efficiency counts (jobs/scaling.py), else the lanes seen.
  const used = job.processes_used ?? processesUsed(state);
  const ideal = Math.max(
    1,
    job.parallelism ? Math.min(used || job.parallelism, job.parallelism) : used,
  );
  const scale = Math.max(ideal, job.speedup) * 1.1;
  return {
    fill: job.speedup / scale,
    ideal: ideal / scale,
    caption: `Speedup ${job.speedup.toFixed(2)}× of an ideal ${ideal}× (${plural(ideal, "process", "es")} used)`,
  };
}

// Chunks with an error, in order (of those the page holds: the snapshot sends the first
// SNAPSHOT_FAILING, deltas the newer ones). A cancelled chunk is not a failure, whatever an
// earlier attempt of it said.
export function failingChunks(state) {
  return [...state.details.values()]
    .filter((chunk) => chunk.error && chunk.status !== "cancelled")
    .sort((a, b) => a.index - b.index);
}

export function failureSummary(chunk) {
  return `Chunk ${chunk.index}: ${chunk.status} after ${chunk.attempts} attempt(s) — ${lastLine(chunk.error)}`;
}

// The indices of the done chunks, in order (from the grid).
// Done chunks whose outcome is stored: a chunk told done as it ended (`recorded: false`)
// has nothing to fetch until its record says so.
export function doneIndices(state) {
  const done = [];
  const code = STATUS_CODE.done;
  for (let i = 0; i < state.grid.length; i++) {
    if ((state.grid[i] & GRID_STATUS_MASK) !== code) continue;
    if (state.details.get(i)?.recorded === false) continue;
    done.push(i);
  }
  return done;
}
