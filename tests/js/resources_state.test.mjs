// The CPU and memory timeline's state (static/jobs/resources_state.mjs): samples from the API
// and `job.resources` messages, its series and its text alternative.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  SAMPLES_KEEP,
  processLabel,
  resourcesApply,
  resourcesRows,
  resourcesSeries,
  resourcesStateCreate,
  resourcesSummaryText,
} from "../../static/jobs/resources_state.mjs";

const MIB = 1024 * 1024;
const T0 = Date.parse("2026-12-06T08:00:00Z");

function sample(process, pid, second, cpu, rssMib) {
  return {
    process,
    pid,
    at: new Date(T0 + second * 1000).toISOString(),
    cpu_percent: cpu,
    rss: rssMib * MIB,
  };
}

describe("samples", () => {
  test("samples repeated or out of order are kept once each, in time order", () => {
    const resources = resourcesStateCreate();
    assert.equal(resourcesApply(resources, [sample("n1|10|b", 10, 2, 90, 100)]), true);
    resourcesApply(resources, [
      sample("n1|10|b", 10, 0, 50, 80),
      sample("n1|10|b", 10, 1, 100, 90),
      sample("n1|10|b", 10, 2, 90, 100),
    ]);
    const process = resources.processes.get("n1|10|b");
    assert.deepEqual(
      process.samples.map((point) => point.cpu),
      [50, 100, 90],
    );
    const version = resources.version;
    assert.equal(resourcesApply(resources, [sample("n1|10|b", 10, 1, 100, 90)]), false);
    assert.equal(resources.version, version);
  });

  test("a process keeps its last samples only", () => {
    const resources = resourcesStateCreate();
    const samples = Array.from({ length: SAMPLES_KEEP + 5 }, (_, i) =>
      sample("n|1|b", 1, i, 100, 10),
    );
    resourcesApply(resources, samples);
    const kept = resources.processes.get("n|1|b").samples;
    assert.equal(kept.length, SAMPLES_KEEP);
    assert.equal(kept[0].at, T0 + 5000);
  });

  test("a process is named by its node and pid", () => {
    assert.equal(processLabel("celery@host|4242|1700000000", 4242), "celery@host pid 4242");
    assert.equal(processLabel("celery@host", null), "celery@host");
    assert.equal(processLabel("a|b@host|7|1", 7), "a|b@host pid 7");
  });
});

describe("what the page shows", () => {
  function twoProcesses() {
    const resources = resourcesStateCreate();
    resourcesApply(resources, [
      sample("a@h|1|b", 1, 0, 100, 100),
      sample("a@h|1|b", 1, 1, 96, 512),
      sample("a@h|2|b", 2, 0, 98, 200),
      sample("a@h|2|b", 2, 1, 98, 300),
    ]);
    return resources;
  }

  test("the text alternative: processes, peak memory, mean CPU", () => {
    assert.equal(resourcesSummaryText(twoProcesses()), "2 processes; peak 512 MiB; mean CPU 98 %");
    assert.equal(resourcesSummaryText(resourcesStateCreate()), "No CPU or memory samples yet.");
  });

  test("one table row per process", () => {
    const rows = resourcesRows(twoProcesses());
    assert.deepEqual(
      rows.map((row) => [row.label, row.samples, row.meanCpu, row.peakRss / MIB]),
      [
        ["a@h pid 1", 2, 98, 512],
        ["a@h pid 2", 2, 98, 300],
      ],
    );
    assert.equal(rows[0].to - rows[0].from, 1000);
  });

  test("series: seconds since the job started, memory in MiB", () => {
    const series = resourcesSeries(twoProcesses(), T0 - 2000);
    assert.equal(series.length, 2);
    assert.deepEqual(series[0].cpu, [
      { x: 2, y: 100 },
      { x: 3, y: 96 },
    ]);
    assert.deepEqual(series[0].rss, [
      { x: 2, y: 100 },
      { x: 3, y: 512 },
    ]);
    // Without the job's start, from the first sample.
    assert.equal(resourcesSeries(twoProcesses())[1].cpu[0].x, 0);
  });
});
