// The live job page's DOM: draws the state kept by job_state.mjs (with the chunks' output,
// output_state.mjs, and the CPU/memory samples, resources_state.mjs), which the socket's
// messages and the API's answers change; the task stream is task_stream.mjs, the CPU and
// memory charts resource_charts.mjs. Rendering is coalesced to one frame.
import { chartDefaultsApply, cssColour, translucent } from "../lib/colours.mjs";
import {
  byId as $,
  el,
  coalesced,
  localiseTimes,
  pageJson,
  setClass,
  setProgress,
  setText,
  syncChildren,
} from "../lib/dom.mjs";
import { formatBytes, formatTime } from "../lib/format.mjs";
import { liveSocket } from "../lib/live.mjs";
import { urlFill } from "../lib/urls.mjs";
import {
  JOB_ACTIVE,
  JOB_ENDED,
  chunkInspectorRows,
  chunkLabel,
  countsText,
  documentTitle,
  doneChunks,
  dirtyTake,
  failingChunks,
  failureSummary,
  jobActions,
  jobStateCreate,
  messageApply,
  paceText,
  parallelismText,
  progressPercent,
  speedupMeter,
  timingRows,
} from "./job_state.mjs";
import {
  atBottom,
  outputAnswerApply,
  outputBlocks,
  outputCutText,
  outputDirtyTake,
  outputDrawPlan,
  outputHeading,
  outputJobAnswerApply,
} from "./output_state.mjs";
import { resourcesRows, resourcesSeries, resourcesSummaryText } from "./resources_state.mjs";
import { ResourceCharts } from "./resource_charts.mjs";
import { TaskStream } from "./task_stream.mjs";

const state = jobStateCreate(pageJson("job-snapshot"));
const notificationsAvailable = "Notification" in window;
// The status this page last rendered: a change from active to ended is the job ending while
// somebody watches (announced once, maybe notified); loading an ended job is not.
let shownStatus = state.job.status;
let notifyWanted = false;

// The element of each action jobActions() decides about.
const ACTION_ELEMENTS = {
  cancel: "cancel-form",
  notify: "notify-button",
  retry: "retry-form",
  delete: "delete-link",
  rerun: "rerun-link",
};

function render() {
  const { job } = state;
  const percent = progressPercent(state);
  setProgress(
    $("progress"),
    document.querySelector(".progress-row .progress-text"),
    percent,
    job.status,
  );
  const status = $("job-status");
  setText(status, job.status);
  setClass(status, `status status-${job.status}`);
  actionsRender();
  endingRender(percent);
  setText($("counts"), countsText(state));
  gridRender();
  inspectorRender();
  outputRender();
  setText($("pace"), paceText(state));
  heldRender();
  setText($("parallelism-value"), parallelismText(state));
  timingsRender();
  heavyRender();
  previewRender();
  summaryRender();
  $("error-section").hidden = !job.error;
  setText($("error"), job.error || "");
}

// The one place that shows and hides the job's actions, as jobActions() says. A control
// that has focus stays until focus leaves it (#job-actions' focusout draws again): a live
// update never takes focus away.
function actionsRender() {
  const actions = jobActions(state.job.status);
  for (const [action, id] of Object.entries(ACTION_ELEMENTS)) {
    const node = $(id);
    const shown = actions[action] && (action !== "notify" || notificationsAvailable);
    if (!shown && node.contains(document.activeElement)) continue;
    node.hidden = !shown;
  }
}

function endingRender(percent) {
  const { job } = state;
  document.title = documentTitle(job, percent);
  if (job.status !== shownStatus) {
    // A message from the last action ("retrying what failed") is stale once the job has
    // moved on.
    for (const message of document.querySelectorAll("main > .message")) message.hidden = true;
  }
  if (JOB_ENDED.has(job.status) && JOB_ACTIVE.has(shownStatus)) {
    $("job-announcer").textContent = `Job ${job.id} ${job.status}.`;
    if (notifyWanted && notificationsAvailable && Notification.permission === "granted") {
      const kind = document.querySelector("h1 small").textContent;
      new Notification(`Job ${job.id} ${job.status}`, {
        body: `${kind}: ${$("counts").textContent}`,
        tag: `coreboard-job-${job.id}`,
      });
    }
  }
  shownStatus = job.status;
}

