// Compare chosen jobs: a histogram of each job's chunk times on shared bins, and each job's
// task stream (task_stream.mjs, as on the job page). The data comes from the page
// (json_script); the tables hold the same figures.
import { chartDefaultsApply, cssColour } from "../lib/colours.mjs";
import { byId, pageJson } from "../lib/dom.mjs";
import { binLabel, histogramSeries } from "./compare_runs_state.mjs";
import { chunkLabel } from "./job_state.mjs";
import { TaskStream, streamColours } from "./task_stream.mjs";

const runs = pageJson("compare-runs-data") || [];
const streams = pageJson("compare-streams") || [];
const histogram = pageJson("compare-histogram");
const Chart = globalThis.Chart;
// One colour per job (repeating past six); the legend and the quantile table name them.
const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--queued", "--idle"];

if (Chart) {
  chartDefaultsApply(Chart);
  const canvas = byId("chunk-times-chart");
  if (histogram && canvas) {
    const labels = histogram.edges.slice(0, -1).map((_, i) => binLabel(histogram.edges, i));
    new Chart(canvas, {
      type: "bar",
      data: {
        labels,
        datasets: histogramSeries(histogram, runs).map((counts, i) => {
          const colour = cssColour(PALETTE[i % PALETTE.length]);
          return {
            label: `#${runs[i].id}`,
            data: counts,
            backgroundColor: colour,
            borderColor: colour,
          };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { title: { display: true, text: "Chunk time" } },
          y: { beginAtZero: true, title: { display: true, text: "Chunks" } },
        },
      },
    });
  }
  const colours = streamColours();
  for (const stream of streams) {
    const streamCanvas = byId(`stream-${stream.id}`);
    if (!streamCanvas) continue;
    new TaskStream(streamCanvas, { Chart, colours, label: chunkLabel }).update(
      stream.job,
      stream.chunks,
    );
  }
}
