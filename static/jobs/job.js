// Live job page: render the snapshot, then apply websocket deltas; reconnect with backoff.
"use strict";

(function () {
  const ACTIVE = new Set(["pending", "running"]);
  const STOP_CODES = new Set([4401, 4404]);
  const FINAL = new Set(["done", "failed", "cancelled"]);
  const snapshot = JSON.parse(document.getElementById("job-snapshot").textContent);
  let job = snapshot.job;
  const chunks = new Map(snapshot.chunks.map((c) => [c.index, c]));
  let renderQueued = false;
  let retryDelay = 500;
  let socket = null;

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
    renderQueued = false;
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
    renderTimings();

    $("result-section").hidden = job.result === null;
    if (job.result !== null) $("result").textContent = JSON.stringify(job.result, null, 2);
    renderPreview();
    renderResultFile();
    $("error-section").hidden = !job.error;
    $("error").textContent = job.error || "";
  }

  function renderGrid() {
    const grid = $("chunk-grid");
    const ordered = [...chunks.values()].sort((a, b) => a.index - b.index);
    while (grid.children.length < ordered.length) {
      const cell = document.createElement("span");
      cell.tabIndex = 0;
      grid.appendChild(cell);
    }
    ordered.forEach((c, i) => {
      const cell = grid.children[i];
      cell.className = "cell chunk-" + c.status;
      const where = c.pid ? ` on ${c.worker} pid ${c.pid}` : "";
      const label = `Chunk ${c.index}: ${c.status}${where}, attempts ${c.attempts}`;
      if (cell.title !== label) {
        cell.title = label;
        cell.setAttribute("aria-label", label);
      }
    });
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
    const rows = [
      ["Wall time", fmt(job.wall_seconds, 2, " s")],
      ["CPU time", fmt(job.cpu_seconds, 2, " s")],
      ["Speedup", fmt(job.speedup, 2, "×")],
      ["Parallel efficiency", job.efficiency === null ? "—" : Math.round(job.efficiency * 100) + "%"],
      ["Parallelism", String(job.parallelism)],
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
  }

  function scheduleRender() {
    if (!renderQueued) {
      renderQueued = true;
      requestAnimationFrame(render);
    }
  }

  function applySnapshot(message) {
    job = message.job;
    chunks.clear();
    for (const c of message.chunks) chunks.set(c.index, c);
    scheduleRender();
  }

  function applyProgress(message) {
    // Worker processes publish independently, so an older job state can arrive late.
    if (message.job && message.job.version >= job.version) {
      const ended = ACTIVE.has(job.status) && !ACTIVE.has(message.job.status);
      job = message.job;
      // Ending a job changes chunks in bulk (cancelled, failed): fetch them all.
      if (ended) requestResync();
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
    }
    scheduleRender();
  }

  function requestResync() {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "resync" }));
    }
  }

  function setConnection(text, state) {
    const el = $("connection");
    el.textContent = text;
    el.dataset.state = state;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/jobs/${job.id}/`);
    socket.onopen = () => {
      retryDelay = 500;
      setConnection("live", "live");
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "job.snapshot") applySnapshot(message);
      else if (message.type === "job.progress") applyProgress(message);
    };
    socket.onclose = (event) => {
      if (STOP_CODES.has(event.code)) {
        setConnection("not available", "closed");
        return;
      }
      const delay = retryDelay * (0.75 + Math.random() / 2);
      retryDelay = Math.min(retryDelay * 2, 10000);
      setConnection(`disconnected — reconnecting in ${Math.ceil(delay / 1000)} s`, "reconnecting");
      setTimeout(connect, delay);
    };
  }

  render();
  connect();
})();
