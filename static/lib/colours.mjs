// Colours for charts, read from the CSS variables of static/coreboard.css (light or dark
// scheme), so a colour is defined once, in the style sheet.

export function cssColour(name, fallback = "") {
  if (typeof document === "undefined") return fallback;
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

// `#rrggbb` with an alpha channel (`#rrggbbaa`); another colour syntax is left opaque.
export function translucent(colour, alpha) {
  if (!/^#[0-9a-f]{6}$/i.test(colour)) return colour;
  const channel = Math.round(Math.max(0, Math.min(1, alpha)) * 255);
  return colour + channel.toString(16).padStart(2, "0");
}

// Chart.js draws its text and grid lines in the page's muted and line colours.
export function chartDefaultsApply(Chart) {
  Chart.defaults.color = cssColour("--muted", Chart.defaults.color);
  Chart.defaults.borderColor = cssColour("--line", Chart.defaults.borderColor);
}
