// The live overview's DOM: jobs, cluster processes, per-core CPU per node, throughput, as
// overview_state.mjs works them out. Lists are keyed and updated in place (a focused link
// keeps its focus); rendering is coalesced to one frame.
import { chartDefaultsApply, cssColour, translucent } from "../lib/colours.mjs";
import {
  byId as $,
  coalesced,
  el,
  pageJson,
  setClass,
  setProgress,
  setStatusBadge,
  setText,
  setTime,
  syncChildren,
  timeElement,
} from "../lib/dom.mjs";
import { formatFixed, formatSeconds } from "../lib/format.mjs";
import { liveSocket } from "../lib/live.mjs";
import { urlFill } from "../lib/urls.mjs";
import {
  NODE_FACTS,
  activeSummary,
  jobCardText,
  jobPercent,
  priorityText,
  nodeControl,
  nodeCpuLabel,
  nodeLoadNote,
  nodeStateText,
  nodeWarning,
  overviewMessageApply,
  processForText,
  processKey,
  processWork,
  throughputBuckets,
  throughputSummary,
  throughputTick,
} from "./overview_state.mjs";

const Chart = globalThis.Chart;
chartDefaultsApply(Chart);
const COLOURS = {
  cpu: cssColour("--accent"),
  // A lost node's last sample stays, greyed out: it is not a live reading.
  cpuLost: cssColour("--idle"),
  throughput: cssColour("--ok"),
};
const jobUrlTemplate = $("overview").dataset.jobUrl;
const jobUrl = (id) => urlFill(jobUrlTemplate, { id });
let state = pageJson("overview-initial");
const kindLabels = pageJson("kind-labels") || {};
const cpuCharts = new Map();
let throughputChart = null;

function jobLink(job) {
  return el("a", { href: jobUrl(job.id), text: `#${job.id} ${kindLabels[job.kind] ?? job.kind}` });
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

function cardCreate(job) {
  return el(
    "li",
    { class: "job-card", "data-job-id": String(job.id) },
    el(
      "div",
      { class: "job-card-head" },
      jobLink(job),
      " ",
      el("span", { class: "status" }),
      " ",
      el("span", { class: "priority" }),
    ),
    progressRow(job),
    el("div", { class: "counts" }),
  );
}

function cardUpdate(card, job) {
  setStatusBadge(card.querySelector(".status"), job.status);
  const priority = card.querySelector(".priority");
  setText(priority, priorityText(job));
  priority.hidden = !priorityText(job);
  priority.className = `priority priority-${job.priority}`;
  const row = card.querySelector(".progress-row");
  setProgress(
    row.querySelector(".progress"),
    row.querySelector(".progress-text"),
    jobPercent(job),
    job.status,
  );
  setText(card.querySelector(".counts"), jobCardText(job));
}

function recentCreate(job) {
  return el(
    "tr",
    { "data-job-id": String(job.id) },
    el("td", {}, jobLink(job)),
    el("td", {}, el("span", { class: "status" })),
    el("td", {}, timeElement(job.finished_at)),
    el("td", { class: "wall" }),
    el("td", { class: "speedup" }),
  );
}

function recentUpdate(row, job) {
  setStatusBadge(row.querySelector(".status"), job.status);
  setTime(row.querySelector("time"), job.finished_at);
  setText(row.querySelector(".wall"), formatSeconds(job.wall_seconds));
  setText(row.querySelector(".speedup"), formatFixed(job.speedup, 2, "×"));
}

function jobsRender() {
  const summary = activeSummary(state);
  setText($("active-count"), summary.count);
  $("active-more").hidden = !summary.more;
  setText($("active-more"), summary.more);
  $("active-empty").hidden = !summary.empty;
  syncChildren($("active-jobs"), state.active, (job) => job.id, cardCreate, cardUpdate);
  syncChildren($("recent-jobs"), state.recent, (job) => job.id, recentCreate, recentUpdate);
  $("recent-empty").hidden = state.recent.length > 0;
}

function processCreate(process) {
  return el(
    "tr",
    {},
    el("td", { text: process.node || process.host }),
    el("td", { text: String(process.pid) }),
    el("td", { class: "core" }),
    el("td", {}, el("span", { class: "status" })),
    el("td", { class: "working" }),
    el("td", { class: "for" }),
  );
}

function processUpdate(row, process) {
  setClass(row, `process-${process.state}`);
  const core = process.core === null || process.core === undefined ? "any" : String(process.core);
  setText(row.querySelector(".core"), core);
  setStatusBadge(row.querySelector(".status"), process.state, "proc");
  const working = row.querySelector(".working");
  const work = processWork(process);
  if (work.key && working.dataset.key !== work.key) {
    working.replaceChildren(
      el("a", { href: jobUrl(work.jobId), text: `job #${work.jobId}` }),
      ` chunk ${process.chunk_index}`,
    );
  } else if (!work.key) {
    setText(working, work.text);
  }
  working.dataset.key = work.key;
  setText(row.querySelector(".for"), processForText(process, state.cluster.now));
}

function processesRender() {
  const processes = state.cluster.processes;
  syncChildren($("processes"), processes, processKey, processCreate, processUpdate);
  $("processes-empty").hidden = processes.length > 0;
}

function nodeCreate(node) {
  const info = el("dl", { class: "node-info" });
  for (const [label] of NODE_FACTS) info.append(el("dt", { text: label }), el("dd", {}));
  const canvas = el("canvas", { role: "img" });
  const card = el(
    "div",
    { class: "node" },
    el(
      "div",
      { class: "node-head" },
      el("h3", { text: node.node }),
      el("span", { class: "status node-state" }),
    ),
    info,
    el("p", { class: "node-warning" }),
    el("div", { class: "chart-box small" }, canvas),
    el("p", { class: "legend node-load" }),
  );
  const template = $("node-control-template");
  if (template) {
    const form = template.content.firstElementChild.cloneNode(true);
    form.querySelector("[name=node]").value = node.node;
    form.addEventListener("submit", nodeControlSubmit);
    card.append(form);
  }
  cpuCharts.set(
    node.node,
    new Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [{ label: "CPU %", data: [], backgroundColor: COLOURS.cpu }] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { min: 0, max: 100, title: { display: true, text: "% busy (machine)" } } },
        plugins: { legend: { display: false } },
      },
    }),
  );
  return card;
}

