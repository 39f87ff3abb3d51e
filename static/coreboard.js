// What every page shares: times in the viewer's time zone, focus after a refused form.
// Loaded in <head>: it only defines helpers until the document is parsed.
"use strict";

window.Coreboard = window.Coreboard || {};

(function () {
  const C = window.Coreboard;
  const PARTS = new Intl.DateTimeFormat("en-US", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short",
  });

  // One format on every page: 2026-11-26 09:12:03 GMT+1 (the viewer's zone, named).
  C.formatTime = function (iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "—";
    const p = Object.fromEntries(PARTS.formatToParts(date).map((part) => [part.type, part.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
  };

  // A <time> for dynamic lists; the server writes the same element (templatetags local_time).
  C.timeElement = function (iso) {
    const time = document.createElement("time");
    C.setTime(time, iso);
    return time;
  };

  C.setTime = function (time, iso) {
    if (time.getAttribute("datetime") === (iso || "")) return;
    time.setAttribute("datetime", iso || "");
    time.className = "local-time";
    time.textContent = C.formatTime(iso);
  };

  C.localiseTimes = function (root) {
    for (const time of (root || document).querySelectorAll("time.local-time")) {
      time.textContent = C.formatTime(time.getAttribute("datetime"));
    }
  };

  // Keyed, in-place list updates: existing elements stay (with their focus and scroll);
  // only new keys are created, gone keys removed and moved ones re-ordered.
  C.syncChildren = function (parent, items, keyOf, create, update) {
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
  };

  // Set text only when it changed, so screen readers and selections are left alone.
  C.setText = function (node, text) {
    if (node.textContent !== text) node.textContent = text;
  };

  document.addEventListener("DOMContentLoaded", function () {
    C.localiseTimes(document);
    // A refused form: move focus to its summary of errors, which links to each field.
    const summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  });
})();
