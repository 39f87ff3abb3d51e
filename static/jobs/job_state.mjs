// The job page's state and everything worked out from it: no DOM, no Chart.js, so that
// Node's test runner can drive it (tests/js/). Messages change the state only here
// (`messageApply`); static/jobs/job.mjs draws it.
//
// The state is a plain object: { job, live, chunks: Map(index → chunk), snapshotSeq, dirty,
// output, resources }. `dirty` holds the chunk indices changed since the page last drew them
// (null: all); `output` is what the chunks printed (output_state.mjs), `resources` the CPU
// and memory samples per process (resources_state.mjs).
import { formatBytes, formatFixed, formatPercent, formatSeconds, plural } from "../lib/format.mjs";
import { outputForget, outputMessageApply, outputStateCreate } from "./output_state.mjs";
import { resourcesApply, resourcesStateCreate } from "./resources_state.mjs";

// A job is active while pending or running (jobs/models.py Job.is_active).
export const JOB_ACTIVE = new Set(["pending", "running"]);
export const JOB_ENDED = new Set(["succeeded", "failed", "cancelled"]);
const CHUNK_FINAL = new Set(["done", "failed", "cancelled"]);
const CHUNK_STATUSES = ["pending", "running", "done", "failed", "cancelled"];

export function jobStateCreate(snapshot) {
  const state = { job: snapshot.job, live: snapshot.live ?? null, chunks: new Map() };
  state.snapshotSeq = null;
  state.dirty = null;
  state.output = outputStateCreate();
  state.resources = resourcesStateCreate();
  for (const chunk of snapshot.chunks || []) state.chunks.set(chunk.index, chunk);
  return state;
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

// A snapshot's chunks come in pages: `job.snapshot` carries the first, `job.chunks`
// messages (same seq) the rest, so no websocket frame nears daphne's 1 MiB limit.
export function snapshotApply(state, message) {
  state.job = message.job;
  if (message.live !== undefined) state.live = message.live;
  state.snapshotSeq = message.seq;
  state.chunks.clear();
  snapshotChunksAdd(state, message.chunks);
}

export function chunksPageApply(state, message) {
  if (message.seq === state.snapshotSeq) snapshotChunksAdd(state, message.chunks);
}

function snapshotChunksAdd(state, page) {
  for (const chunk of page) {
    // Chunks were cleared when the snapshot began, so a known one came with a delta that
    // arrived between the pages: it is newer than the page.
    state.chunks.set(chunk.index, { ...chunk, ...state.chunks.get(chunk.index) });
  }
  state.dirty = null;
}

export function progressApply(state, message) {
  let resync = false;
  // Worker processes publish independently, so an older job state can arrive late.
  if (message.job && message.job.version >= state.job.version) {
    resync = JOB_ACTIVE.has(state.job.status) !== JOB_ACTIVE.has(message.job.status);
    state.job = message.job;
  }
  for (const delta of message.chunks || []) {
    const known = state.chunks.get(delta.index) || { index: delta.index };
    // A late report from an earlier run of a chunk must not undo its final state; a retry
    // shows up with more attempts.
    const newerAttempt = (delta.attempts || 0) > (known.attempts || 0);
    if (CHUNK_FINAL.has(known.status) && !CHUNK_FINAL.has(delta.status) && !newerAttempt) {
      continue;
    }
    // Another run of the chunk writes its output afresh.
    if (newerAttempt && known.attempts) outputForget(state.output, delta.index);
    const merged = { ...known, ...delta };
    if (merged.status !== "running") delete merged.progress;
    state.chunks.set(delta.index, merged);
    if (state.dirty !== null) state.dirty.add(delta.index);
  }
  return { resync };
}

// The chunks to redraw (null: all of them); from now on, only what changes after this.
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
  for (const chunk of state.chunks.values()) {
    if (chunk.status === "running" && typeof chunk.progress === "number") running += chunk.progress;
  }
  return Math.min(1, (job.done_chunks + running) / job.total_chunks);
}

// Percent with one decimal, as the progress bar shows it.
export function progressPercent(state) {
  return Math.round(progressFraction(state) * 1000) / 10;
}

export function chunkCounts(state) {
  const counts = Object.fromEntries(CHUNK_STATUSES.map((status) => [status, 0]));
  for (const chunk of state.chunks.values()) counts[chunk.status] = (counts[chunk.status] || 0) + 1;
  return counts;
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

export function chunkLabel(chunk) {
  const where = chunk.pid ? ` on ${chunk.worker} pid ${chunk.pid}` : "";
  const took = secondsBetween(chunk.started_at, chunk.finished_at);
  const duration = took === null ? "" : `, ${took.toFixed(2)} s`;
  const memory = typeof chunk.peak_rss === "number" ? `, peak ${formatBytes(chunk.peak_rss)}` : "";
  const error = chunk.error ? `, error: ${lastLine(chunk.error)}` : "";
  return `Chunk ${chunk.index}: ${chunk.status}${where}, attempts ${chunk.attempts}${duration}${memory}${error}`;
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
  let peak = null;
  for (const chunk of state.chunks.values()) {
    if (typeof chunk.peak_rss === "number" && (peak === null || chunk.peak_rss > peak.bytes)) {
      peak = { bytes: chunk.peak_rss, index: chunk.index };
    }
  }
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

function processKey(chunk) {
  return `${chunk.worker}|${chunk.pid}`;
}

export function processesUsed(state) {
  const used = new Set();
  for (const chunk of state.chunks.values()) if (chunk.pid) used.add(processKey(chunk));
  return used.size;
}

// Share of the wall time after the first worker process ran out of work for good: the time
// lost to the slowest chunks at the end.
export function tailShare(state) {
  const { job } = state;
  if (!job.started_at || !job.finished_at) return null;
  const lanes = new Map();
  for (const chunk of state.chunks.values()) {
    if (!chunk.finished_at || !chunk.pid) continue;
    const key = processKey(chunk);
    lanes.set(key, Math.max(lanes.get(key) || 0, Date.parse(chunk.finished_at)));
  }
  if (lanes.size < 2) return null;
  const firstIdle = Math.min(...lanes.values());
  const wall = Date.parse(job.finished_at) - Date.parse(job.started_at);
  return wall > 0 ? Math.max(0, (Date.parse(job.finished_at) - firstIdle) / wall) : null;
}

export function timingRows(state) {
  const { job } = state;
  const used = processesUsed(state);
  const tail = tailShare(state);
  return [
    ["Wall time", formatFixed(job.wall_seconds, 2, " s")],
    ["CPU time", formatFixed(job.cpu_seconds, 2, " s")],
    ["Speedup", formatFixed(job.speedup, 2, "×")],
    ["Parallel efficiency", formatPercent(job.efficiency)],
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
  const used = processesUsed(state);
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

// Chunks with an error, in order. A cancelled chunk is not a failure, whatever an earlier
// attempt of it said.
export function failingChunks(state) {
  return [...state.chunks.values()]
    .filter((chunk) => chunk.error && chunk.status !== "cancelled")
    .sort((a, b) => a.index - b.index);
}

export function failureSummary(chunk) {
  return `Chunk ${chunk.index}: ${chunk.status} after ${chunk.attempts} attempt(s) — ${lastLine(chunk.error)}`;
}

export function doneChunks(state) {
  return [...state.chunks.values()]
    .filter((chunk) => chunk.status === "done")
    .sort((a, b) => a.index - b.index);
}