// Opt-in: a browser notification when this job ends (asked for on a click, never on load).
function notifyButtonSetUp() {
  const button = $("notify-button");
  if (!notificationsAvailable) return;
  button.addEventListener("click", async () => {
    if (notifyWanted) {
      notifyWanted = false;
    } else {
      const permission =
        Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
      notifyWanted = permission === "granted";
      if (permission === "denied") button.textContent = "Notifications are blocked for this site";
    }
    button.setAttribute("aria-pressed", String(notifyWanted));
    if (Notification.permission !== "denied") {
      button.textContent = notifyWanted
        ? "You will be notified when it ends"
        : "Notify me when it ends";
    }
  });
}

// The result and the speedup notes are rendered by the server (one template for the page
// and this fragment); fetched once per ended version of the job.
function summaryRender() {
  const { job } = state;
  const holder = $("job-summary");
  if (!JOB_ENDED.has(job.status) || holder.dataset.version === String(job.version)) return;
  holder.dataset.version = String(job.version);
  const version = String(job.version);
  fetch(holder.dataset.url, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then((response) => (response.ok ? response.text() : null))
    .then((html) => {
      if (html === null || version !== holder.dataset.version) return;
      holder.innerHTML = html;
      localiseTimes(holder);
    })
    .catch(() => {
      holder.dataset.version = "";
    });
}

// The grid is one widget (a listbox): one Tab stop, arrow keys, Home and End move between
// chunks (a roving tabindex), and each chunk's name is its details. Cells are indexed by
// chunk index; only chunks that changed since the last frame are touched, so a
// 10,000-chunk grid costs nothing between events.
let activeCell = 0;

function gridRender() {
  const { job } = state;
  $("job-actions").addEventListener("focusout", () => renderSchedule());
  const grid = $("chunk-grid");
  if (grid.children.length !== job.total_chunks) {
    const cells = [];
    for (let i = 0; i < job.total_chunks; i++) {
      const cell = document.createElement("span");
      cell.className = "cell chunk-pending";
      cell.setAttribute("aria-label", `Chunk ${i}: pending`);
      cell.setAttribute("role", "option");
      cell.setAttribute("aria-selected", "false");
      cell.tabIndex = -1;
      cell.dataset.index = String(i);
      cells.push(cell);
    }
    grid.replaceChildren(...cells);
    activeCell = Math.min(activeCell, Math.max(0, cells.length - 1));
    if (cells.length) {
      cells[activeCell].tabIndex = 0;
      cells[activeCell].setAttribute("aria-selected", "true");
    }
    state.dirty = null;
  }
  const dirty = dirtyTake(state);
  const todo =
    dirty === null
      ? state.chunks.values()
      : [...dirty].map((index) => state.chunks.get(index)).filter(Boolean);
  for (const chunk of todo) {
    const cell = grid.children[chunk.index];
    if (!cell) continue;
    setClass(cell, `cell chunk-${chunk.status}${chunk.attempts > 1 ? " retried" : ""}`);
    const label = chunkLabel(chunk);
    if (cell.getAttribute("aria-label") !== label) {
      cell.title = label;
      cell.setAttribute("aria-label", label);
      if (Number(cell.dataset.index) === activeCell && cell.contains(document.activeElement)) {
        setText($("chunk-details"), label);
      }
    }
  }
}

function gridColumns(grid) {
  const first = grid.children[0];
  if (!first) return 1;
  let n = 0;
  for (const cell of grid.children) {
    if (cell.offsetTop !== first.offsetTop) break;
    n++;
  }
  return Math.max(1, n);
}

function gridMoveTo(index) {
  const cells = $("chunk-grid").children;
  if (!cells.length) return;
  const target = Math.max(0, Math.min(cells.length - 1, index));
  const previous = cells[activeCell];
  if (previous) {
    previous.tabIndex = -1;
    previous.setAttribute("aria-selected", "false");
  }
  activeCell = target;
  cells[target].tabIndex = 0;
  cells[target].setAttribute("aria-selected", "true");
  cells[target].focus();
  renderSchedule();
}

function gridKeyDown(event) {
  $("job-actions").addEventListener("focusout", () => renderSchedule());
  const grid = $("chunk-grid");
  const columns = gridColumns(grid);
  const steps = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
  if (event.key in steps) gridMoveTo(activeCell + steps[event.key]);
  else if (event.key === "Home") gridMoveTo(0);
  else if (event.key === "End") gridMoveTo(grid.children.length - 1);
  else return;
  event.preventDefault();
}

function gridClick(event) {
  const cell = event.target.closest(".cell");
  if (cell) gridMoveTo(Number(cell.dataset.index));
}

function chunkDetailsShow(event) {
  const cell = event.target.closest(".cell");
  if (!cell) return;
  const chunk = state.chunks.get(Number(cell.dataset.index));
  if (chunk) setText($("chunk-details"), chunkLabel(chunk));
}

// --- output: the Output panel and the chunk inspector -----------------------------------------

// The API, as the page names it (the view reverses the URLs); answers null when it refuses.
async function apiGet(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  return response.ok ? response.json() : null;
}

// Blocks the panel shows at most: the chunks that began to write last.
const OUTPUT_PANEL_BLOCKS = 50;
const outputSection = $("output-section");
const inspector = $("chunk-inspector");
const chunkOutputFetching = new Set();

function outputLoad() {
  apiGet(outputSection.dataset.url)
    .then((answer) => {
      if (answer === null) return;
      outputJobAnswerApply(state.output, answer);
      renderSchedule();
    })
    .catch(() => {});
}

function chunkOutputFetch(index) {
  if (chunkOutputFetching.has(index)) return;
  chunkOutputFetching.add(index);
  apiGet(urlFill(inspector.dataset.urlTemplate, { index }))
    .then((answer) => {
      if (answer === null) return;
      outputAnswerApply(state.output, answer);
      renderSchedule();
    })
    .catch(() => {})
    .finally(() => chunkOutputFetching.delete(index));
}

// What each <pre> shows of its block ({start, length}): new output is appended as a text
// node, never parsed as HTML, and a reader's selection in the older text stays.
const drawn = new WeakMap();

function preDraw(pre, block) {
  const plan = outputDrawPlan(block, drawn.get(pre));
  if (plan.action === "append") pre.append(plan.text);
  else if (plan.action === "replace") pre.textContent = plan.text;
  drawn.set(pre, { start: block.start, length: block.text.length });
}

function cutDraw(node, block) {
  const text = outputCutText(block);
  setText(node, text);
  node.hidden = text === "";
}

function outputRender() {
  const panel = $("output");
  const following = atBottom(panel.scrollTop, panel.clientHeight, panel.scrollHeight);
  outputDirtyTake(state.output);
  const blocks = outputBlocks(state.output, OUTPUT_PANEL_BLOCKS);
  $("output-empty").hidden = blocks.length > 0;
  syncChildren(
    $("output-blocks"),
    blocks,
    (block) => block.index,
    () => {
      const node = document.createElement("div");
      node.className = "output-block";
      const cut = document.createElement("p");
      cut.className = "output-cut";
      const pre = document.createElement("pre");
      pre.className = "output-text";
      node.append(document.createElement("h3"), cut, pre);
      return node;
    },
    (node, block) => {
      setText(node.querySelector("h3"), outputHeading(block, state.chunks.get(block.index)));
      if (node.dataset.version === String(block.version)) return;
      node.dataset.version = String(block.version);
      cutDraw(node.querySelector(".output-cut"), block);
      preDraw(node.querySelector("pre"), block);
    },
  );
  // Follows new output only for a reader at the bottom; never moves focus.
  if (following) panel.scrollTop = panel.scrollHeight;
}

// The chosen chunk: the grid's active cell. Its output is fetched when the page lacks it
// (a chunk that wrote before the page opened, or one dropped to keep the page small), once
// per choice; `chunk.output` messages keep it current after that.
let inspectorAsked = null;

function inspectorRender() {
  const index = activeCell;
  const chunk = state.chunks.get(index) || { index, status: "pending", attempts: 0 };
  setText($("inspector-index"), String(index));
  const block = state.output.blocks.get(index);
  const rows = chunkInspectorRows(chunk, block);
  const dl = $("inspector-figures");
  if (dl.children.length !== rows.length * 2) {
    dl.replaceChildren(
      ...rows.flatMap(([term]) => [
        Object.assign(document.createElement("dt"), { textContent: term }),
        document.createElement("dd"),
      ]),
    );
  }
  rows.forEach(([, value], i) => setText(dl.children[i * 2 + 1], value));
  const asked = `${state.job.id}:${index}`;
  if (!block && chunk.output_bytes > 0 && inspectorAsked !== asked) {
    inspectorAsked = asked;
    chunkOutputFetch(index);
  }
  const pre = $("inspector-output");
  $("inspector-no-output").hidden = Boolean(block);
  pre.hidden = !block;
  if (!block) {
    $("inspector-cut").hidden = true;
    return;
  }
  if (pre.dataset.index !== String(index)) {
    pre.dataset.index = String(index);
    drawn.delete(pre);
  }
  const following = atBottom(pre.scrollTop, pre.clientHeight, pre.scrollHeight);
  cutDraw($("inspector-cut"), block);
  preDraw(pre, block);
  if (following) pre.scrollTop = pre.scrollHeight;
}

// --- CPU and memory per process ------------------------------------------------------------

const resourcesSection = $("resources-section");

function resourcesLoad() {
  apiGet(resourcesSection.dataset.url)
    .then((answer) => {
      if (answer === null) return;
      messageApply(state, { type: "job.resources", samples: answer.samples });
      renderSchedule();
    })
    .catch(() => {});
}

let resourcesDrawn = -1;

function resourcesRender() {
  const { resources } = state;
  if (resources.version === resourcesDrawn) return;
  resourcesDrawn = resources.version;
  setText($("resources-summary"), resourcesSummaryText(resources));
  syncChildren(
    $("resources-rows"),
    resourcesRows(resources),
    (row) => row.key,
    () => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      tr.append(th, ...Array.from({ length: 5 }, () => document.createElement("td")));
      return tr;
    },
    (tr, row) => {
      const cells = [
        row.label,
        String(row.samples),
        `${Math.round(row.meanCpu)} %`,
        formatBytes(row.peakRss),
        formatTime(new Date(row.from).toISOString()),
        formatTime(new Date(row.to).toISOString()),
      ];
      cells.forEach((text, i) => setText(tr.children[i], text));
    },
  );
  if (!Chart) return;
  const origin = state.job.started_at ? Date.parse(state.job.started_at) : null;
  resourceCharts.update(resourcesSeries(resources, origin));
}

