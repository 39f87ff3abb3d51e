// URLs come from the page (`{% url %}` / `{% url_template %}` in data attributes), never
// spelled out in a script: a template's `{name}` parts are filled in here.

export function urlFill(template, values) {
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    name in values ? encodeURIComponent(String(values[name])) : whole,
  );
}

// A websocket URL for a path the page gave, on the page's own host and scheme.
export function socketUrl(path, location = globalThis.location) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}`;
}
