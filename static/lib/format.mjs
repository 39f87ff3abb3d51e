// Text the pages show for times, durations and figures: pure functions, no DOM.

const PARTS = new Intl.DateTimeFormat("en-US", {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
  timeZoneName: "short",
});

// One format on every page: 2026-11-26 09:12:03 GMT+1 (the viewer's zone, named).
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  const p = Object.fromEntries(PARTS.formatToParts(date).map((part) => [part.type, part.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// A figure with its unit, or `empty` when there is none (yet).
export function formatFixed(value, digits, suffix = "", empty = "—") {
  return value === null || value === undefined ? empty : value.toFixed(digits) + suffix;
}

export function formatPercent(fraction, empty = "—") {
  return fraction === null || fraction === undefined ? empty : `${Math.round(fraction * 100)}%`;
}

export function plural(count, noun, suffix = "s") {
  return `${count} ${noun}${count === 1 ? "" : suffix}`;
}
