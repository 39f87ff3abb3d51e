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

  function progressRow(job) {
    const bar = el("div", {
      class: "progress small",
      role: "progressbar",
      "aria-label": `Job ${job.id} progress`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
    });
    bar.append(el("div", { class: "progress-fill" }));
    return el("div", { class: "progress-row small" }, bar, el("span", { class: "progress-text" }));
  }

  function updateProgress(row, job) {
    const percent = Math.round(job.progress * 1000) / 10;
    const bar = row.querySelector(".progress");
    if (bar.getAttribute("aria-valuenow") !== String(percent)) {
      bar.setAttribute("aria-valuenow", String(percent));
      bar.querySelector(".progress-fill").style.width = percent + "%";
    }
    bar.dataset.status = job.status;
    C.setText(row.querySelector(".progress-text"), percent + "%");
  }

  function updateStatus(badge, status) {
    C.setText(badge, status);
    const className = `status status-${status}`;
    if (badge.className !== className) badge.className = className;
  }

  // Rows are keyed by job id and updated in place: a focused link keeps its focus.
  function createCard(job) {
    return el(
      "li",
      { class: "job-card", "data-job-id": String(job.id) },
      el("div", { class: "job-card-head" },
        el("a", { href: `/jobs/${job.id}/`, text: `#${job.id} ${job.kind}` }), " ",
        el("span", { class: "status" })),
      progressRow(job),
      el("div", { class: "counts" })
    );
  }

  function updateCard(card, job) {
    updateStatus(card.querySelector(".status"), job.status);
    updateProgress(card.querySelector(".progress-row"), job);
    // `waiting` (from the server) says why a job makes no progress, in place of an ETA.
    const pace = job.waiting ? job.waiting.text
      : job.throughput === null || job.throughput === undefined || job.eta_seconds === null
        ? "waiting for the first chunk"
        : `${job.throughput.toFixed(2)} chunks/s · ETA ${C.formatSeconds(job.eta_seconds)}`;
    C.setText(card.querySelector(".counts"), `${job.done_chunks}/${job.total_chunks} chunks · ${pace}`);
  }

  function createRecent(job) {
    return el("tr", { "data-job-id": String(job.id) },
      el("td", {}, el("a", { href: `/jobs/${job.id}/`, text: `#${job.id} ${job.kind}` })),
      el("td", {}, el("span", { class: "status" })),
      el("td", {}, C.timeElement(job.finished_at)),
      el("td", { class: "wall" }),
      el("td", { class: "speedup" }));
  }

  function updateRecent(row, job) {
    updateStatus(row.querySelector(".status"), job.status);
    C.setTime(row.querySelector("time"), job.finished_at);
    C.setText(row.querySelector(".wall"), C.formatSeconds(job.wall_seconds));
    C.setText(row.querySelector(".speedup"), job.speedup === null ? "—" : job.speedup.toFixed(2) + "×");
  }

  function renderJobs() {
    const list = $("active-jobs");
    // The server caps the list it sends; `active_more` counts the jobs left out.
    const more = Number(state.active_more) || 0;
    $("active-count").textContent = `(${state.active.length + more})`;
    const moreNote = $("active-more");
    moreNote.hidden = more === 0;
    moreNote.textContent = more ? `and ${more} more` : "";
    $("active-empty").hidden = state.active.length + more > 0;
    C.syncChildren(list, state.active, (job) => job.id, createCard, updateCard);
    C.syncChildren($("recent-jobs"), state.recent, (job) => job.id, createRecent, updateRecent);
    $("recent-empty").hidden = state.recent.length > 0;
  }

  // A process is its node, pid and boot: two machines may share a host name.
  function processKey(p) {
    return p.id || `${p.node}|${p.pid}`;
  }

  function createProcess(p) {
    return el("tr", {},
      el("td", { text: p.node || p.host }),
      el("td", { text: String(p.pid) }),
      el("td", { class: "core" }),
      el("td", {}, el("span", { class: "status" })),
      el("td", { class: "working" }),
      el("td", { class: "for" }));
  }

  function updateProcess(row, p) {
    const now = state.cluster.now;
    row.className = `process-${p.state}`;
    C.setText(row.querySelector(".core"), p.core === null || p.core === undefined ? "any" : String(p.core));
    const badge = row.querySelector(".status");
    C.setText(badge, p.state);
    badge.className = `status proc-${p.state}`;
    // Another person's job has no id here: the row says the process is busy, not with what.
    const working = row.querySelector(".working");
    const key = p.job_id === null || p.job_id === undefined ? "" : `${p.job_id}|${p.chunk_index}`;
    if (working.dataset.key !== key) {
      working.dataset.key = key;
      if (key) {
        working.replaceChildren(el("a", { href: `/jobs/${p.job_id}/`, text: `job #${p.job_id}` }), ` chunk ${p.chunk_index}`);
      } else {
        working.textContent = p.state === "busy" ? "another job" : "—";
      }
    } else if (!key) {
      C.setText(working, p.state === "busy" ? "another job" : "—");
    }
    C.setText(row.querySelector(".for"),
      p.state === "lost" ? `silent ${C.formatSeconds(now - p.last_seen)}` : C.formatSeconds(now - p.since));
  }

  function renderProcesses() {
    const processes = state.cluster.processes;
    C.syncChildren($("processes"), processes, processKey, createProcess, updateProcess);
    $("processes-empty").hidden = processes.length > 0;
  }

  // --- nodes: one card each, keyed by Celery node name; gone nodes leave the page ---------

  const NODE_STATES = {
    active: "active",
    draining: "draining (finishing its chunks)",
    drained: "drained (takes no work)",
    stopping: "stopping",
    lost: "lost",
  };
  const INFO_ROWS = [
    ["Host", (n) => n.host],
    ["Up for", (n) => (n.started ? C.formatSeconds(state.cluster.now - n.started) : "—")],
    ["Processes", (n) => (n.concurrency ? String(n.concurrency) : "—")],
    ["Queues", (n) => (n.queues || []).join(", ") || "—"],
    ["Labels", (n) => (n.labels || []).join(", ") || "—"],
    ["Kinds", (n) => (n.kinds || []).join(", ") || "—"],
    ["Code", (n) => n.code_version],
    ["Coreboard", (n) => n.coreboard_version],
    ["Python", (n) => n.python_version],
  ];

  function createNode(node) {
    const info = el("dl", { class: "node-info" });
    for (const [label] of INFO_ROWS) info.append(el("dt", { text: label }), el("dd", {}));
    const canvas = el("canvas", { role: "img" });
    const card = el("div", { class: "node" },
      el("div", { class: "node-head" }, el("h3", { text: node.node }), el("span", { class: "status node-state" })),
      info,
      el("p", { class: "node-warning" }),
      el("div", { class: "chart-box small" }, canvas));
    const template = $("node-control-template");
    if (template) {
      const form = template.content.firstElementChild.cloneNode(true);
      form.querySelector("[name=node]").value = node.node;
      form.addEventListener("submit", nodeControlSubmit);
      card.append(form);
    }
    cpuCharts.set(node.node, new Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [{ label: "CPU %", data: [], backgroundColor: "#4a78d8" }] },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: { y: { min: 0, max: 100, title: { display: true, text: "% busy" } } },
        plugins: { legend: { display: false } },
      },
    }));
    return card;
  }

  function kindWarning(node) {
    const parts = [];
    if (node.missing_kinds && node.missing_kinds.length) parts.push(`missing kinds: ${node.missing_kinds.join(", ")}`);
    if (node.extra_kinds && node.extra_kinds.length) parts.push(`extra kinds: ${node.extra_kinds.join(", ")}`);
    const web = state.cluster.web;
    if (web && node.code_version !== web.code_version) parts.push(`code ${node.code_version} differs from the web's ${web.code_version}`);
    return parts.length ? `Differs from the web machine: ${parts.join("; ")}.` : "";
  }

  function updateNode(card, node) {
    const lost = node.state === "lost";
    const stateClass = `node node-${node.state}`;
    if (card.className !== stateClass) card.className = stateClass;
    const badge = card.querySelector(".node-state");
    const label = lost ? `lost (silent ${C.formatSeconds(state.cluster.now - node.last_seen)})` : NODE_STATES[node.state] || node.state;
    C.setText(badge, label);
    badge.className = `status node-state node-state-${node.state}`;
    const values = card.querySelectorAll(".node-info dd");
    INFO_ROWS.forEach(([, value], i) => C.setText(values[i], value(node)));
    const warning = card.querySelector(".node-warning");
    const text = kindWarning(node);
    C.setText(warning, text);
    warning.hidden = !text;
    const form = card.querySelector(".node-control");
    if (form) {
      const action = node.draining ? "resume" : "drain";
      form.querySelector("[name=action]").value = action;
      const button = form.querySelector("button");
      C.setText(button, action === "drain" ? "Drain" : "Resume");
      button.setAttribute("aria-label", `${action === "drain" ? "Drain" : "Resume"} node ${node.node}`);
      form.hidden = lost || node.state === "stopping";
    }
    const chart = cpuCharts.get(node.node);
    chart.data.labels = node.cpus.map((_, i) => `core ${i}`);
    chart.data.datasets[0].data = node.cpus;
    // A lost node's last sample stays, greyed out: it is not a live reading.
    chart.data.datasets[0].backgroundColor = lost ? "#9aa0a6" : "#4a78d8";
    const what = lost ? `Last CPU use per core on ${node.node} before it was lost` : `CPU use per core on ${node.node}`;
    chart.canvas.setAttribute("aria-label", `${what}: ` + node.cpus.map((v, i) => `core ${i} ${Math.round(v)}%`).join(", "));
    chart.update("none");
  }

  function renderNodes() {
    const nodes = state.cluster.nodes;
    C.syncChildren($("nodes"), nodes, (node) => node.node, createNode, updateNode);
    const present = new Set(nodes.map((node) => node.node));
    for (const [name, chart] of cpuCharts) {
      if (!present.has(name)) {
        chart.destroy();
        cpuCharts.delete(name);
      }
    }
    $("nodes-empty").hidden = nodes.length > 0;
    const web = state.cluster.web;
    if (web) C.setText($("cluster-web"), `This web server: code ${web.code_version}, kinds ${web.kinds.join(", ")}.`);
  }

  // Drain / resume without leaving the page: the answer is announced politely and focus
  // stays on the button (which now offers the opposite action).
  async function nodeControlSubmit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    if (form.dataset.pending) return;
    form.dataset.pending = "1";
    const status = $("node-status");
    try {
      // Not form.action: the input named "action" shadows that property.
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) status.textContent = body.message;
      else if (response.status === 403) status.textContent = "Only staff can drain or resume nodes.";
      else status.textContent = body.message || `Could not change the node (HTTP ${response.status}).`;
    } catch (error) {
      status.textContent = "Could not reach the server; try again.";
    } finally {
      delete form.dataset.pending;
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