function timingsRender() {
  const rows = timingRows(state);
  const dl = $("timings");
  if (dl.children.length !== rows.length * 2) {
    dl.replaceChildren(
      ...rows.flatMap(([term]) => {
        const dt = document.createElement("dt");
        dt.textContent = term;
        return [dt, document.createElement("dd")];
      }),
    );
  }
  rows.forEach(([, value], i) => setText(dl.children[i * 2 + 1], value));
  const meter = speedupMeter(state);
  $("speedup-meter").hidden = meter === null;
  if (meter === null) return;
  $("speedup-meter").querySelector(".speedup-fill").style.width = `${meter.fill * 100}%`;
  $("speedup-meter").querySelector(".speedup-ideal").style.left = `${meter.ideal * 100}%`;
  setText($("speedup-caption"), meter.caption);
}

// Keyed by chunk: an open traceback stays open, a focused summary keeps its focus.
function failuresRender() {
  const failing = failingChunks(state);
  $("failures-section").hidden = failing.length === 0;
  syncChildren(
    $("failures"),
    failing.slice(0, 200),
    (chunk) => chunk.index,
    () => {
      const details = document.createElement("details");
      const pre = document.createElement("pre");
      pre.className = "error";
      pre.tabIndex = 0; // it may scroll
      details.append(document.createElement("summary"), pre);
      return details;
    },
    (details, chunk) => {
      setText(details.querySelector("summary"), failureSummary(chunk));
      setText(details.querySelector("pre"), chunk.error);
    },
  );
}

