// DOM helpers every page shares: keyed in-place list updates, text that changes only when
// it must (so screen readers and selections are left alone), <time> elements, page data.
import { formatTime } from "./format.mjs";

export const byId = (id) => document.getElementById(id);

// Data the server put in the page with `json_script`.
export function pageJson(id) {
  const source = byId(id);
  return source ? JSON.parse(source.textContent) : null;
}

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function setClass(node, className) {
  if (node.className !== className) node.className = className;
}

// A <time> for dynamic lists; the server writes the same element (templatetags local_time).
export function timeElement(iso) {
  const time = document.createElement("time");
  setTime(time, iso);
  return time;
}

export function setTime(time, iso) {
  if (time.getAttribute("datetime") === (iso || "")) return;
  time.setAttribute("datetime", iso || "");
  time.className = "local-time";
  time.textContent = formatTime(iso);
}

export function localiseTimes(root = document) {
  for (const time of root.querySelectorAll("time.local-time")) {
    time.textContent = formatTime(time.getAttribute("datetime"));
  }
}

// Tables that stack on a phone (`table.stack`, static/coreboard.css): each cell gets its
// column's header as `data-label`, which the narrow layout shows before the value
// ("Status: running"). Rows that scripts add later are labelled as they come. Only a
// labelled table stacks: without this script it scrolls sideways instead.
export function tablesStack(root = document) {
  for (const table of root.querySelectorAll("table.stack")) {
    tableLabel(table);
    new MutationObserver(() => tableLabel(table)).observe(table, {
      childList: true,
      subtree: true,
    });
  }
}

function tableLabel(table) {
  const headers = [];
  for (const th of table.querySelectorAll(":scope > thead > tr > th")) {
    const span = th.colSpan || 1;
    for (let i = 0; i < span; i++) headers.push(th.textContent.trim());
  }
  for (const row of table.querySelectorAll(":scope > tbody > tr")) {
    let column = 0;
    for (const cell of row.cells) {
      const label = cell.colSpan > 1 ? "" : headers[column] || "";
      if (cell.dataset.label !== label) cell.dataset.label = label;
      column += cell.colSpan || 1;
    }
  }
  table.dataset.labelled = "true";
}

// Keyed, in-place list updates: existing elements stay (with their focus and scroll);
// only new keys are created, gone keys removed and moved ones re-ordered.
export function syncChildren(parent, items, keyOf, create, update) {
  const keys = items.map((item) => String(keyOf(item)));
  const wanted = new Set(keys);
  const existing = new Map();
  // Gone ones first, so that the ones staying never need moving past them.
  for (const child of [...parent.children]) {
    const key = child.dataset.key;
    if (key === undefined || !wanted.has(key) || existing.has(key)) child.remove();
    else existing.set(key, child);
  }
  let cursor = parent.firstElementChild;
  items.forEach((item, i) => {
    let node = existing.get(keys[i]);
    if (!node) {
      node = create(item);
      node.dataset.key = keys[i];
    }
    update(node, item);
    if (node === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(node, cursor);
  });
}

// Run `render` at most once per animation frame, however many updates arrive.
export function coalesced(render) {
  let queued = false;
  return function () {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      render();
    });
  };
}

// A progress bar (`.progress` with a `.progress-fill`) and its text beside it. The fill is
// compared with itself, not with aria-valuenow: the server writes the value into the page
// (a finished job: 100) but cannot write the width (the CSP allows no inline style), so the
// first render must set it whatever the value says. That first width is drawn at once (a
// finished job opens full, not filling up); later changes glide (`data-drawn`, the CSS).
export function setProgress(bar, text, percent, status) {
  const value = String(percent);
  if (bar.getAttribute("aria-valuenow") !== value) bar.setAttribute("aria-valuenow", value);
  const fill = bar.querySelector(".progress-fill");
  if (fill.style.width !== `${percent}%`) {
    fill.style.width = `${percent}%`;
    if (!bar.dataset.drawn) requestAnimationFrame(() => (bar.dataset.drawn = "true"));
  }
  bar.dataset.status = status;
  setText(text, `${percent}%`);
}

export function setStatusBadge(badge, status, prefix = "status") {
  setText(badge, status);
  setClass(badge, `status ${prefix}-${status}`);
}

// Fetch a page's state from `url` (JSON, the same shape as the page's embedded state) every
// `everyMs` while `active(state)` holds, handing each answer to `onState`. A failed fetch
// (offline for a moment) waits for the next turn. Starts only if `active(first)`.
export function pollWhileActive(url, first, { onState, active, everyMs = 2000 }) {
  let state = first;
  async function poll() {
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        state = await response.json();
        onState(state);
      }
    } catch {
      // Offline for a moment: the next poll tries again.
    }
    if (active(state)) setTimeout(poll, everyMs);
  }
  if (active(state)) setTimeout(poll, everyMs);
}
