// Live overview: jobs, cluster processes, per-core CPU per node, throughput. The socket
// pushes the whole state once a second; rendering is coalesced to one frame.
"use strict";

(function () {
  const C = window.Coreboard;
  const $ = (id) => document.getElementById(id);
  let state = JSON.parse($("overview-initial").textContent);
  const cpuCharts = new Map();
  let throughputChart = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function jobLink(job) {
    return el("a", { href: `/jobs/${job.id}/`, text: `#${job.id} ${job.kind}` });
  }

  function progressBar(job) {
    const percent = Math.round(job.progress * 1000) / 10;
    const bar = el("div", {
      class: "progress small",
      role: "progressbar",
      "aria-label": `Job ${job.id} progress`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(percent),
    });
    const fill = el("div", { class: "progress-fill" });
    fill.style.width = percent + "%";
    bar.append(fill, el("span", { class: "progress-text", text: percent + "%" }));
    return bar;
  }

  function renderJobs() {
    const list = $("active-jobs");
    const more = state.active_more || 0;
    $("active-count").textContent = `(${state.active.length + more})`;
    if (!state.active.length) {
      list.replaceChildren(el("li", { class: "empty" }, "Nothing is running. ", el("a", { href: "/jobs/new/", text: "Start a job" }), "."));
    } else {
      list.replaceChildren(
        ...state.active.map((job) => {
          const pace = job.throughput === null
            ? "waiting for the first chunk"
            : `${job.throughput.toFixed(2)} chunks/s · ETA ${C.formatSeconds(job.eta_seconds)}`;
          return el(
            "li",
            { class: "job-card", "data-job-id": String(job.id) },
            el("div", { class: "job-card-head" }, jobLink(job), " ",
              el("span", { class: `status status-${job.status}`, text: job.status })),
            progressBar(job),
            el("div", { class: "counts", text: `${job.done_chunks}/${job.total_chunks} chunks · ${pace}` })
          );
        }),
        ...(more ? [el("li", { class: "empty" }, `and ${more} more (see `, el("a", { href: "/history/?status=running", text: "history" }), ")")] : [])
      );
    }
    $("recent-jobs").replaceChildren(
      ...state.recent.map((job) =>
        el("tr", { "data-job-id": String(job.id) },
          el("td", {}, jobLink(job)),
          el("td", {}, el("span", { class: `status status-${job.status}`, text: job.status })),
          el("td", { text: job.finished_at ? new Date(job.finished_at).toLocaleTimeString() : "—" }),
          el("td", { text: C.formatSeconds(job.wall_seconds) }),
          el("td", { text: job.speedup === null ? "—" : job.speedup.toFixed(2) + "×" }))
      )
    );
  }

  function renderProcesses() {
    const now = state.cluster.now;
    const rows = state.cluster.processes.map((p) => {
      const working = p.job_id === null ? el("td", { text: p.other ? "someone else's job" : "—" })
        : el("td", {}, el("a", { href: `/jobs/${p.job_id}/`, text: `job #${p.job_id}` }), ` chunk ${p.chunk_index}`);
      return el("tr", { class: `process-${p.state}` },
        el("td", { text: p.host }),
        el("td", { text: String(p.pid) }),
        el("td", { text: p.core === null ? "any" : String(p.core) }),
        el("td", {}, el("span", { class: `status proc-${p.state}`, text: p.state })),
        working,
        el("td", { text: p.state === "lost" ? `silent ${C.formatSeconds(now - p.last_seen)}` : C.formatSeconds(now - p.since) }));
    });
    $("processes").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "6", text: "No worker has reported yet." }))]));
  }

  function renderNodes() {
    const holder = $("nodes");
    for (const node of state.cluster.nodes) {
      let chart = cpuCharts.get(node.host);
      if (!chart) {
        const canvas = el("canvas", { role: "img", "aria-label": `CPU use per core on ${node.host}` });
        const box = el("div", { class: "node" }, el("h3", { text: node.host }), el("div", { class: "chart-box small" }, canvas));
        holder.append(box);
        chart = new Chart(canvas, {
          type: "bar",
          data: { labels: [], datasets: [{ label: "CPU %", data: [], backgroundColor: "#2457c5" }] },
          options: {
            animation: false, maintainAspectRatio: false,
            scales: { y: { min: 0, max: 100, title: { display: true, text: "% busy" } } },
            plugins: { legend: { display: false } },
          },
        });
        cpuCharts.set(node.host, chart);
      }
      chart.data.labels = node.cpus.map((_, i) => `core ${i}`);
      chart.data.datasets[0].data = node.cpus;
      chart.canvas.setAttribute("aria-label", `CPU use per core on ${node.host}: ` + node.cpus.map((v, i) => `core ${i} ${Math.round(v)}%`).join(", "));
      chart.update("none");
    }
  }

  const BUCKET_S = 5;

  function renderThroughput() {
    // Per-second counts are spiky; show the rate over 5-second buckets.
    const points = state.cluster.throughput;
    const labels = [];
    const values = [];
    for (let i = 0; i + BUCKET_S <= points.length; i += BUCKET_S) {
      const bucket = points.slice(i, i + BUCKET_S);
      labels.push(Math.round(bucket[BUCKET_S - 1][0] - state.cluster.now));
      values.push(bucket.reduce((sum, [, count]) => sum + count, 0) / BUCKET_S);
    }
    if (!throughputChart) {
      throughputChart = new Chart($("throughput-chart"), {
        type: "line",
        data: { labels, datasets: [{ label: "chunks/s", data: values, borderColor: "#1f8a4c", pointRadius: 0, tension: 0.2, fill: true, backgroundColor: "rgba(31,138,76,0.15)" }] },
        options: {
          animation: false, maintainAspectRatio: false,
          scales: {
            x: {
              ticks: {
                autoSkip: false, maxRotation: 0,
                callback: (_, i) => {
                  const ago = -throughputChart?.data.labels[i] ?? 0;
                  return i % 12 === 11 || i === 0 ? (ago < 5 ? "now" : `-${Math.round(ago / 60)} min`) : "";
                },
              },
            },
            y: { beginAtZero: true, title: { display: true, text: "chunks/s" } },
          },
          plugins: { legend: { display: false } },
        },
      });
    } else {
      throughputChart.data.labels = labels;
      throughputChart.data.datasets[0].data = values;
      throughputChart.update("none");
    }
    const lastMinute = points.slice(-60).reduce((sum, [, count]) => sum + count, 0);
    $("throughput-summary").textContent = `${lastMinute} chunks in the last minute (${(lastMinute / 60).toFixed(2)}/s)`;
  }

  function render() {
    renderJobs();
    renderProcesses();
    renderNodes();
    renderThroughput();
  }

  const scheduleRender = C.coalesced(render);
  render();
  C.liveSocket("/ws/overview/", {
    status: $("connection"),
    onMessage(message) {
      if (message.type !== "overview.state") return;
      state = message;
      scheduleRender();
    },
  });
})();
