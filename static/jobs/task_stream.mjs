// The job page's task stream: one lane per worker process, a light bar for a chunk's wait in
// the queue and a coloured one for its run (running chunks grow until now). The bars are
// worked out by pure functions (`taskStreamBars`, `barsAggregate`); `TaskStream` draws them
// with Chart.js (the page's global `Chart`, from node_modules).

import { cssColour, translucent } from "../lib/colours.mjs";

// Chunk colours, as the grid's (static/coreboard.css).
export function streamColours() {
  const status = {
    queued: cssColour("--queued"),
    running: cssColour("--chunk-running"),
    done: cssColour("--chunk-done"),
    failed: cssColour("--chunk-failed"),
    cancelled: cssColour("--chunk-cancelled"),
  };
  return {
    status,
    wait: translucent(status.queued, 0.45),
    retried: cssColour("--bad"),
    other: cssColour("--pending"),
  };
}

// Above this many bars, neighbouring finished chunks of a lane are merged into one.
export const AGGREGATE_ABOVE = 300;

function laneOf(chunk) {
  return `${chunk.worker} · pid ${chunk.pid}`;
}

// Seconds since the job started; `now` (ms) ends the bars of chunks still running.
export function taskStreamBars(job, chunks, now) {
  const origin = job.started_at ? Date.parse(job.started_at) : null;
  if (origin === null) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  const started = [...chunks].filter((chunk) => chunk.started_at && chunk.pid);
  const lanes = [...new Set(started.map(laneOf))].sort();
  let waits = [];
  let runs = [];
  for (const chunk of started) {
    const y = laneOf(chunk);
    const begin = (Date.parse(chunk.started_at) - origin) / 1000;
    const finish = ((chunk.finished_at ? Date.parse(chunk.finished_at) : end) - origin) / 1000;
    if (chunk.queued_at) {
      waits.push({
        x: [Math.max(0, (Date.parse(chunk.queued_at) - origin) / 1000), begin],
        y,
        chunk,
      });
    }
    runs.push({ x: [begin, Math.max(finish, begin)], y, chunk });
  }
  const chunksDrawn = runs.length;
  if (runs.length > AGGREGATE_ABOVE) {
    // Too many bars to draw one by one: merge neighbouring finished chunks of a lane.
    runs = barsAggregate(runs, (end - origin) / 1000 / 400);
    waits = [];
  }
  return { lanes, waits, runs, chunksDrawn };
}

// Merge a lane's neighbouring bars of chunks done at the first attempt, `gap` seconds apart
// at most; a merged bar's chunk says how many it stands for (`aggregated`).
export function barsAggregate(runs, gap) {
  const sorted = [...runs].sort((a, b) => (a.y < b.y ? -1 : a.y > b.y ? 1 : a.x[0] - b.x[0]));
  const merged = [];
  for (const run of sorted) {
    const last = merged[merged.length - 1];
    const plain = run.chunk.status === "done" && run.chunk.attempts <= 1;
    if (last && plain && last.plain && last.y === run.y && run.x[0] - last.x[1] <= gap) {
      last.x = [last.x[0], Math.max(last.x[1], run.x[1])];
      last.count += 1;
    } else {
      merged.push({ ...run, x: [...run.x], plain, count: 1 });
    }
  }
  for (const bar of merged) {
    if (bar.count > 1) bar.chunk = { ...bar.chunk, aggregated: bar.count };
  }
  return merged;
}

export class TaskStream {
  // colours: { status: {queued, running, …}, wait, retried, other }; label(chunk) → text.
  constructor(canvas, { Chart, colours, label }) {
    this.canvas = canvas;
    this.Chart = Chart;
    this.colours = colours;
    this.label = label;
    this.chart = null;
  }

  update(job, chunks, now = Date.now()) {
    const bars = taskStreamBars(job, chunks, now);
    if (bars === null) return;
    const { lanes, waits, runs, chunksDrawn } = bars;
    const { status, wait, retried, other } = this.colours;
    const datasets = [
      { label: "queued", data: waits, backgroundColor: wait, grouped: false, barPercentage: 0.5 },
      {
        label: "run",
        data: runs,
        grouped: false,
        barPercentage: 0.9,
        backgroundColor: runs.map((run) => status[run.chunk.status] || other),
        borderColor: runs.map((run) => (run.chunk.attempts > 1 ? retried : "rgba(0,0,0,0)")),
        borderWidth: runs.map((run) => (run.chunk.attempts > 1 ? 2 : 0)),
        borderSkipped: false,
      },
    ];
    this.canvas.parentElement.style.height = `${Math.max(120, 40 + lanes.length * 28)}px`;
    if (!this.chart) this.chart = this.create(lanes, datasets);
    else {
      this.chart.data.labels = lanes;
      this.chart.data.datasets = datasets;
      this.chart.update("none");
    }
    this.canvas.setAttribute(
      "aria-label",
      `Timeline of ${chunksDrawn} chunks on ${lanes.length} worker processes`,
    );
    // Read by the browser tests: the stream has caught up once nothing runs.
    this.canvas.dataset.running = String(
      runs.filter((run) => run.chunk.status === "running").length,
    );
  }

  create(lanes, datasets) {
    const tooltip = (item) => {
      const { chunk, x } = item.raw;
      return chunk.aggregated
        ? `${chunk.aggregated} chunks done, ${x[0].toFixed(1)}–${x[1].toFixed(1)} s`
        : this.label(chunk);
    };
    return new this.Chart(this.canvas, {
      type: "bar",
      data: { labels: lanes, datasets },
      options: {
        indexAxis: "y",
        animation: false,
        maintainAspectRatio: false,
        parsing: { xAxisKey: "x", yAxisKey: "y" },
        scales: {
          x: {
            type: "linear",
            min: 0,
            title: { display: true, text: "seconds since the job started" },
          },
        },
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: tooltip } } },
      },
    });
  }
}