// The live picture: finished bands at their real size, in order; once the job has its
// result file, that one picture (the same pixels, the same size) takes their place.
function previewRender() {
  const { job } = state;
  const section = $("preview-section");
  if (!section) return;
  const holder = $("preview");
  if (job.result_file) {
    if ($("result-file-image")) return;
    const img = document.createElement("img");
    img.id = "result-file-image";
    img.className = "result-image";
    img.alt = `Result of job ${job.id}`;
    img.addEventListener("load", () => holder.replaceChildren(img), { once: true });
    img.src = job.result_file;
    // Until it has loaded, the bands stay: the picture never blinks.
    if (!holder.children.length) holder.append(img);
    return;
  }
  for (const chunk of doneChunks(state)) {
    const id = `preview-${chunk.index}`;
    if ($(id)) continue;
    const img = document.createElement("img");
    img.id = id;
    img.dataset.index = String(chunk.index);
    img.alt = `Band ${chunk.index + 1} of ${job.total_chunks}`;
    img.src = urlFill(section.dataset.urlTemplate, { index: chunk.index });
    const after = [...holder.children].find((node) => Number(node.dataset.index) > chunk.index);
    holder.insertBefore(img, after || null);
  }
}

// Chunk colours, as the grid's (static/coreboard.css).
function streamColours() {
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

const Chart = globalThis.Chart;
if (Chart) chartDefaultsApply(Chart);
const taskStream = new TaskStream($("timeline"), {
  Chart,
  colours: streamColours(),
  label: chunkLabel,
});
const resourceCharts = new ResourceCharts($("resources-cpu"), $("resources-memory"), {
  Chart,
  colours: ["--accent", "--ok", "--warn", "--bad", "--queued", "--idle"].map((name) =>
    cssColour(name),
  ),
});

// The heavy parts (task stream, failures) redraw at most twice a second.
let lastHeavy = 0;
let heavyTimer = null;
function heavyRender() {
  const wait = JOB_ACTIVE.has(state.job.status) ? 500 - (Date.now() - lastHeavy) : 0;
  if (wait > 0) {
    heavyTimer ??= setTimeout(() => {
      heavyTimer = null;
      heavyRender();
    }, wait);
    return;
  }
  lastHeavy = Date.now();
  if (Chart) taskStream.update(state.job, state.chunks.values());
  failuresRender();
  resourcesRender();
}

const renderSchedule = coalesced(render);

$("job-actions").addEventListener("focusout", () => renderSchedule());
const grid = $("chunk-grid");
grid.addEventListener("mouseover", chunkDetailsShow);
grid.addEventListener("focusin", chunkDetailsShow);
grid.addEventListener("keydown", gridKeyDown);
grid.addEventListener("click", gridClick);
notifyButtonSetUp();
// Running bars and the ETA move with the clock, not only with events.
setInterval(() => {
  if (JOB_ACTIVE.has(state.job.status)) renderSchedule();
}, 1000);
render();
const connection = $("connection");
const live = liveSocket(connection.dataset.socketUrl, {
  status: connection,
  onMessage(message) {
    const { resync, reload, refetch } = messageApply(state, message);
    if (resync) live.send({ type: "resync" });
    if (reload) {
      outputLoad();
      resourcesLoad();
    }
    if (refetch !== null && refetch !== undefined) chunkOutputFetch(refetch);
    renderSchedule();
  },
});

// Links to the person's own jobs that hold the processes this job waits for.
function heldRender() {
  const holder = $("pace-held");
  const { job, live } = state;
  const held = JOB_ACTIVE.has(job.status) && live && live.waiting ? live.waiting.held_by || [] : [];
  const shown = held.join(",");
  if (holder.dataset.shown === shown) return;
  holder.dataset.shown = shown;
  holder.hidden = held.length === 0;
  holder.replaceChildren(
    "Your jobs that hold them:",
    ...held.flatMap((id) => [
      " ",
      el("a", { href: urlFill(holder.dataset.jobUrl, { id }), text: `#${id}` }),
    ]),
  );
}
