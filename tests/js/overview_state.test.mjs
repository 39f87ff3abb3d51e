// The overview's state and text (static/jobs/overview_state.mjs).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  activeSummary,
  jobCardText,
  nodeControl,
  nodeLoadNote,
  nodeWarning,
  overviewMessageApply,
  priorityText,
  processWork,
  throughputBuckets,
  throughputTick,
} from "../../static/jobs/overview_state.mjs";

test("an overview.state message replaces the state; another message leaves it", () => {
  const first = { type: "overview.state", active: [], recent: [] };
  const next = { type: "overview.state", active: [{ id: 1 }], recent: [] };
  assert.equal(overviewMessageApply(first, next), next);
  assert.equal(overviewMessageApply(next, { type: "something.else" }), next);
});

test("a capped active list counts the jobs left out", () => {
  assert.deepEqual(activeSummary({ active: [{}], active_more: 7 }), {
    count: "(8)",
    more: "and 7 more",
    empty: false,
  });
  assert.equal(activeSummary({ active: [], active_more: 0 }).empty, true);
});

test("a job card says why a job waits, or its pace", () => {
  const job = { done_chunks: 2, total_chunks: 4, throughput: 1, eta_seconds: 2 };
  assert.equal(jobCardText(job), "2/4 chunks · 1.00 chunks/s · ETA 2.0 s");
  assert.equal(
    jobCardText({ ...job, throughput: null }),
    "2/4 chunks · waiting for the first chunk",
  );
  assert.equal(jobCardText({ ...job, waiting: { text: "queue full" } }), "2/4 chunks · queue full");
});

test("a process busy with another person's job names no job", () => {
  assert.deepEqual(processWork({ state: "busy" }), { key: "", text: "another job" });
  assert.deepEqual(processWork({ state: "idle", job_id: null }), { key: "", text: "—" });
  assert.equal(processWork({ state: "busy", job_id: 3, chunk_index: 1 }).key, "3|1");
});

test("a node offers drain or resume, and neither once lost", () => {
  assert.equal(nodeControl({ node: "n", state: "active", draining: false }).label, "Drain node n");
  assert.equal(nodeControl({ node: "n", state: "draining", draining: true }).action, "resume");
  assert.equal(nodeControl({ node: "n", state: "lost" }).hidden, true);
});

test("a node that differs from the web machine says how", () => {
  const node = { code_version: "b", missing_kinds: ["join"], extra_kinds: [] };
  assert.equal(
    nodeWarning(node, { code_version: "a" }),
    "Differs from the web machine: missing kinds: join; code b differs from the web's a.",
  );
  assert.equal(nodeWarning({ code_version: "a" }, { code_version: "a" }), "");
});

test("a node renamed at start says which name it was started with", () => {
  const node = { code_version: "a", renamed_from: "alpha@h" };
  assert.equal(
    nodeWarning(node, { code_version: "a" }),
    "Started as alpha@h: a worker on another machine holds that name.",
  );
});

test("throughput is a rate over 5-second buckets, labelled now or minutes ago", () => {
  const points = Array.from({ length: 10 }, (_, i) => [990 + i, i < 5 ? 1 : 3]);
  assert.deepEqual(throughputBuckets(points, 1000), { labels: [-6, -1], values: [1, 3] });
  assert.equal(throughputTick(-1, 0), "now");
  assert.equal(throughputTick(-120, 11), "-2 min");
  assert.equal(throughputTick(-120, 5), "");
  assert.equal(throughputTick(undefined, 0), "now");
});

test("the CPU bars say they are the machine's, and whose load it is when no worker is busy", () => {
  const node = { node: "vm", state: "active", busy: 0, cpus: [100, 96] };
  assert.equal(
    nodeLoadNote(node),
    "Whole machine, other programs included. Coreboard's processes here are idle: " +
      "the 98% is other programs' load.",
  );
  assert.equal(nodeLoadNote({ ...node, busy: 2 }), "Whole machine, other programs included.");
  assert.equal(nodeLoadNote({ ...node, cpus: [3, 5] }), "Whole machine, other programs included.");
  assert.equal(nodeLoadNote({ ...node, state: "lost" }), "Whole machine, other programs included.");
});

test("a card names a job's priority unless it is normal", () => {
  assert.equal(priorityText({ priority: "high" }), "high priority");
  assert.equal(priorityText({ priority: "urgent" }), "urgent priority");
  assert.equal(priorityText({ priority: "low" }), "low priority");
  assert.equal(priorityText({ priority: "normal" }), "");
  assert.equal(priorityText({}), "");
});
