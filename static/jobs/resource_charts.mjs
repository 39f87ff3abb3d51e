// The job page's CPU and memory timeline: two Chart.js line charts (the page's global
// `Chart`, from node_modules), one line per worker process in each, from the series that
// resources_state.mjs works out. A process keeps its colour and dash in both charts, so the
// lines differ without colour too.

const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];

export class ResourceCharts {
  // colours: the series colours, in order (CSS values).
  constructor(cpuCanvas, memoryCanvas, { Chart, colours }) {
    this.canvases = { cpu: cpuCanvas, rss: memoryCanvas };
    this.Chart = Chart;
    this.colours = colours.filter(Boolean);
    this.charts = {};
    // A process's style is fixed when it first appears, so lines never swap colours.
    this.styles = new Map();
  }

  style(key) {
    if (!this.styles.has(key)) {
      const n = this.styles.size;
      const colours = this.colours.length ? this.colours : ["#2457c5"];
      this.styles.set(key, {
        colour: colours[n % colours.length],
        dash: DASHES[Math.floor(n / colours.length) % DASHES.length],
      });
    }
    return this.styles.get(key);
  }

  update(series) {
    // CPU is read against one full core (100 %) even while a process idles.
    for (const [field, title, suggestedMax] of [
      ["cpu", "CPU (% of one core)", 100],
      ["rss", "Resident memory (MiB)", undefined],
    ]) {
      const datasets = series.map((process) => {
        const { colour, dash } = this.style(process.key);
        return {
          label: process.label,
          data: process[field],
          borderColor: colour,
          backgroundColor: colour,
          borderDash: dash,
          borderWidth: 1.5,
          // Points while there are few, so that a first sample shows at all.
          pointRadius: process[field].length < 30 ? 2 : 0,
          tension: 0,
        };
      });
      const chart = this.charts[field];
      if (!chart) {
        this.charts[field] = this.create(this.canvases[field], datasets, title, suggestedMax);
      } else {
        chart.data.datasets = datasets;
        chart.update("none");
      }
    }
  }

  create(canvas, datasets, title, suggestedMax) {
    return new this.Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            min: 0,
            title: { display: true, text: "seconds since the job started" },
          },
          y: { beginAtZero: true, suggestedMax, title: { display: true, text: title } },
        },
        plugins: { legend: { labels: { boxHeight: 2 } } },
      },
    });
  }
}
