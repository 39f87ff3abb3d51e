// Live job page: render the snapshot, then apply websocket deltas; reconnect with backoff.
// Messages change the state in applySnapshot / applyProgress only; render() draws it.
"use strict";

(function () {
  const C = window.Coreboard;
  const ACTIVE = new Set(["pending", "running"]);
  const FINAL = new Set(["done", "failed", "cancelled"]);
  const snapshot = JSON.parse(document.getElementById("job-snapshot").textContent);
  let job = snapshot.job;
  // What the server says the job is doing now (pace, live processes, why it waits):
  // sent with the page and as `job.live` messages, never worked out here.
  let liveState = snapshot.live || null;
  const chunks = new Map(snapshot.chunks.map((c) => [c.index, c]));

  const $ = (id) => document.getElementById(id);

  function progressFraction() {
    if (job.status === "succeeded") return 1;
    if (!job.total_chunks) return 0;
    let running = 0;
    for (const c of chunks.values()) {
      if (c.status === "running" && typeof c.progress === "number") running += c.progress;
    }
    return Math.min(1, (job.done_chunks + running) / job.total_chunks);
  }

  function fmt(value, digits, suffix) {
    return value === null || value === undefined ? "—" : value.toFixed(digits) + suffix;
  }

  const JOB_ENDED = new Set(["succeeded", "failed", "cancelled"]);
  const TITLE_MARK = { succeeded: "✓", failed: "✗", cancelled: "⊘" };
  // The status this page last rendered: a change from active to ended is the job ending
  // while somebody watches (announced once, maybe notified); loading an ended job is not.
  let shownStatus = job.status;

  function render() {
    const percent = Math.round(progressFraction() * 1000) / 10;
    const bar = $("progress");
    if (bar.getAttribute("aria-valuenow") !== String(percent)) {
      bar.setAttribute("aria-valuenow", String(percent));
      bar.querySelector(".progress-fill").style.width = percent + "%";
    }
    bar.dataset.status = job.status;
    C.setText(document.querySelector(".progress-row .progress-text"), percent + "%");

    const status = $("job-status");
    C.setText(status, job.status);
    status.className = "status status-" + job.status;
    renderActions();
    renderEnding(percent);

    const counts = { pending: 0, queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
    for (const c of chunks.values()) counts[c.status] = (counts[c.status] || 0) + 1;
    C.setText($("counts"),
      `${job.done_chunks} of ${job.total_chunks} chunks done · ${counts.running} running · ` +
      `${counts.queued} queued · ${counts.pending} pending · ${job.failed_chunks} failed · ` +
      `${counts.cancelled} cancelled`);

    renderGrid();
    renderPace();
    renderTimings();
    renderHeavy();
    renderPreview();
    renderSummary();
    $("error-section").hidden = !job.error;
    C.setText($("error"), job.error || "");
  }

  // What can be done now: cancel while it runs; retry a failed job; delete an ended one.
  // (Retry runs a failed job's failed chunks, or only its combine step if that failed.)
  function renderActions() {
    const active = ACTIVE.has(job.status);
    const cancel = $("cancel-form");
    if (cancel) cancel.hidden = !active;
    $("retry-form").hidden = job.status !== "failed";
    $("delete-link").hidden = active;
    const notify = $("notify-button");
    if (notify) notify.hidden = !active || !("Notification" in window);
  }

  function renderEnding(percent) {
    const ended = JOB_ENDED.has(job.status);
    document.title = ended
      ? `${TITLE_MARK[job.status]} Job ${job.id} ${job.status} · Coreboard`
      : `${percent}% · Job ${job.id} · Coreboard`;
    if (job.status !== shownStatus) {
      // A message from the last action ("retrying what failed") is stale once the
      // job has moved on.
      for (const message of document.querySelectorAll("main > .message")) message.hidden = true;
    }
    if (ended && ACTIVE.has(shownStatus)) {
      const text = `Job ${job.id} ${job.status}.`;
      $("job-announcer").textContent = text;
      if (notifyWanted && "Notification" in window && Notification.permission === "granted") {
        new Notification(`Job ${job.id} ${job.status}`, { body: `${document.querySelector("h1 small").textContent}: ${$("counts").textContent}`, tag: `coreboard-job-${job.id}` });
      }
    }
    shownStatus = job.status;
  }

  // Opt-in: a browser notification when this job ends (asked for on a click, never on load).
  let notifyWanted = false;
  function setUpNotifyButton() {
    const button = $("notify-button");
    if (!button || !("Notification" in window)) return;
    button.addEventListener("click", async () => {
      if (notifyWanted) {
        notifyWanted = false;
      } else {
        const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
        notifyWanted = permission === "granted";
        if (permission === "denied") button.textContent = "Notifications are blocked for this site";
      }
      button.setAttribute("aria-pressed", String(notifyWanted));
      if (Notification.permission !== "denied") {
        button.textContent = notifyWanted ? "You will be notified when it ends" : "Notify me when it ends";
      }
    });
  }

  // The result and the speedup notes are rendered by the server (one template for the
  // page and this fragment); fetched once per ended version of the job.
  function renderSummary() {
    const holder = $("job-summary");
    if (!JOB_ENDED.has(job.status) || holder.dataset.version === String(job.version)) return;
    holder.dataset.version = String(job.version);
    const version = job.version;
    fetch(holder.dataset.url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => {
        if (html === null || String(version) !== holder.dataset.version) return;
        holder.innerHTML = html;
        C.localiseTimes(holder);
      })
      .catch(() => { holder.dataset.version = ""; });
  }

  function seconds(from, to) {
    return from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : null;
  }

  function chunkLabel(c) {
    const where = c.pid ? ` on ${c.worker} pid ${c.pid}` : "";
    const took = seconds(c.started_at, c.finished_at);
    const duration = took === null ? "" : `, ${took.toFixed(2)} s`;
    const error = c.error ? `, error: ${c.error.trim().split("\n").pop()}` : "";
    return `Chunk ${c.index}: ${c.status}${where}, attempts ${c.attempts}${duration}${error}`;
  }

  // The grid is one widget (a listbox): one Tab stop, arrow keys, Home and End move
  // between chunks (a roving tabindex), and each chunk's name is its details. Cells are
  // indexed by chunk index; only chunks that changed since the last frame are touched, so
  // a 10,000-chunk grid costs nothing between events.
  let dirty = null; // null: everything
  let activeCell = 0;
  function renderGrid() {
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
      dirty = null;
    }
    const todo = dirty === null ? [...chunks.values()] : [...dirty].map((i) => chunks.get(i)).filter(Boolean);
    dirty = new Set();
    for (const c of todo) {
      const cell = grid.children[c.index];
      if (!cell) continue;
      const className = "cell chunk-" + c.status + (c.attempts > 1 ? " retried" : "");
      if (cell.className !== className) cell.className = className;
      const label = chunkLabel(c);
      if (cell.getAttribute("aria-label") !== label) {
        cell.title = label;
        cell.setAttribute("aria-label", label);
        if (Number(cell.dataset.index) === activeCell && cell.contains(document.activeElement)) {
          C.setText($("chunk-details"), label);
        }
      }
    }
  }

  function columnsOf(grid) {
    const first = grid.children[0];
    if (!first) return 1;
    let n = 0;
    for (const cell of grid.children) {
      if (cell.offsetTop !== first.offsetTop) break;
      n++;
    }
    return Math.max(1, n);
  }

  function moveTo(index) {
    const grid = $("chunk-grid");
    const cells = grid.children;
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
  }

  function onGridKey(event) {
    const grid = $("chunk-grid");
    const steps = {
      ArrowRight: 1, ArrowLeft: -1, ArrowDown: columnsOf(grid), ArrowUp: -columnsOf(grid),
    };
    if (event.key in steps) moveTo(activeCell + steps[event.key]);
    else if (event.key === "Home") moveTo(0);
    else if (event.key === "End") moveTo(grid.children.length - 1);
    else return;
    event.preventDefault();
  }

  function onGridClick(event) {
    const cell = event.target.closest(".cell");
    if (cell) moveTo(Number(cell.dataset.index));
  }

  function showChunkDetails(event) {
    const cell = event.target.closest(".cell");
    if (!cell) return;
    const c = chunks.get(Number(cell.dataset.index));
    if (c) C.setText($("chunk-details"), chunkLabel(c));
  }

  function renderPace() {
    let text = "";
    if (ACTIVE.has(job.status) && liveState) {
      if (liveState.waiting) text = liveState.waiting.text;
      else if (liveState.throughput !== null && liveState.eta_seconds !== null) {
        text = `${liveState.throughput.toFixed(2)} chunks/s · about ${C.formatSeconds(liveState.eta_seconds)} left`;
      }
    }
    C.setText($("pace"), text);
    const processes = liveState && ACTIVE.has(job.status) && liveState.processes_now !== null
      ? ` (${liveState.processes_now} now)` : "";
    C.setText($("parallelism-value"), job.parallelism ? String(job.parallelism) : "all processes" + processes);
  }

  function processesUsed() {
    return new Set([...chunks.values()].filter((c) => c.pid).map((c) => `${c.worker}|${c.pid}`)).size;
  }

  // Share of the wall time after the first worker process ran out of work for good: the
  // time lost to the slowest chunks at the end.
  function tailShare() {
    if (!job.started_at || !job.finished_at) return null;
    const lanes = new Map();
    for (const c of chunks.values()) {
      if (!c.finished_at || !c.pid) continue;
      const key = `${c.worker}|${c.pid}`;
      lanes.set(key, Math.max(lanes.get(key) || 0, Date.parse(c.finished_at)));
    }
    if (lanes.size < 2) return null;
    const firstIdle = Math.min(...lanes.values());
    const wall = Date.parse(job.finished_at) - Date.parse(job.started_at);
    return wall > 0 ? Math.max(0, (Date.parse(job.finished_at) - firstIdle) / wall) : null;
  }

  function renderMeter(used) {
    const meter = $("speedup-meter");
    meter.hidden = job.speedup === null;
    if (job.speedup === null) return;
    // An all-processes job (parallelism 0) is measured against the processes it used.
    const ideal = Math.max(1, job.parallelism ? Math.min(used || job.parallelism, job.parallelism) : used);
    const scale = Math.max(ideal, job.speedup) * 1.1;
    meter.querySelector(".speedup-fill").style.width = (job.speedup / scale) * 100 + "%";
    meter.querySelector(".speedup-ideal").style.left = (ideal / scale) * 100 + "%";
    $("speedup-caption").textContent =
      `Speedup ${job.speedup.toFixed(2)}× of an ideal ${ideal}× (${ideal} process${ideal === 1 ? "" : "es"} used)`;
  }

  // Keyed by chunk: an open traceback stays open, a focused summary keeps its focus.
  function renderFailures() {
    // A cancelled chunk is not a failure, whatever an earlier attempt of it said.
    const failing = [...chunks.values()]
      .filter((c) => c.error && c.status !== "cancelled")
      .sort((a, b) => a.index - b.index);
    $("failures-section").hidden = failing.length === 0;
    C.syncChildren(
      $("failures"),
      failing.slice(0, 200),
      (c) => c.index,
      () => {
        const details = document.createElement("details");
        const pre = document.createElement("pre");
        pre.className = "error";
        pre.tabIndex = 0; // it may scroll
        details.append(document.createElement("summary"), pre);
        return details;
      },
      (details, c) => {
        C.setText(details.querySelector("summary"),
          `Chunk ${c.index}: ${c.status} after ${c.attempts} attempt(s) — ${c.error.trim().split("\n").pop()}`);
        C.setText(details.querySelector("pre"), c.error);
      }
    );
  }

  // The live picture: finished bands at their real size, in order; once the job has its
  // result file, that one picture (the same pixels, the same size) takes their place.
  function renderPreview() {
    const section = $("preview-section");
    if (!section) return;
    const holder = $("preview");
    if (job.result_file) {
      let img = $("result-file-image");
      if (!img) {
        img = document.createElement("img");
        img.id = "result-file-image";
        img.className = "result-image";
        img.alt = `Result of job ${job.id}`;
        img.addEventListener("load", () => holder.replaceChildren(img), { once: true });
        img.src = job.result_file;
        // Until it has loaded, the bands stay: the picture never blinks.
        if (!holder.children.length) holder.append(img);
      }
      return;
    }
    const template = section.dataset.urlTemplate;
    const done = [...chunks.values()].filter((c) => c.status === "done").sort((a, b) => a.index - b.index);
    for (const c of done) {
      const id = "preview-" + c.index;
      if (document.getElementById(id)) continue;
      const img = document.createElement("img");
      img.id = id;
      img.dataset.index = String(c.index);
      img.alt = `Band ${c.index + 1} of ${job.total_chunks}`;
      img.src = template.replace("{index}", String(c.index));
      const after = [...holder.children].find((el) => Number(el.dataset.index) > c.index);
      holder.insertBefore(img, after || null);
    }
  }

  function renderTimings() {
    const used = processesUsed();
    const tail = tailShare();
    const rows = [
      ["Wall time", fmt(job.wall_seconds, 2, " s")],
      ["CPU time", fmt(job.cpu_seconds, 2, " s")],
      ["Speedup", fmt(job.speedup, 2, "×")],
      ["Parallel efficiency", job.efficiency === null ? "—" : Math.round(job.efficiency * 100) + "%"],
      ["Parallelism", `${job.parallelism || "all processes"} (${used} worker process${used === 1 ? "" : "es"} used)`],
      ["Tail", tail === null ? "—" : `${Math.round(tail * 100)}% of the wall time after the first process ran out of work`],
    ];
    const dl = $("timings");
    if (dl.children.length !== rows.length * 2) {
      dl.replaceChildren(...rows.flatMap(([k]) => {
        const dt = document.createElement("dt");
        dt.textContent = k;
        return [dt, document.createElement("dd")];
      }));
    }
    rows.forEach(([, v], i) => C.setText(dl.children[i * 2 + 1], v));
    renderMeter(used);
  }

  const STATUS_COLOURS = {
    queued: "#8fa9e0", running: "#2457c5", done: "#1a7340", failed: "#b42e2e", cancelled: "#8a5700",
  };
  let timeline = null;

  const AGGREGATE_ABOVE = 300;

  function aggregate(runs, gap) {
    runs.sort((a, b) => (a.y < b.y ? -1 : a.y > b.y ? 1 : a.x[0] - b.x[0]));
    const merged = [];
    for (const run of runs) {
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

  // One lane per worker process; a light bar for the wait in the queue, a coloured one for
  // the run. Running chunks grow until now.
  function renderTimeline() {
    const origin = job.started_at ? Date.parse(job.started_at) : null;
    if (origin === null) return;
    const now = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    const started = [...chunks.values()].filter((c) => c.started_at && c.pid);
    const lanes = [...new Set(started.map((c) => `${c.worker} · pid ${c.pid}`))].sort();
    let waits = [];
    let runs = [];
    for (const c of started) {
      const lane = `${c.worker} · pid ${c.pid}`;
      const begin = (Date.parse(c.started_at) - origin) / 1000;
      const end = ((c.finished_at ? Date.parse(c.finished_at) : now) - origin) / 1000;
      if (c.queued_at) waits.push({ x: [Math.max(0, (Date.parse(c.queued_at) - origin) / 1000), begin], y: lane, chunk: c });
      runs.push({ x: [begin, Math.max(end, begin)], y: lane, chunk: c });
    }
    const drawn = runs.length;
    if (runs.length > AGGREGATE_ABOVE) {
      // Too many bars to draw one by one: merge neighbouring finished chunks of a lane.
      runs = aggregate(runs, (now - origin) / 1000 / 400);
      waits = [];
    }
    const datasets = [
      { label: "queued", data: waits, backgroundColor: "rgba(169,189,232,0.45)", grouped: false, barPercentage: 0.5 },
      {
        label: "run", data: runs, grouped: false, barPercentage: 0.9,
        backgroundColor: runs.map((r) => STATUS_COLOURS[r.chunk.status] || "#9aa3b2"),
        borderColor: runs.map((r) => (r.chunk.attempts > 1 ? "#c23a3a" : "rgba(0,0,0,0)")),
        borderWidth: runs.map((r) => (r.chunk.attempts > 1 ? 2 : 0)),
        borderSkipped: false,
      },
    ];
    const box = $("timeline").parentElement;
    box.style.height = Math.max(120, 40 + lanes.length * 28) + "px";
    if (!timeline) {
      timeline = new Chart($("timeline"), {
        type: "bar",
        data: { labels: lanes, datasets },
        options: {
          indexAxis: "y", animation: false, maintainAspectRatio: false, parsing: { xAxisKey: "x", yAxisKey: "y" },
          scales: { x: { type: "linear", min: 0, title: { display: true, text: "seconds since the job started" } } },
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                label: (item) => (item.raw.chunk.aggregated
                  ? `${item.raw.chunk.aggregated} chunks done, ${item.raw.x[0].toFixed(1)}–${item.raw.x[1].toFixed(1)} s`
                  : chunkLabel(item.raw.chunk)),
              },
            },
          },
        },
      });
    } else {
      timeline.data.labels = lanes;
      timeline.data.datasets = datasets;
      timeline.update("none");
    }
    const canvas = $("timeline");
    canvas.setAttribute("aria-label", `Timeline of ${drawn} chunks on ${lanes.length} worker processes`);
    canvas.dataset.bars = String(runs.length);
    canvas.dataset.running = String(runs.filter((r) => r.chunk.status === "running").length);
  }

  // The heavy parts (timeline, failures) redraw at most twice a second.
  let lastHeavy = 0;
  let heavyTimer = null;
  function renderHeavy() {
    const wait = ACTIVE.has(job.status) ? 500 - (Date.now() - lastHeavy) : 0;
    if (wait > 0) {
      if (!heavyTimer) heavyTimer = setTimeout(() => { heavyTimer = null; renderHeavy(); }, wait);
      return;
    }
    lastHeavy = Date.now();
    renderTimeline();
    renderFailures();
  }

  const scheduleRender = window.Coreboard.coalesced(render);

  // A snapshot's chunks come in pages: `job.snapshot` carries the first, `job.chunks`
  // messages (same seq) the rest, so no websocket frame nears daphne's 1 MiB limit.
  let snapshotSeq = null;
  function applySnapshot(message) {
    job = message.job;
    if (message.live !== undefined) liveState = message.live;
    snapshotSeq = message.seq;
    chunks.clear();
    applySnapshotChunks(message.chunks);
  }

  function applySnapshotPage(message) {
    if (message.seq === snapshotSeq) applySnapshotChunks(message.chunks);
  }

  function applySnapshotChunks(page) {
    for (const c of page) {
      // Chunks were cleared when the snapshot began, so a known one came with a delta
      // that arrived between the pages: it is newer than the page.
      chunks.set(c.index, Object.assign({}, c, chunks.get(c.index)));
    }
    dirty = null;
    scheduleRender();
  }

  function applyProgress(message) {
    // Worker processes publish independently, so an older job state can arrive late.
    if (message.job && message.job.version >= job.version) {
      const changedPhase = ACTIVE.has(job.status) !== ACTIVE.has(message.job.status);
      job = message.job;
      // Ending a job (cancelled, failed) or retrying it changes chunks in bulk: fetch them all.
      if (changedPhase) requestResync();
    }
    for (const delta of message.chunks) {
      const known = chunks.get(delta.index) || { index: delta.index };
      // A late report from an earlier run of a chunk must not undo its final state;
      // a retry shows up with more attempts.
      const newerAttempt = (delta.attempts || 0) > (known.attempts || 0);
      if (FINAL.has(known.status) && !FINAL.has(delta.status) && !newerAttempt) continue;
      const merged = Object.assign({}, known, delta);
      if (merged.status !== "running") delete merged.progress;
      chunks.set(delta.index, merged);
      if (dirty !== null) dirty.add(delta.index);
    }
    scheduleRender();
  }

  function requestResync() {
    live.send({ type: "resync" });
  }

  $("chunk-grid").addEventListener("mouseover", showChunkDetails);
  $("chunk-grid").addEventListener("focusin", showChunkDetails);
  $("chunk-grid").addEventListener("keydown", onGridKey);
  $("chunk-grid").addEventListener("click", onGridClick);
  setUpNotifyButton();
  // Running bars and the ETA move with the clock, not only with events.
  setInterval(() => { if (ACTIVE.has(job.status)) scheduleRender(); }, 1000);
  render();
  const live = window.Coreboard.liveSocket(`/ws/jobs/${job.id}/`, {
    status: $("connection"),
    onMessage(message) {
      if (message.type === "job.snapshot") applySnapshot(message);
      else if (message.type === "job.chunks") applySnapshotPage(message);
      else if (message.type === "job.progress") applyProgress(message);
      else if (message.type === "job.live") {
        liveState = message.live;
        scheduleRender();
      }
    },
  });
})();