function nodeUpdate(card, node) {
  const now = state.cluster.now;
  setClass(card, `node node-${node.state}`);
  const badge = card.querySelector(".node-state");
  setText(badge, nodeStateText(node, now));
  setClass(badge, `status node-state node-state-${node.state}`);
  const values = card.querySelectorAll(".node-info dd");
  NODE_FACTS.forEach(([, text], i) => setText(values[i], text(node, now)));
  const warning = card.querySelector(".node-warning");
  const text = nodeWarning(node, state.cluster.web);
  setText(warning, text);
  warning.hidden = !text;
  const form = card.querySelector(".node-control");
  if (form) {
    const control = nodeControl(node);
    form.querySelector("[name=action]").value = control.action;
    const button = form.querySelector("button");
    setText(button, control.text);
    button.setAttribute("aria-label", control.label);
    form.hidden = control.hidden;
  }
  const chart = cpuCharts.get(node.node);
  chart.data.labels = node.cpus.map((_, i) => `core ${i}`);
  chart.data.datasets[0].data = node.cpus;
  chart.data.datasets[0].backgroundColor = node.state === "lost" ? COLOURS.cpuLost : COLOURS.cpu;
  chart.canvas.setAttribute("aria-label", nodeCpuLabel(node));
  setText(card.querySelector(".node-load"), nodeLoadNote(node));
  chart.update("none");
}

function nodesRender() {
  const nodes = state.cluster.nodes;
  syncChildren($("nodes"), nodes, (node) => node.node, nodeCreate, nodeUpdate);
  const present = new Set(nodes.map((node) => node.node));
  for (const [name, chart] of cpuCharts) {
    if (!present.has(name)) {
      chart.destroy();
      cpuCharts.delete(name);
    }
  }
  $("nodes-empty").hidden = nodes.length > 0;
  const web = state.cluster.web;
  if (web) {
    setText(
      $("cluster-web"),
      `This web server: code ${web.code_version}, kinds ${web.kinds.join(", ")}.`,
    );
  }
}

// Drain / resume without leaving the page: the answer is announced politely and focus stays
// on the button (which now offers the opposite action).
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
    else
      status.textContent = body.message || `Could not change the node (HTTP ${response.status}).`;
  } catch {
    status.textContent = "Could not reach the server; try again.";
  } finally {
    delete form.dataset.pending;
  }
}

function throughputRender() {
  const points = state.cluster.throughput;
  const { labels, values } = throughputBuckets(points, state.cluster.now);
  if (!throughputChart) {
    throughputChart = new Chart($("throughput-chart"), {
      type: "line",
      data: {
        labels,
        datasets: [
          {
            label: "chunks/s",
            data: values,
            borderColor: COLOURS.throughput,
            backgroundColor: translucent(COLOURS.throughput, 0.15),
            pointRadius: 0,
            tension: 0.2,
            fill: true,
          },
        ],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: {
            ticks: {
              autoSkip: false,
              maxRotation: 0,
              callback(value, index) {
                return throughputTick(this.getLabelForValue(value), index);
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
  setText($("throughput-summary"), throughputSummary(points));
}

function render() {
  jobsRender();
  processesRender();
  nodesRender();
  throughputRender();
}

const renderSchedule = coalesced(render);
render();
const connection = $("connection");
liveSocket(connection.dataset.socketUrl, {
  status: connection,
  onMessage(message) {
    state = overviewMessageApply(state, message);
    renderSchedule();
  },
});
