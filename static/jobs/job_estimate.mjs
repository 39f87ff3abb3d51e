// The new-job form's line about a job before it is sent: its chunks, its estimated CPU
// seconds and the quotas they count against, from the preview's answer
// (POST /api/jobs/preview/). Pure functions, no DOM.

import { plural } from "../lib/format.mjs";

const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const HOURS = new Intl.NumberFormat("en-US", {
  maximumFractionDigits: 1,
  minimumFractionDigits: 1,
});

// As the server's quota messages say it: "about 8,222 CPU seconds (2.3 CPU-hours)".
export function cpuSecondsText(seconds) {
  if (seconds > 0 && seconds < 1) return "under 1 CPU second";
  let text = `${GROUPED.format(seconds)} CPU seconds`;
  if (seconds >= 3600) text += ` (${HOURS.format(seconds / 3600)} CPU-hours)`;
  return text;
}

export function estimateText(answer) {
  const chunks = plural(answer.chunks, "chunk");
  const cost =
    answer.cpu_seconds_basis === "none"
      ? "an unknown number of CPU seconds (its kind gives no estimate and you have no finished run of it yet; its chunks and their time limit bound it)"
      : answer.cpu_seconds_basis === "pace"
        ? `about ${cpuSecondsText(answer.cpu_seconds)} (measured on your latest runs of this kind)`
        : `about ${cpuSecondsText(answer.cpu_seconds)}`;
  return (
    `This job will have ${chunks} and ask for ${cost}. ` +
    `Quota: ${GROUPED.format(answer.quota_job_cpu_seconds)} CPU seconds per job, ` +
    `${GROUPED.format(answer.quota_cpu_seconds)} across your active jobs ` +
    `(they ask for ${GROUPED.format(answer.active_cpu_seconds)} now).`
  );
}
