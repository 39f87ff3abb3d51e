// The live job page's DOM: draws the state kept by job_state.mjs (with the chunks' output,
// output_state.mjs, and the CPU/memory samples, resources_state.mjs), which the socket's
// messages and the API's answers change; the task stream is task_stream.mjs, the CPU and
// memory charts resource_charts.mjs. Rendering is coalesced to one frame.
import { chartDefaultsApply, cssColour } from "../lib/colours.mjs";
import {
  byId as $,
  el,
  coalesced,
  localiseTimes,
  pageJson,
  setClass,
  setProgress,
  setText,
  setTime,
  syncChildren,
} from "../lib/dom.mjs";
import { formatBytes, formatTime } from "../lib/format.mjs";
import { liveSocket } from "../lib/live.mjs";
import { urlFill } from "../lib/urls.mjs";
import {
  JOB_ACTIVE,
  JOB_ENDED,
  chunkAt,
  chunkCounts,
  chunkDetailApply,
  chunkInspectorRows,
  chunkLabel,
  countsText,
  documentTitle,
  doneIndices,
  endedText,
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
import { TaskStream, streamColours } from "./task_stream.mjs";
import { CELL, ChunkGrid, PAD, cellAt, cellOrigin, gridMove } from "./chunk_grid.mjs";

const state = jobStateCreate(pageJson("job-snapshot"));
const notificationsAvailable = "Notification" in window;
// The status this page last rendered: a change from active to ended is the job ending while
// somebody watches (announced once, maybe notified); loading an ended job is not.
let shownStatus = state.job.status;
let notifyWanted = false;

// The element of each action jobActions() decides about.
const ACTION_ELEMENTS = {
  cancel: "cancel-link",
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
      // From the state, not from #counts: this runs before the counts are drawn, so the
      // page's text would still be the last update's.
      new Notification(`Job ${job.id} ${job.status}`, {
        body: `${kind}: ${endedText(state)}`,
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

// The grid is one widget (a listbox): one Tab stop; arrow keys, Page Up/Down, Home and End
// move the chosen chunk, which is the listbox's one option (aria-activedescendant), named by
// its details; the inspector below shows its figures and output. The squares are a canvas
// (chunk_grid.mjs) drawn from the packed statuses, only the rows in view and only when one
// of them changed. Live updates never move focus or the chosen chunk.
const gridBox = $("chunk-grid");
const gridOption = $("chunk-option");
const chunkGrid = new ChunkGrid(gridBox, $("chunk-canvas"), $("chunk-spacer"), {
  pending: cssColour("--pending"),
  running: cssColour("--chunk-running"),
  done: cssColour("--chunk-done"),
  failed: cssColour("--chunk-failed"),
  cancelled: cssColour("--chunk-cancelled"),
  retried: "#ffb3b3",
});
let activeCell = 0;
let gridDrawNeeded = true;
// The chosen chunk's full state is kept however many others change (job_state.mjs).
state.pinned = activeCell;

function gridRender() {
  const total = state.grid.length;
  if (chunkGrid.resize(total)) {
    activeCell = Math.min(activeCell, Math.max(0, total - 1));
    state.dirty = null;
  }
  const dirty = dirtyTake(state);
  if (dirty === null || gridDrawNeeded) gridDrawNeeded = true;
  else for (const index of dirty) if (chunkGrid.inView(index)) gridDrawNeeded = true;
  if (gridDrawNeeded) {
    chunkGrid.draw(state.grid);
    gridDrawNeeded = false;
  }
  // Read by the browser tests and the benchmark: how many chunks have each status.
  const counts = chunkCounts(state);
  for (const [status, count] of Object.entries(counts)) {
    if (gridBox.dataset[status] !== String(count)) gridBox.dataset[status] = String(count);
  }
  gridBox.dataset.total = String(total);
  if (state.snapshotSeq !== null) gridBox.dataset.ready = "true";
  gridOptionRender();
}

function gridOptionRender() {
  const total = state.grid.length;
  gridOption.hidden = total === 0;
  if (!total) return;
  const label = chunkLabel(chunkAt(state, activeCell));
  const { x, y } = cellOrigin(chunkGrid.layout, activeCell);
  gridOption.style.transform = `translate(${x}px, ${y}px)`;
  gridOption.dataset.index = String(activeCell);
  gridOption.setAttribute("aria-posinset", String(activeCell + 1));
  gridOption.setAttribute("aria-setsize", String(total));
  if (gridOption.getAttribute("aria-label") !== label) {
    gridOption.setAttribute("aria-label", label);
    gridOption.title = label;
    if (gridBox.contains(document.activeElement)) setText($("chunk-details"), label);
  }
}

function gridScrollIntoView(index) {
  const { y } = cellOrigin(chunkGrid.layout, index);
  const top = gridBox.scrollTop;
  const view = gridBox.clientHeight;
  if (y - PAD < top) gridBox.scrollTop = y - PAD;
  else if (y + CELL + PAD > top + view) gridBox.scrollTop = y + CELL + PAD - view;
}

function gridMoveTo(index) {
  if (!state.grid.length) return;
  activeCell = Math.max(0, Math.min(state.grid.length - 1, index));
  state.pinned = activeCell;
  gridScrollIntoView(activeCell);
  gridOptionRender();
  setText($("chunk-details"), chunkLabel(chunkAt(state, activeCell)));
  renderSchedule();
}

function gridKeyDown(event) {
  const page = Math.max(1, Math.floor(gridBox.clientHeight / (CELL + 3)) - 1);
  const target = gridMove(chunkGrid.layout, activeCell, event.key, page);
  if (target === null) return;
  event.preventDefault();
  gridMoveTo(target);
}

function gridPoint(event) {
  const box = gridBox.getBoundingClientRect();
  const x = event.clientX - box.left - gridBox.clientLeft;
  const y = event.clientY - box.top - gridBox.clientTop + gridBox.scrollTop;
  return cellAt(chunkGrid.layout, x, y);
}

function gridClick(event) {
  const index = gridPoint(event);
  if (index < 0) return;
  gridBox.focus();
  gridMoveTo(index);
}

// Hovering says a chunk's status (and its details when the page holds them) without
// choosing it.
function gridHover(event) {
  const index = gridPoint(event);
  if (index >= 0) setText($("chunk-details"), chunkLabel(chunkAt(state, index)));
}

function gridFocus() {
  setText($("chunk-details"), chunkLabel(chunkAt(state, activeCell)));
}

function gridScrolled() {
  gridDrawNeeded = true;
  renderSchedule();
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
      setText(node.querySelector("h3"), outputHeading(block, chunkAt(state, block.index)));
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
let detailAsked = null;
let detailTimer = null;

// The chosen chunk's full state, when the page does not hold it: asked for once per choice,
// a moment after the choice settles (holding an arrow key down asks for one chunk, not for
// every chunk passed); deltas keep it current after that.
function chunkDetailFetch(index) {
  const asked = `${state.snapshotSeq}:${index}`;
  if (detailAsked === asked) return;
  detailAsked = asked;
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => {
    if (activeCell !== index) return;
    apiGet(urlFill(inspector.dataset.chunkUrlTemplate, { index }))
      .then((answer) => {
        if (answer === null) return;
        chunkDetailApply(state, answer);
        renderSchedule();
      })
      .catch(() => {
        detailAsked = null;
      });
  }, 150);
}

function inspectorRender() {
  const index = activeCell;
  if (!state.grid.length) return;
  // Before the snapshot the page knows no chunk: the window may hold this one.
  if (state.snapshotSeq !== null && !state.details.has(index)) chunkDetailFetch(index);
  const chunk = chunkAt(state, index);
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
}

let resourceChartsDrawn = -1;

function resourceChartsRender() {
  const { resources } = state;
  if (!Chart || !chartsNear.has(resourcesBox) || resources.version === resourceChartsDrawn) return;
  resourceChartsDrawn = resources.version;
  const origin = state.job.started_at ? Date.parse(state.job.started_at) : null;
  resourceCharts.update(resourcesSeries(resources, origin));
}

function timingsRender() {
  setTime($("job-started").querySelector("time"), state.job.started_at);
  setTime($("job-finished").querySelector("time"), state.job.finished_at);
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
let previewDone = "";

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
  // The bands change only when a chunk is done or stored: the grid is read again only then.
  const done = `${chunkCounts(state).done}:${state.detailsVersion}`;
  if (done === previewDone) return;
  previewDone = done;
  for (const index of doneIndices(state)) {
    const id = `preview-${index}`;
    if ($(id)) continue;
    const img = document.createElement("img");
    img.id = id;
    img.dataset.index = String(index);
    img.alt = `Band ${index + 1} of ${job.total_chunks}`;
    img.src = urlFill(section.dataset.urlTemplate, { index });
    const after = [...holder.children].find((node) => Number(node.dataset.index) > index);
    holder.insertBefore(img, after || null);
  }
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

// The charts are made once they come near the view (a Chart.js chart takes ~100 ms to make on
// a slow machine: the page's first render does not wait for the task stream far below it),
// and kept current from then on.
const timelineBox = $("timeline").parentElement;
const resourcesBox = $("resources-cpu").closest(".resources-charts");
const chartsNear = new Set();
const chartsWatch = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting || chartsNear.has(entry.target)) continue;
      chartsNear.add(entry.target);
      chartsWatch.unobserve(entry.target);
      lastHeavy = 0;
      renderSchedule();
    }
  },
  { rootMargin: "300px" },
);
chartsWatch.observe(timelineBox);
chartsWatch.observe(resourcesBox);

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
  if (Chart && chartsNear.has(timelineBox)) taskStream.update(state.job, state.details.values());
  failuresRender();
  resourcesRender();
  resourceChartsRender();
}

const renderSchedule = coalesced(render);

$("job-actions").addEventListener("focusout", () => renderSchedule());
gridBox.addEventListener("mousemove", gridHover);
gridBox.addEventListener("focus", gridFocus);
gridBox.addEventListener("keydown", gridKeyDown);
gridBox.addEventListener("click", gridClick);
gridBox.addEventListener("scroll", gridScrolled, { passive: true });
// A wider or narrower page lays the grid out again.
new ResizeObserver(() => renderSchedule()).observe(gridBox);
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
