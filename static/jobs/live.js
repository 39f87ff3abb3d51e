// A websocket that stays connected: reconnects with jittered exponential backoff and shows
// its state in a status element ("live" / "disconnected — reconnecting in N s").
// Chart.js draws its text in the page's muted colour (light or dark scheme).
"use strict";

window.Coreboard = window.Coreboard || {};

window.Coreboard.liveSocket = function (path, { onMessage, onOpen, status }) {
  const STOP_CODES = new Set([4401, 4404]); // not logged in / not yours: retrying cannot help
  let retryDelay = 500;
  let socket = null;

  const stateText = status.querySelector(".connection-state") || status;
  const countdown = status.querySelector(".connection-countdown");
  let ticker = null;

  // The state is a polite live region and changes only with the state; the seconds left
  // tick in a sibling hidden from screen readers, so nothing is re-read every second.
  function show(text, state, retryAt) {
    if (stateText.textContent !== text) stateText.textContent = text;
    status.dataset.state = state;
    clearInterval(ticker);
    ticker = null;
    if (!countdown) return;
    countdown.textContent = "";
    if (retryAt) {
      const tick = () => {
        countdown.textContent = ` in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s`;
      };
      tick();
      ticker = setInterval(tick, 1000);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.onopen = () => {
      retryDelay = 500;
      show("live", "live");
      if (onOpen) onOpen();
    };
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (STOP_CODES.has(event.code)) {
        show("not available", "closed");
        return;
      }
      const delay = retryDelay * (0.75 + Math.random() / 2);
      retryDelay = Math.min(retryDelay * 2, 10000);
      show("disconnected — reconnecting", "reconnecting", Date.now() + delay);
      setTimeout(connect, delay);
    };
  }

  connect();
  return {
    send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    },
  };
};

// Run `render` at most once per animation frame, however many updates arrive.
window.Coreboard.coalesced = function (render) {
  let queued = false;
  return function () {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      render();
    });
  };
};

window.Coreboard.formatSeconds = function (seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
};

if (window.Chart) {
  window.Chart.defaults.color = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#505a6b";
  window.Chart.defaults.borderColor = getComputedStyle(document.documentElement).getPropertyValue("--line").trim() || "#d8dce3";
}
