// A job's CPU and memory timeline per worker process, as the job page keeps it: no DOM, no
// Chart.js (tests/js/resources_state.test.mjs). The `job.resources` message and the API's
// `GET /api/jobs/<id>/resources/` answer bring samples
// `{process: "node|pid|boot", pid, at, cpu_percent, rss}`; static/jobs/job.mjs draws the
// charts and their text alternative from what is worked out here.
import { formatBytes, plural } from "../lib/format.mjs";

// Samples kept per process (about an hour at one a second); older ones go first.
export const SAMPLES_KEEP = 3600;

const MIB = 1024 * 1024;

export function resourcesStateCreate() {
  // `version` grows with every change, so the page redraws only when something came.
  return { processes: new Map(), version: 0 };
}

// The worker process as people know it: its node and pid (the boot part tells a restarted
// process from an older one with the same pid, and stays in the key).
export function processLabel(key, pid) {
  const parts = String(key).split("|");
  const node = parts.length >= 3 ? parts.slice(0, -2).join("|") : parts[0];
  return pid === null || pid === undefined ? node : `${node} pid ${pid}`;
}

// Samples in any order and repeated (the API's answer overlaps the live messages) are kept
// once each, in time order.
export function resourcesApply(resources, samples) {
  let changed = false;
  for (const sample of samples || []) {
    const at = Date.parse(sample.at);
    if (Number.isNaN(at)) continue;
    let process = resources.processes.get(sample.process);
    if (!process) {
      process = {
        key: sample.process,
        label: processLabel(sample.process, sample.pid),
        samples: [],
      };
      resources.processes.set(sample.process, process);
    }
    const point = { at, cpu: sample.cpu_percent, rss: sample.rss };
    const list = process.samples;
    if (!list.length || at > list[list.length - 1].at) {
      list.push(point);
    } else {
      const where = firstNotBefore(list, at);
      if (where < list.length && list[where].at === at) continue;
      list.splice(where, 0, point);
    }
    if (list.length > SAMPLES_KEEP) list.splice(0, list.length - SAMPLES_KEEP);
    changed = true;
  }
  if (changed) resources.version += 1;
  return changed;
}

function firstNotBefore(list, at) {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (list[middle].at < at) low = middle + 1;
    else high = middle;
  }
  return low;
}

function processesSorted(resources) {
  return [...resources.processes.values()].sort((a, b) => (a.label < b.label ? -1 : 1));
}

// Per process: its samples, mean CPU and peak memory, first and last sample time.
export function resourcesRows(resources) {
  return processesSorted(resources)
    .filter((process) => process.samples.length)
    .map((process) => {
      const { samples } = process;
      const cpu = samples.reduce((sum, sample) => sum + sample.cpu, 0) / samples.length;
      return {
        key: process.key,
        label: process.label,
        samples: samples.length,
        meanCpu: cpu,
        peakRss: Math.max(...samples.map((sample) => sample.rss)),
        from: samples[0].at,
        to: samples[samples.length - 1].at,
      };
    });
}

// The charts' text alternative in one line: "2 processes; peak 512 MiB; mean CPU 98 %".
export function resourcesSummaryText(resources) {
  const rows = resourcesRows(resources);
  if (!rows.length) return "No CPU or memory samples yet.";
  const samples = rows.reduce((sum, row) => sum + row.samples, 0);
  const cpu = rows.reduce((sum, row) => sum + row.meanCpu * row.samples, 0) / samples;
  const peak = Math.max(...rows.map((row) => row.peakRss));
  return (
    `${plural(rows.length, "process", "es")}; peak ${formatBytes(peak)}; ` +
    `mean CPU ${Math.round(cpu)} %`
  );
}

// Chart.js series, one per process: CPU % and resident memory (MiB) against seconds since
// `origin` (ms; the job's start, or the first sample).
export function resourcesSeries(resources, origin = null) {
  const processes = processesSorted(resources).filter((process) => process.samples.length);
  const first = Math.min(...processes.map((process) => process.samples[0].at));
  const zero = origin ?? (Number.isFinite(first) ? first : 0);
  return processes.map((process) => ({
    key: process.key,
    label: process.label,
    cpu: process.samples.map((sample) => ({ x: (sample.at - zero) / 1000, y: sample.cpu })),
    rss: process.samples.map((sample) => ({ x: (sample.at - zero) / 1000, y: sample.rss / MIB })),
  }));
}
