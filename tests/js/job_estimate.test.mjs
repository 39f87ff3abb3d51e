import assert from "node:assert/strict";
import { test } from "node:test";

import { cpuSecondsText, estimateText } from "../../static/jobs/job_estimate.mjs";

const ANSWER = {
  chunks: 16,
  cpu_seconds: 8222.3,
  cpu_seconds_estimated: true,
  cpu_seconds_basis: "kind",
  quota_job_cpu_seconds: 3600,
  quota_cpu_seconds: 86400,
  active_cpu_seconds: 120.4,
};

test("cpu seconds read as the server's quota messages write them", () => {
  assert.equal(cpuSecondsText(8222.3), "8,222 CPU seconds (2.3 CPU-hours)");
  assert.equal(cpuSecondsText(12.6), "13 CPU seconds");
  assert.equal(cpuSecondsText(0.2), "under 1 CPU second");
});

test("the estimate is shown with the quotas it is checked against", () => {
  assert.equal(
    estimateText(ANSWER),
    "This job will have 16 chunks and ask for about 8,222 CPU seconds (2.3 CPU-hours). " +
      "Quota: 3,600 CPU seconds per job, 86,400 across your active jobs (they ask for 120 now).",
  );
});

test("a kind without an estimate is shown by its measured pace, or as unknown", () => {
  const paced = estimateText({
    ...ANSWER,
    chunks: 1,
    cpu_seconds: 600,
    cpu_seconds_basis: "pace",
  });
  assert.match(
    paced,
    /^This job will have 1 chunk and ask for about 600 CPU seconds \(measured on your latest runs/,
  );
  const unknown = estimateText({
    ...ANSWER,
    chunks: 1,
    cpu_seconds: 0,
    cpu_seconds_estimated: false,
    cpu_seconds_basis: "none",
  });
  assert.match(unknown, /ask for an unknown number of CPU seconds \(its kind gives no estimate/);
});
