// Live job page: render the snapshot, then apply websocket deltas; reconnect with backoff.
"use strict";

(function () {
  const C = window.Coreboard;
  const ACTIVE = new Set(["pending", "running"]);
  const FINAL = new Set(["done", "failed", "cancelled"]);
  const snapshot = JSON.parse(document.getElementById("job-snapshot").textContent);
  let job = snapshot.job;
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

  function render() {
    const percent = Math.round(progressFraction() * 1000) / 10;
    const bar = $("progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.querySelector(".progress-fill").style.width = percent + "%";
    bar.querySelector(".progress-text").textContent = percent + "%";

    const status = $("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    const cancel = $("cancel-form");
    if (cancel) cancel.hidden = !ACTIVE.has(job.status);

    const counts = { pending: 0, queued: 0, running: 0, done: 0, failed: 0, cancelled: 0 };
    for (const c of chunks.values()) counts[c.status] = (counts[c.status] || 0) + 1;
    $("counts").textContent =
      `${job.done_chunks} of ${job.total_chunks} chunks done · ${counts.running} running · ` +
      `${counts.queued} queued · ${counts.pending} pending · ${job.failed_chunks} failed · ` +
      `${counts.cancelled} cancelled`;

    renderGrid();
    renderPace();
    renderTimings();
    renderHeavy();

    $("result-section").hidden = job.result === null;
    if (job.result !== null) $("result").textContent = JSON.stringify(job.result, null, 2);
    renderPreview();
    renderResultFile();
    $("error-section").hidden = !job.error;
    $("error").textContent = job.error || "";
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

  // Cells are indexed by chunk index; only chunks that changed since the last frame are
  // touched, so a 10,000-chunk grid costs nothing between events.
  let dirty = null; // null: everything
  function renderGrid() {
    const grid = $("chunk-grid");
    if (grid.children.length !== job.total_chunks) {
      const cells = [];
      for (let i = 0; i < job.total_chunks; i++) {
        const cell = document.createElement("span");
        cell.className = "cell chunk-pending";
        cell.tabIndex = 0;
        cells.push(cell);
      }
      grid.replaceChildren(...cells);
      dirty = null;
    }
    const todo = dirty === null ? [...chunks.values()] : [...dirty].map((i) => chunks.get(i)).filter(Boolean);
    dirty = new Set();
    for (const c of todo) {
      const cell = grid.children[c.index];
      if (!cell) continue;
      const className = "cell chunk-" + c.status + (c.attempts > 1 ? " retried" : "");
      if (cell.className !== className) cell.className = className;
      cell.dataset.index = String(c.index);
      const label = chunkLabel(c);
      if (cell.getAttribute("aria-label") !== label) {
        cell.title = label;
        cell.setAttribute("aria-label", label);
      }
    }
  }

  function showChunkDetails(event) {
    const cell = event.target.closest(".cell");
    if (!cell) return;
    const c = chunks.get(Number(cell.dataset.index));
    if (c) $("chunk-details").textContent = chunkLabel(c);
  }

  function renderPace() {
    const pace = $("pace");
    if (!ACTIVE.has(job.status) || !job.started_at || !job.done_chunks) {
      pace.textContent = "";
      return;
    }
    const elapsed = (Date.now() - Date.parse(job.started_at)) / 1000;
    const rate = job.done_chunks / Math.max(elapsed, 0.001);
    const left = (job.total_chunks - job.done_chunks) / rate;
    pace.textContent = `${rate.toFixed(2)} chunks/s · about ${C.formatSeconds(left)} left`;
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
    const ideal = Math.max(1, Math.min(used || job.parallelism, job.parallelism));
    const scale = Math.max(ideal, job.speedup) * 1.1;
    meter.querySelector(".speedup-fill").style.width = (job.speedup / scale) * 100 + "%";
    meter.querySelector(".speedup-ideal").style.left = (ideal / scale) * 100 + "%";
    $("speedup-caption").textContent =
      `Speedup ${job.speedup.toFixed(2)}× of an ideal ${ideal}× (${ideal} process${ideal === 1 ? "" : "es"} used)`;
  }

  function renderFailures() {
    const failing = [...chunks.values()].filter((c) => c.error).sort((a, b) => a.index - b.index);
    $("failures-section").hidden = failing.length === 0;
    const holder = $("failures");
    const key = failing.map((c) => `${c.index}:${c.status}:${c.attempts}`).join(",");
    if (holder.dataset.key === key) return;
    holder.dataset.key = key;
    holder.replaceChildren(
      ...failing.slice(0, 200).map((c) => {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.textContent = `Chunk ${c.index}: ${c.status} after ${c.attempts} attempt(s) — ${c.error.trim().split("\n").pop()}`;
        const pre = document.createElement("pre");
        pre.className = "error";
        pre.textContent = c.error;
        details.append(summary, pre);
        return details;
      })
    );
  }

  function renderPreview() {
    const section = $("preview-section");
    if (!section) return;
    // Once the whole picture exists, the bands would only repeat it.
    section.hidden = Boolean(job.result_file);
    const holder = $("preview");
    const template = section.dataset.urlTemplate;
    const done = [...chunks.values()].filter((c) => c.status === "done").sort((a, b) => a.index - b.index);
    for (const c of done) {
      const id = "preview-" + c.index;
      if (document.getElementById(id)) continue;
      const img = document.createElement("img");
      img.id = id;
      img.dataset.index = String(c.index);
      img.alt = `Chunk ${c.index}`;
      img.src = template.replace("{index}", String(c.index));
      const after = [...holder.children].find((el) => Number(el.dataset.index) > c.index);
      holder.insertBefore(img, after || null);
    }
  }

  function renderResultFile() {
    const url = job.result_file;
    $("result-file-section").hidden = !url;
    if (!url) return;
    $("result-file-download").href = url + "?download=1";
    const img = $("result-file-image");
    if (img.getAttribute("src") !== url) img.src = url;
    img.hidden = false;
  }

  function renderTimings() {
    const used = processesUsed();
    const tail = tailShare();
    const rows = [
      ["Wall time", fmt(job.wall_seconds, 2, " s")],
      ["CPU time", fmt(job.cpu_seconds, 2, " s")],
      ["Speedup", fmt(job.speedup, 2, "×")],
      ["Parallel efficiency", job.efficiency === null ? "—" : Math.round(job.efficiency * 100) + "%"],
      ["Parallelism", `${job.parallelism} (${used} worker process${used === 1 ? "" : "es"} used)`],
      ["Tail", tail === null ? "—" : `${Math.round(tail * 100)}% of the wall time after the first process ran out of work`],
    ];
    const dl = $("timings");
    dl.replaceChildren(
      ...rows.flatMap(([k, v]) => {
        const dt = document.createElement("dt");
        dt.textContent = k;
        const dd = document.createElement("dd");
        dd.textContent = v;
        return [dt, dd];
      })
    );
    renderMeter(used);
  }

  const STATUS_COLOURS = {
    queued: "#a9bde8", running: "#2457c5", done: "#1f8a4c", failed: "#c23a3a", cancelled: "#b7791f",
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
  // Running bars and the ETA move with the clock, not only with events.
  setInterval(() => { if (ACTIVE.has(job.status)) scheduleRender(); }, 1000);
  render();
  const live = window.Coreboard.liveSocket(`/ws/jobs/${job.id}/`, {
    status: $("connection"),
    onMessage(message) {
      if (message.type === "job.snapshot") applySnapshot(message);
      else if (message.type === "job.chunks") applySnapshotPage(message);
      else if (message.type === "job.progress") applyProgress(message);
    },
  });
})();
