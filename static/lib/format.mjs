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

// One duration format, the same rules as jobs/views/presentation.py duration_text (both
// checked against tests/duration_cases.json): rounded once, to the precision shown, before
// the unit is chosen, so that 59.96 s reads "1 min 0 s", never "60.0 s" or "1 min 60 s".
// Under a second two decimals, under a minute one, then minutes and seconds, then hours and
// minutes. A negative duration (clocks that disagree) reads as none.
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const value = Math.max(0, seconds);
  const hundredths = Math.round(value * 100);
  if (hundredths < 100) return `${Math.floor(hundredths / 100)}.${pad2(hundredths % 100)} s`;
  const tenths = Math.round(value * 10);
  if (tenths < 600) return `${Math.floor(tenths / 10)}.${tenths % 10} s`;
  const whole = Math.round(value);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  const minutes = Math.round(value / 60);
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

const pad2 = (n) => String(n).padStart(2, "0");

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

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

// Bytes in binary units, as memory is counted: 512 MiB, 1.5 GiB, 800 KiB; one decimal below
// ten units, none from there on.
export function formatBytes(bytes, empty = "—") {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return empty;
  const sign = bytes < 0 ? "-" : "";
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  let text = value.toFixed(digits);
  // 1023.6 KiB rounds to "1024 KiB": say 1.0 MiB instead.
  if (Number(text) >= 1024 && unit < BYTE_UNITS.length - 1) {
    text = "1.0";
    unit++;
  }
  return `${sign}${text} ${BYTE_UNITS[unit]}`;
}
