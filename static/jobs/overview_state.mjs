// The overview's state and the text worked out from it: no DOM, no Chart.js (Node's test
// runner drives it, tests/js/). The socket pushes the whole state once a second
// (`overview.state`, the same shape the page starts with); static/jobs/overview.mjs draws it.
import { formatSeconds } from "../lib/format.mjs";

// The state after a message: an `overview.state` replaces it whole; anything else leaves it.
export function overviewMessageApply(state, message) {
  return message.type === "overview.state" ? message : state;
}

// The server caps the active list it sends; `active_more` counts the jobs left out.
export function activeSummary(state) {
  const more = Number(state.active_more) || 0;
  const total = state.active.length + more;
  return { count: `(${total})`, more: more ? `and ${more} more` : "", empty: total === 0 };
}

// `waiting` (from the server) says why a job makes no progress, in place of an ETA.
export function jobCardText(job) {
  let pace;
  if (job.waiting) pace = job.waiting.text;
  else if (job.throughput === null || job.throughput === undefined || job.eta_seconds === null) {
    pace = "waiting for the first chunk";
  } else {
    pace = `${job.throughput.toFixed(2)} chunks/s · ETA ${formatSeconds(job.eta_seconds)}`;
  }
  return `${job.done_chunks}/${job.total_chunks} chunks · ${pace}`;
}

// A job's priority as its card says it: nothing for normal, the usual case.
export function priorityText(job) {
  return job.priority && job.priority !== "normal" ? `${job.priority} priority` : "";
}

export function jobPercent(job) {
  return Math.round(job.progress * 1000) / 10;
}

// A process is its node, pid and boot: two machines may share a host name.
export function processKey(process) {
  return process.id || `${process.node}|${process.pid}`;
}

// What a process works on: a job of the viewer's (its id and chunk), another person's job
// (no id is sent: the process is busy, not with what), or nothing.
export function processWork(process) {
  if (process.job_id === null || process.job_id === undefined) {
    return { key: "", text: process.state === "busy" ? "another job" : "—" };
  }
  return { key: `${process.job_id}|${process.chunk_index}`, jobId: process.job_id };
}

export function processForText(process, now) {
  return process.state === "lost"
    ? `silent ${formatSeconds(now - process.last_seen)}`
    : formatSeconds(now - process.since);
}

const NODE_STATES = {
  active: "active",
  draining: "draining (finishing its chunks)",
  drained: "drained (takes no work)",
  stopping: "stopping",
  lost: "lost",
};

export function nodeStateText(node, now) {
  if (node.state === "lost") return `lost (silent ${formatSeconds(now - node.last_seen)})`;
  return NODE_STATES[node.state] || node.state;
}

const listed = (values) => (values || []).join(", ") || "—";

// The facts of a node card, in order: [label, text(node, now)].
export const NODE_FACTS = [
  ["Host", (node) => node.host],
  ["Up for", (node, now) => (node.started ? formatSeconds(now - node.started) : "—")],
  ["Processes", (node) => (node.concurrency ? String(node.concurrency) : "—")],
  ["Queues", (node) => listed(node.queues)],
  ["Labels", (node) => listed(node.labels)],
  ["Kinds", (node) => listed(node.kinds)],
  ["Code", (node) => node.code_version],
  ["Coreboard", (node) => node.coreboard_version],
  ["Python", (node) => node.python_version],
];

// How a node differs from the web machine, and whether it runs under another name than it
// was started with ("" when neither).
export function nodeWarning(node, web) {
  const parts = [];
  if (node.missing_kinds?.length) parts.push(`missing kinds: ${node.missing_kinds.join(", ")}`);
  if (node.extra_kinds?.length) parts.push(`extra kinds: ${node.extra_kinds.join(", ")}`);
  if (web && node.code_version !== web.code_version) {
    parts.push(`code ${node.code_version} differs from the web's ${web.code_version}`);
  }
  const notes = parts.length ? [`Differs from the web machine: ${parts.join("; ")}.`] : [];
  if (node.renamed_from) {
    notes.push(`Started as ${node.renamed_from}: a worker on another machine holds that name.`);
  }
  return notes.join(" ");
}

// Drain a node that takes work, resume one that drains.
export function nodeControl(node) {
  const action = node.draining ? "resume" : "drain";
  const verb = action === "drain" ? "Drain" : "Resume";
  return {
    action,
    text: verb,
    label: `${verb} node ${node.node}`,
    hidden: node.state === "lost" || node.state === "stopping",
  };
}

// The bars are the machine's CPU (psutil, every program), not Coreboard's alone: said under
// the chart, and said plainly when no Coreboard process there is busy yet the machine is.
export const OTHER_LOAD_PERCENT = 25;

export function nodeLoadNote(node) {
  const base = "Whole machine, other programs included.";
  if (node.state === "lost" || !node.cpus.length || node.busy) return base;
  const mean = node.cpus.reduce((sum, value) => sum + value, 0) / node.cpus.length;
  if (mean < OTHER_LOAD_PERCENT) return base;
  return `${base} Coreboard's processes here are idle: the ${Math.round(mean)}% is other programs' load.`;
}

export function nodeCpuLabel(node) {
  const what =
    node.state === "lost"
      ? `Last CPU use per core on ${node.node} before it was lost`
      : `CPU use per core on ${node.node} (the whole machine, other programs included)`;
  return `${what}: ${node.cpus.map((value, i) => `core ${i} ${Math.round(value)}%`).join(", ")}`;
}

export const THROUGHPUT_BUCKET_S = 5;

// Per-second counts ([time, count] pairs) are spiky: the rate over 5-second buckets, each
// labelled with its end in seconds before `now` (negative).
export function throughputBuckets(points, now) {
  const labels = [];
  const values = [];
  for (let i = 0; i + THROUGHPUT_BUCKET_S <= points.length; i += THROUGHPUT_BUCKET_S) {
    const bucket = points.slice(i, i + THROUGHPUT_BUCKET_S);
    labels.push(Math.round(bucket[THROUGHPUT_BUCKET_S - 1][0] - now));
    values.push(bucket.reduce((sum, [, count]) => sum + count, 0) / THROUGHPUT_BUCKET_S);
  }
  return { labels, values };
}

// The x axis names only the first bucket and one a minute: "now" or "-N min".
export function throughputTick(label, index) {
  if (index % 12 !== 11 && index !== 0) return "";
  const ago = -(label ?? 0);
  return ago < 5 ? "now" : `-${Math.round(ago / 60)} min`;
}

export function throughputSummary(points) {
  const lastMinute = points.slice(-60).reduce((sum, [, count]) => sum + count, 0);
  return `${lastMinute} chunks in the last minute (${(lastMinute / 60).toFixed(2)}/s)`;
}
